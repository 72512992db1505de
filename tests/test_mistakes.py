"""Common mistakes: each gets an error that names the fix, as early as it can.

The App itself served (``uvicorn mod:app``), the wrong entry point for the
server (``uvicorn mod:app.wsgi``), Flask's ``<int:id>``, a path parameter the
handler does not take, a generator returned instead of a StreamingResponse,
a body method not awaited. The server cases run through the real servers too.
"""

from __future__ import annotations

import asyncio
import builtins
import gc
import importlib.util
import logging
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microweb import App, Request, Router, WebSocket

from .conftest import MakeClient
from .servers import Server, serve

MODULE = "tests.apps.mistakes_app"


# --------------------------------------------------------------------------
# The App itself, or the wrong entry point, given to a server
# --------------------------------------------------------------------------


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    raise AssertionError("never called: the app is not a WSGI application")


def environ(software: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_SOFTWARE": software}


HTTP_SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}


async def lifespan_events(instance: Any, asgi3: bool, scope: dict[str, Any]) -> list[Any]:
    """Run an ASGI app's lifespan startup (called ASGI 3 or ASGI 2 style); what it sent."""
    sent: list[Any] = []

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    if asgi3:
        await instance(scope, receive, send)
    else:
        await instance(scope)(receive, send)
    return sent


@pytest.mark.parametrize(
    ("software", "fix"),
    [
        (
            "waitress",
            "serve its WSGI entry point instead: "
            "`waitress-serve --listen=127.0.0.1:8000 myapp:app.wsgi`",
        ),
        ("gunicorn/27.0.1", "write `wsgi = app.wsgi` in myapp and run `gunicorn myapp:wsgi`"),
        ("WSGIServer/0.2", "serve its WSGI entry point instead: myapp:app.wsgi"),
    ],
)
def test_the_app_called_by_a_wsgi_server_names_app_wsgi(software: str, fix: str) -> None:
    app = App()  # held by no module: the message says "myapp:app"
    with pytest.raises(TypeError) as info:
        app(environ(software), start_response)
    message = str(info.value)
    assert message.startswith("myapp:app is a microweb App, not a WSGI application")
    assert fix in message


def test_naming_the_app_never_loads_a_lazy_module(tmp_path: Path) -> None:
    # the message looks for the module that holds the app: a module imported
    # lazily (importlib.util.LazyLoader) must stay unloaded
    (tmp_path / "lazy_mod.py").write_text("import builtins\nbuiltins.lazy_mod_ran = True\n")
    spec = importlib.util.spec_from_file_location("lazy_mod", tmp_path / "lazy_mod.py")
    assert spec is not None and spec.loader is not None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["lazy_mod"] = module
    spec.loader.exec_module(module)
    try:
        app = App()
        with pytest.raises(TypeError, match="myapp:app is a microweb App"):
            app(environ("waitress.server"), start_response)
        assert not hasattr(builtins, "lazy_mod_ran")
    finally:
        del sys.modules["lazy_mod"]


def test_the_app_called_by_an_asgi_server_names_app_asgi() -> None:
    app = App()
    fix = "serve its ASGI entry point instead, e.g. `uvicorn myapp:app.asgi`"

    async def noop(*args: Any) -> Any: ...

    # a request, ASGI 3 style and ASGI 2 style (uvicorn's choice for a plain def __call__)
    with pytest.raises(TypeError, match="not an ASGI application") as info:
        app(HTTP_SCOPE, noop, noop)
    assert fix in str(info.value)
    with pytest.raises(TypeError, match="not an ASGI application") as info:
        app(HTTP_SCOPE)
    assert fix in str(info.value)
    # the lifespan: its startup fails with the message, so the server stops at once
    for asgi3 in (True, False):
        sent = asyncio.run(lifespan_events(app, asgi3, {"type": "lifespan"}))
        assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
        assert fix in sent[0]["message"]


def test_the_app_called_with_nothing_raises_type_error() -> None:
    # uvicorn calls the app without arguments to see whether it is a factory, and
    # takes a TypeError to mean "no": anything else would be served in its place
    with pytest.raises(TypeError, match="not itself a server application") as info:
        App()()
    assert "app.asgi" in str(info.value)
    assert "app.wsgi" in str(info.value)


