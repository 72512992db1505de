"""Hooks and middleware: order, short-circuits, sync and async, both protocols."""

from __future__ import annotations

from typing import Any

import pytest

from microweb import App, PlainTextResponse, Request, Response, abort

from .conftest import MakeClient


@pytest.mark.parametrize("kinds", ["sync", "async", "mixed"])
def test_order_of_hooks_and_middleware(make_client: MakeClient, kinds: str) -> None:
    app = App()
    log: list[str] = []

    def make_before(name: str, is_async: bool) -> Any:
        if is_async:

            async def hook(request: Request) -> None:
                log.append(f"before {name}")

        else:

            def hook(request: Request) -> None:
                log.append(f"before {name}")

        return hook

    def make_after(name: str, is_async: bool) -> Any:
        if is_async:

            async def hook(request: Request, response: Response) -> None:
                log.append(f"after {name}")

        else:

            def hook(request: Request, response: Response) -> None:
                log.append(f"after {name}")

        return hook

    flags = {"sync": (False, False), "async": (True, True), "mixed": (False, True)}[kinds]
    app.before_request(make_before("1", flags[0]))
    app.before_request(make_before("2", flags[1]))
    app.after_request(make_after("1", flags[0]))
    app.after_request(make_after("2", flags[1]))

    @app.middleware
    async def outer(request: Request, call_next: Any) -> Response:
        log.append("mw outer in")
        response = await call_next(request)
        log.append("mw outer out")
        return response  # type: ignore[no-any-return]

    @app.middleware
    def inner(request: Request, call_next: Any) -> Response:  # a def middleware
        log.append("mw inner in")
        response = call_next(request)
        log.append("mw inner out")
        return response  # type: ignore[no-any-return]

    if flags[1]:

        @app.get("/")
        async def index() -> str:
            log.append("handler")
            return "ok"

    else:

        @app.get("/")
        def index() -> str:
            log.append("handler")
            return "ok"

    assert make_client(app).get("/").text == "ok"
    assert log == [
        "before 1",
        "before 2",
        "mw outer in",
        "mw inner in",
        "handler",
        "mw inner out",
        "mw outer out",
        "after 2",
        "after 1",
    ]


def test_before_request_short_circuits(make_client: MakeClient) -> None:
    app = App()
    ran: list[str] = []

    @app.before_request
    def guard(request: Request) -> Any:
        if request.headers.get("x-token") != "secret":
            return {"detail": "no token"}, 401
        return None

    @app.after_request
    def after(request: Request, response: Response) -> None:
        response.headers["x-after"] = str(response.status)

    @app.get("/private")
    def private() -> str:
        ran.append("handler")
        return "data"

    client = make_client(app)
    r = client.get("/private")
    assert (r.status_code, r.json(), r.headers["x-after"]) == (401, {"detail": "no token"}, "401")
    assert ran == []
    assert client.get("/private", headers={"x-token": "secret"}).text == "data"


def test_after_request_replaces_and_sees_errors(make_client: MakeClient) -> None:
    app = App()
    statuses: list[int] = []

    @app.after_request
    async def record(request: Request, response: Response) -> None:
        statuses.append(response.status)

    @app.after_request
    def replace(request: Request, response: Response) -> Response | None:
        if request.path == "/replace":
            return PlainTextResponse("replaced", 203)
        return None

    @app.get("/replace")
    def original() -> str:
        return "original"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("x")

    client = make_client(app)
    r = client.get("/replace")
    assert (r.status_code, r.text) == (203, "replaced")
    assert client.get("/boom").status_code == 500
    assert client.get("/missing").status_code == 404
    # after-hooks run in reverse order: `replace` before `record`
    assert statuses == [203, 500, 404]


def test_middleware_can_short_circuit_and_see_404(make_client: MakeClient) -> None:
    app = App()

    @app.middleware
    async def mw(request: Request, call_next: Any) -> Any:
        if request.path == "/blocked":
            return "blocked by middleware", 403
        response = await call_next(request)
        response.headers["x-seen"] = "1"
        return response

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    client = make_client(app)
    r = client.get("/blocked")
    assert (r.status_code, r.text) == (403, "blocked by middleware")
    r = client.get("/nothing")
    assert (r.status_code, r.headers["x-seen"]) == (404, "1")
    r = client.get("/ok")
    assert (r.text, r.headers["x-seen"]) == ("ok", "1")


def test_middleware_sees_handler_errors_as_responses(make_client: MakeClient) -> None:
    app = App()

    @app.middleware
    async def mw(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-status"] = str(response.status)
        return response

    @app.get("/abort")
    def aborted() -> None:
        abort(418, "teapot")

    @app.get("/crash")
    async def crash() -> None:
        raise KeyError("x")

    client = make_client(app)
    r = client.get("/abort")
    assert (r.status_code, r.json(), r.headers["x-status"]) == (418, {"detail": "teapot"}, "418")
    r = client.get("/crash")
    assert (r.status_code, r.headers["x-status"]) == (500, "500")


def test_hook_exceptions_become_error_responses(make_client: MakeClient) -> None:
    app = App()

    @app.before_request
    def check(request: Request) -> None:
        if request.path == "/forbidden":
            abort(403)
        if request.path == "/broken":
            raise ValueError("hook bug")

    @app.after_request
    def after(request: Request, response: Response) -> None:
        if request.path == "/after-broken":
            raise ValueError("after bug")

    @app.get("/{name}")
    def page(name: str) -> str:
        return name

    client = make_client(app)
    assert client.get("/forbidden").json() == {"detail": "Forbidden"}
    assert client.get("/broken").status_code == 500
    assert client.get("/after-broken").status_code == 500
    assert client.get("/fine").text == "fine"


def test_middleware_may_call_next_with_state(make_client: MakeClient) -> None:
    app = App()

    @app.middleware
    def timing(request: Request, call_next: Any) -> Response:
        request.state.tag = "set by middleware"
        return call_next(request)  # type: ignore[no-any-return]

    @app.get("/")
    async def index(request: Request) -> str:
        return request.state.tag  # type: ignore[no-any-return]

    assert make_client(app).get("/").text == "set by middleware"


def test_middleware_reads_the_body_before_the_handler(make_client: MakeClient) -> None:
    app = App()

    @app.middleware
    async def size(request: Request, call_next: Any) -> Response:
        body = await request.body()
        response: Response = await call_next(request)
        response.headers["x-size"] = str(len(body))
        return response

    @app.post("/sync")
    def sync(request: Request) -> Any:
        return request.json()

    @app.post("/async")
    async def async_(request: Request) -> Any:
        return await request.json()

    client = make_client(app)
    for path in ("/sync", "/async"):
        r = client.post(path, json={"n": 1})
        assert (r.json(), r.headers["x-size"]) == ({"n": 1}, "7")
