"""What each bundled middleware adds per request, next to Starlette's own.

    ../shared/bench/run list >/dev/null   # builds the bench venv (starlette, microweb)
    $TMPDIR/microweb-bench-venv/bin/python benchmarks/middleware.py [--rounds 15]

In-process, no sockets, with the anchor harness's loops (a fresh environ or
scope per request): a handler returning a 600-byte JSON body, alone and
behind each middleware, for microweb under WSGI (def handler) and ASGI
(async def handler) and for Starlette (async endpoint). Each request carries
what the middleware acts on: an allowed Origin (CORS), Accept-Encoding: gzip
(GZip, which compresses the body), an allowed Host (TrustedHost), a valid
session cookie the handler reads (Sessions). Reported: the minimum µs per
request over the rounds, and the overhead against the same app without
middleware, from the minimums.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "bench"))
from anchor_bench import common

SECRET = "benchmark secret"
BODY = {"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(12)]}
KINDS = ["none", "CORS", "GZip", "TrustedHost", "Sessions"]


def microweb_app(kind: str, asynchronous: bool) -> Any:
    from microweb import App, Request
    from microweb.middleware import CORS, GZip, Sessions, TrustedHost

    app = App()
    if kind == "CORS":
        app.add_middleware(CORS(allow_origins=["https://app.example"]))
    elif kind == "GZip":
        app.add_middleware(GZip(minimum_size=500))
    elif kind == "TrustedHost":
        app.add_middleware(TrustedHost(["127.0.0.1", "example.com"]))
    elif kind == "Sessions":
        app.add_middleware(Sessions(secret_key=SECRET))
    if asynchronous:

        @app.get("/")
        async def index(request: Request) -> Any:
            if kind == "Sessions":
                request.session.get("user")
            return BODY

    else:

        @app.get("/")
        def index(request: Request) -> Any:
            if kind == "Sessions":
                request.session.get("user")
            return BODY

    return app


def starlette_app(kind: str) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def index(request: Any) -> Any:
        if kind == "Sessions":
            request.session.get("user")
        return JSONResponse(BODY)

    middleware = {
        "none": [],
        "CORS": [Middleware(CORSMiddleware, allow_origins=["https://app.example"])],
        "GZip": [Middleware(GZipMiddleware, minimum_size=500)],
        "TrustedHost": [Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1"])],
        "Sessions": [Middleware(SessionMiddleware, secret_key=SECRET)],
    }[kind]
    return Starlette(routes=[Route("/", index)], middleware=middleware)


def request_headers(kind: str, cookie: str) -> list[tuple[str, str]]:
    headers = [("host", "127.0.0.1:8000"), ("accept", "*/*")]
    if kind == "CORS":
        headers.append(("origin", "https://app.example"))
    elif kind == "GZip":
        headers.append(("accept-encoding", "gzip"))
    elif kind == "Sessions":
        headers.append(("cookie", f"session={cookie}"))
    return headers


def session_cookies() -> dict[str, str]:
    """A valid session cookie of each framework (made by the framework itself)."""
    from microweb.middleware import Sessions

    ours = Sessions(SECRET).encode({"user": "ann"})
    import base64
    import json

    from itsdangerous import TimestampSigner

    theirs = TimestampSigner(SECRET).sign(base64.b64encode(json.dumps({"user": "ann"}).encode()))
    return {"microweb": ours, "starlette": theirs.decode()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=3000)
    args = parser.parse_args()
    cookies = session_cookies()
    scenario = common.Scenario("mw", "GET", "/")
    loop = asyncio.new_event_loop()
    cells: dict[tuple[str, str], Any] = {}
    for kind in KINDS:
        env = common.wsgi_environ(scenario)
        for name, value in request_headers(kind, cookies["microweb"]):
            env["HTTP_" + name.upper().replace("-", "_")] = value
        cells[("microweb wsgi", kind)] = ("wsgi", microweb_app(kind, False).wsgi, env)
        for label, app, cookie in (
            ("microweb asgi", microweb_app(kind, True).asgi, cookies["microweb"]),
            ("starlette", starlette_app(kind), cookies["starlette"]),
        ):
            scope = common.asgi_scope(scenario)
            scope["headers"] = [(k.encode(), v.encode()) for k, v in request_headers(kind, cookie)]
            cells[(label, kind)] = ("asgi", app, scope)
    for protocol, app, _template in cells.values():  # check every cell answers 200
        sc = common.Scenario("mw", "GET", "/")
        if protocol == "wsgi":
            assert common.call_wsgi_once(app, sc)[0] == 200
        else:
            assert loop.run_until_complete(common.call_asgi_once(app, sc))[0] == 200
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for key, (protocol, app, template) in cells.items():
            if protocol == "wsgi":
                t = common.wsgi_loop(app, template, b"", args.batch, time.perf_counter)
            else:
                t = loop.run_until_complete(
                    common.asgi_loop(app, template, b"", args.batch, time.perf_counter)
                )
            us = 1e6 * t / args.batch
            best[key] = min(best.get(key, us), us)
    labels = ["microweb wsgi", "microweb asgi", "starlette"]
    print("µs per request (min of rounds); in brackets: added by the middleware")
    print("| middleware | " + " | ".join(labels) + " |")
    print("| --- |" + " ---: |" * len(labels))
    for kind in KINDS:
        row = []
        for label in labels:
            value, base = best[(label, kind)], best[(label, "none")]
            row.append(f"{value:.1f}" if kind == "none" else f"{value:.1f} (+{value - base:.1f})")
        print(f"| {kind} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
