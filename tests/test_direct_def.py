"""A ``def`` handler with nothing around it answers exactly as through the pipeline.

With no hook and no middleware, the ASGI adapter sends a ``def`` handler to
a worker thread itself (one hop that calls it and makes its response) instead
of driving the request pipeline, as the WSGI adapter calls it in its own
thread. Each request here goes to an app with that shortcut and to the same
app with a no-op after-hook (which takes the pipeline); the answers, and what
the handler saw, must be the same.
"""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from microweb import (
    App,
    BackgroundTask,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    Request,
    Response,
)

from .conftest import MakeClient
from .test_concurrency import _on_loop

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


class Refused(Exception):
    pass


def _app(hooked: bool, seen: list[tuple[str, Any]]) -> App:
    app = App()

    @app.get("/dict")
    def a_dict() -> Any:
        seen.append(("on loop", _on_loop()))
        return {"a": [1, 2]}

    @app.get("/text")
    def text() -> str:
        return "héllo"

    @app.get("/bytes")
    def raw() -> bytes:
        return b"\x00\xff"

    @app.get("/none")
    def nothing() -> None:
        return None

    @app.get("/tuple")
    def a_tuple() -> Any:
        return {"made": True}, 201, {"X-Extra": "1"}

    @app.get("/response")
    def response() -> Response:
        return PlainTextResponse("teapot", 418, headers={"X-T": "t"})

    @app.get("/items/{n:int}")
    def item(n: int, q: str = "none") -> Any:
        return {"n": n, "q": q}

    @app.get("/count")
    def count(n: int) -> Any:
        return {"n": n}

    @app.post("/echo")
    def echo(request: Request) -> Any:
        return {"json": request.json(), "length": len(request.body())}

    @app.post("/size")
    def size(request: Request) -> Any:
        return {"length": len(request.body())}

    @app.get("/abort")
    def abort() -> None:
        raise HTTPException(409, "taken", headers={"X-Why": "taken"})

    @app.get("/crash")
    def crash() -> None:
        raise ValueError("boom")

    @app.get("/bad-return")
    def bad_return() -> Any:
        return object()

    @app.get("/coroutine")
    def coroutine() -> Any:
        async def later() -> str:
            return "x"

        return later()

    @app.get("/refused")
    def refused() -> None:
        marker.set("set by the handler")
        raise Refused

    @app.exception_handler(Refused)
    def on_refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"marker": marker.get()}, 403)

    @app.get("/background")
    def background() -> Response:
        marker.set("set before the task")
        return PlainTextResponse(
            "ok", background=BackgroundTask(lambda: seen.append(("task", marker.get())))
        )

    if hooked:

        @app.after_request
        def noop(request: Request, response: Response) -> None:
            return None

    return app


def _answer(r: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return r.status_code, sorted(r.headers.items()), r.content


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_a_lone_def_handler_answers_as_the_pipeline_does(make_client: MakeClient) -> None:
    seen: dict[bool, list[tuple[str, Any]]] = {False: [], True: []}
    clients = {hooked: make_client(_app(hooked, seen[hooked])) for hooked in (False, True)}
    big = b'{"k": "' + b"x" * 100_000 + b'"}'  # read from the thread, not before the hop
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/dict", {}),
        ("HEAD", "/dict", {}),
        ("GET", "/text", {}),
        ("GET", "/bytes", {}),
        ("GET", "/none", {}),
        ("GET", "/tuple", {}),
        ("GET", "/response", {}),
        ("GET", "/items/7?q=x", {}),
        ("GET", "/items/seven", {}),
        ("GET", "/count?n=3", {}),
        ("GET", "/count?n=three", {}),
        ("GET", "/count", {}),
        ("POST", "/echo", {"content": b'{"a": 1}'}),
        ("POST", "/echo", {"content": b"{not json"}),
        ("POST", "/size", {"content": big}),
        ("GET", "/abort", {}),
        ("GET", "/crash", {}),
        ("GET", "/bad-return", {}),
        ("GET", "/coroutine", {}),
        ("GET", "/refused", {}),
        ("GET", "/background", {}),
    ]
    for method, path, kwargs in requests:
        direct = _answer(clients[False].request(method, path, **kwargs))
        piped = _answer(clients[True].request(method, path, **kwargs))
        assert direct == piped, (method, path)
    assert seen[False] == seen[True]
    assert ("on loop", False) in seen[False]
    assert ("task", "set before the task") in seen[False]