def test_the_wsgi_entry_point_called_by_an_asgi_server_names_app_asgi(
    make_client: MakeClient,
) -> None:
    app = App()
    started: list[bool] = []
    app.on_startup(lambda: started.append(True))

    @app.get("/")
    def index() -> str:
        return "served"

    fix = "serve the ASGI entry point instead, e.g. `uvicorn myapp:app.asgi`"
    with pytest.raises(TypeError, match="is the WSGI entry point, called here by an ASGI server"):
        app.wsgi(HTTP_SCOPE)
    sent = asyncio.run(lifespan_events(app.wsgi, False, {"type": "lifespan"}))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert fix in sent[0]["message"]
    # nothing ran, and the app is served as usual afterwards
    assert started == []
    assert make_client(app).get("/").text == "served"
    assert started == [True]


def wait_for_log(server: Server, text: str, timeout: float = 15) -> str:
    """The server's log once it contains `text` (the server logs it as it answers)."""
    deadline = time.monotonic() + timeout
    while True:
        log = server.log()
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)  # polling another process's log with a deadline


@pytest.mark.servers
@pytest.mark.parametrize(
    ("attr", "first_line"),
    [
        ("app", f"{MODULE}:app is a microweb App, not an ASGI application"),
        ("app.wsgi", f"{MODULE}:app.wsgi is the WSGI entry point, called here by an ASGI server"),
    ],
)
def test_uvicorn_refuses_to_start_on_the_wrong_object(attr: str, first_line: str) -> None:
    with pytest.raises(RuntimeError) as info, serve("uvicorn", MODULE, attr=attr):
        pass  # never reached: uvicorn exits before it listens
    log = str(info.value)
    assert "server exited with 3" in log  # uvicorn's exit status for a failed startup
    assert first_line in log
    assert f"`uvicorn {MODULE}:app.asgi`" in log
    assert "Application startup failed. Exiting." in log


@pytest.mark.servers
@pytest.mark.parametrize(
    ("kind", "fix"),
    [
        (
            "waitress",
            "serve its WSGI entry point instead: "
            f"`waitress-serve --listen=127.0.0.1:8000 {MODULE}:app.wsgi`",
        ),
        ("gunicorn", f"write `wsgi = app.wsgi` in {MODULE} and run `gunicorn {MODULE}:wsgi`"),
    ],
)
def test_a_wsgi_server_on_the_app_itself_logs_the_fix(kind: str, fix: str) -> None:
    with serve(kind, MODULE, attr="app") as server:
        r = httpx.get(server.url + "/", timeout=30)
        log = wait_for_log(server, fix)
    assert r.status_code == 500
    assert f"TypeError: {MODULE}:app is a microweb App, not a WSGI application" in log
    assert fix in log
    assert "object is not callable" not in log


@pytest.mark.servers
@pytest.mark.parametrize(("kind", "attr"), [("waitress", "app.asgi"), ("gunicorn", "asgi")])
def test_a_wsgi_server_on_the_asgi_entry_point_logs_the_fix(kind: str, attr: str) -> None:
    # app.asgi's __call__ is `async def` (uvicorn needs it so), and an async def
    # called with two arguments fails before any of its code runs: Python's own
    # TypeError says what to serve, through the function's qualname.
    with serve(kind, MODULE, attr=attr) as server:
        r = httpx.get(server.url + "/", timeout=30)
        text = "missing 1 required positional argument: 'send'"
        log = wait_for_log(server, text)
    assert r.status_code == 500
    assert (
        f"TypeError: app.asgi [the ASGI entry point; a WSGI server serves app.wsgi]() {text}"
    ) in log


# --------------------------------------------------------------------------
# Routes: refused when they are registered
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flask", "braces"),
    [
        ("/todos/<int:id>", "/todos/{id:int}"),
        ("/users/<name>", "/users/{name}"),
        ("/files/<path:rest>", "/files/{rest:path}"),
        ("/u/<string:s>/<uuid:u>/<float:f>", "/u/{s}/{u:uuid}/{f:float}"),
        ("/x/<any(a,b):kind>.json", "/x/{kind}.json"),
    ],
)
def test_flask_route_syntax_is_refused_with_the_brace_form(flask: str, braces: str) -> None:
    expected = f"microweb writes parameters in braces: '{braces}'"
    app, router = App(), Router()
    for registrar in (app, router):
        with pytest.raises(ValueError, match="Flask's <converter:name> syntax") as info:

            @registrar.get(flask)
            def handler(**params: Any) -> None: ...

        assert expected in str(info.value)
    with pytest.raises(ValueError) as info:

        @app.websocket(flask)
        async def ws(websocket: WebSocket) -> None: ...

    assert expected in str(info.value)
    assert app.routes == [] and router.specs == []


def test_a_path_parameter_the_handler_does_not_take_is_refused() -> None:
    app, router = App(), Router()
    for registrar in (app, router):
        with pytest.raises(TypeError) as info:

            @registrar.get("/todos/{todo_id}")
            def get(id: int = 0) -> None: ...

        message = str(info.value)
        assert "does not take the path parameter 'todo_id' of '/todos/{todo_id}'" in message
        assert "(its parameters: id)" in message
        assert "rename id to todo_id, or take request" in message
        assert "or take request (request.path_params) or **kwargs" in message

    with pytest.raises(TypeError, match="'user', 'n'") as info:

        @app.get("/users/{user}/posts/{n:int}")
        def posts() -> None: ...

    assert "(its parameters: none); add a parameter user" in str(info.value)
    # a prefix's parameter, found when the router is included
    api = Router()

    @api.get("/items")
    def items() -> None: ...

    with pytest.raises(TypeError) as info:
        app.include_router(api, prefix="/shops/{shop}")
    assert "the path parameter 'shop' of '/shops/{shop}/items'" in str(info.value)
    assert app.routes == []


def test_handlers_that_reach_their_path_parameters_are_accepted(make_client: MakeClient) -> None:
    app = App()

    @app.get("/a/{x}/{y}")
    def by_request(request: Request) -> dict[str, Any]:
        return dict(request.path_params)

    @app.get("/b/{x}/{y}")
    def by_annotation(req: Request, y: str) -> dict[str, Any]:
        return {"x": req.path_params["x"], "y": y}

    @app.get("/c/{x}/{y}")
    async def by_kwargs(x: str, **rest: str) -> dict[str, Any]:
        return {"x": x, **rest}

    @app.websocket("/ws/{room}")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.path_params["room"])
        await websocket.close()

    app.static("/static", ".")
    client = make_client(app)
    for path in ("/a/1/2", "/b/1/2", "/c/1/2"):
        assert client.get(path).json() == {"x": "1", "y": "2"}


def test_a_generator_function_handler_is_refused() -> None:
    app, router = App(), Router()
    for registrar in (app, router):
        with pytest.raises(TypeError, match="is a generator function") as info:

            @registrar.get("/numbers")
            def numbers() -> Iterator[str]:
                yield "1"

        assert "`return StreamingResponse(chunks())`" in str(info.value)
        with pytest.raises(TypeError, match="is a generator function") as info:

            @registrar.get("/events")
            async def events() -> AsyncIterator[str]:
                yield "1"

        assert "EventSourceResponse" in str(info.value)


# --------------------------------------------------------------------------
# Return values: the 500's log says what to write instead
# --------------------------------------------------------------------------


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Each microweb error record as its message and its exception's."""
    return [
        f"{r.getMessage()} | {r.exc_info[1] if r.exc_info else ''}"
        for r in caplog.records
        if r.name == "microweb" and r.levelno >= logging.ERROR
    ]


def test_a_returned_generator_suggests_streaming_response(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.get("/sync")
    def sync_chunks() -> Any:
        return (str(n) for n in range(3))

    async def chunks() -> AsyncIterator[str]:
        yield "1"

    @app.get("/async")
    async def async_chunks() -> Any:
        return chunks()

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        for path, kind in (("/sync", "generator"), ("/async", "async_generator")):
            caplog.clear()
            assert client.get(path).status_code == 500
            [error] = logged_errors(caplog)
            assert f"a handler returned a {kind}; to stream what it yields, return " in error
            assert "StreamingResponse(...) around it" in error


@pytest.mark.parametrize("method", ["json", "body", "text", "form"])
def test_a_returned_body_coroutine_says_to_await_it(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    app = App()

    @app.post("/")
    async def handler(request: Request) -> Any:
        return getattr(request, method)()  # the forgotten await

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        assert client.post("/", json={"a": 1}).status_code == 500
    [error] = logged_errors(caplog)
    assert f"returned the coroutine of request.{method}() instead of its result" in error
    assert f"`return await request.{method}()`" in error
    # closed by microweb: no "coroutine ... was never awaited" (an error in this suite)


def test_a_body_coroutine_used_as_a_value_says_to_await_it(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.post("/todos")
    async def create(request: Request) -> Any:
        data = request.json()  # the forgotten await
        return {"title": data["title"]}

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        assert client.post("/todos", json={"title": "x"}).status_code == 500
    [error] = logged_errors(caplog)
    assert "'coroutine' object is not subscriptable" in error
    assert "in async def code, await it, e.g. `data = await request.json()`" in error
    # Python's own warning names the call that was not awaited, once the coroutine
    # goes (here: with the logged traceback's frames, which hold it)
    with pytest.warns(RuntimeWarning, match="coroutine 'Request.json' was never awaited"):
        for record in caplog.records:
            if record.exc_info and record.exc_info[2] is not None:
                traceback.clear_frames(record.exc_info[2])
        gc.collect()
