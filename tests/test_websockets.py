"""WebSockets through the test client (ASGI), and the HTTP answers of WebSocket paths.

WebSockets exist only under ASGI, so the WebSocket tests use
``protocol="asgi"``; the answers a plain HTTP request gets on a WebSocket
path run under both protocols.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
from typing import Any

import pytest

import microweb
from microweb import App, Request, Router, WebSocket, WebSocketDisconnect
from microweb.testing import TestClient, WebSocketDenied

from .conftest import MakeClient


def _chat_app() -> tuple[App, dict[str, Any]]:
    app = App()
    seen: dict[str, Any] = {}

    @app.websocket("/echo/{room}")
    async def echo(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        seen["path_params"] = websocket.path_params
        seen["query"] = websocket.query_params.get("q")
        seen["header"] = websocket.headers.get("x-token")
        seen["cookies"] = websocket.cookies
        seen["url"] = websocket.url
        async for text in websocket.iter_text():
            await websocket.send_text(f"{room}: {text}")

    @app.websocket("/json")
    async def json_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for data in websocket.iter_json():
            await websocket.send_json({"got": data})

    @app.websocket("/bytes")
    async def bytes_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for data in websocket.iter_bytes():
            await websocket.send_bytes(data[::-1])

    @app.websocket("/close")
    async def closer(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.close(4001, "bye now")

    @app.websocket("/watch")
    async def watch(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen["client_code"] = exc.code

    return app, seen


def test_echo_with_path_params_and_request_attributes() -> None:
    app, seen = _chat_app()
    with (
        TestClient(app) as client,
        client.websocket_connect(
            "/echo/lobby?q=1", headers={"x-token": "t", "cookie": "a=b"}
        ) as ws,
    ):
        ws.send_text("hi")
        assert ws.receive_text() == "lobby: hi"
        ws.send_text("again")
        assert ws.receive_text() == "lobby: again"
    assert seen["path_params"] == {"room": "lobby"}
    assert (seen["query"], seen["header"], seen["cookies"]) == ("1", "t", {"a": "b"})
    assert seen["url"] == "ws://testserver/echo/lobby?q=1"


def test_a_mount_prefix_that_needs_encoding() -> None:
    app, seen = _chat_app()
    with (
        TestClient(app, root_path="/my app") as client,
        client.websocket_connect("/echo/a%20b?q=1") as ws,
    ):
        ws.send_text("hi")
        assert ws.receive_text() == "a b: hi"
    assert seen["url"] == "ws://testserver/my%20app/echo/a%20b?q=1"


def test_json_and_bytes() -> None:
    app, _ = _chat_app()
    with TestClient(app) as client:
        with client.websocket_connect("/json") as ws:
            ws.send_json({"a": [1, 2]})
            assert ws.receive_json() == {"got": {"a": [1, 2]}}
        with client.websocket_connect("/bytes") as ws:
            ws.send_bytes(b"\x00\x01\x02")
            assert ws.receive_bytes() == b"\x02\x01\x00"


def test_server_close_code_and_reason_reach_the_client() -> None:
    app, _ = _chat_app()
    with TestClient(app) as client, client.websocket_connect("/close") as ws:
        ws.send_text("x")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert (info.value.code, info.value.reason) == (4001, "bye now")


def test_the_handler_sees_the_clients_close_code() -> None:
    app, seen = _chat_app()
    with TestClient(app) as client:
        ws = client.websocket_connect("/watch").__enter__()
        ws.close(4321)
    assert seen["client_code"] == 4321


def test_subprotocol_negotiation() -> None:
    app = App()

    @app.websocket("/proto")
    async def proto(websocket: WebSocket) -> None:
        offered = websocket.subprotocols
        await websocket.accept(subprotocol="v2" if "v2" in offered else None)
        await websocket.send_json(offered)

    with (
        TestClient(app) as client,
        client.websocket_connect("/proto", subprotocols=["v1", "v2"]) as ws,
    ):
        assert ws.accepted_subprotocol == "v2"
        assert ws.receive_json() == ["v1", "v2"]


def test_closing_before_accept_refuses_the_handshake() -> None:
    app = App()

    @app.websocket("/private")
    async def private(websocket: WebSocket) -> None:
        await websocket.close()

    with TestClient(app) as client, pytest.raises(WebSocketDenied) as info:
        client.websocket_connect("/private").__enter__()
    assert info.value.status == 403


def test_a_handler_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    app = App()

    @app.websocket("/before")
    async def before(websocket: WebSocket) -> None:
        raise RuntimeError("before accept")

    @app.websocket("/after")
    async def after(websocket: WebSocket) -> None:
        await websocket.accept()
        raise RuntimeError("after accept")

    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as info:
            client.websocket_connect("/before").__enter__()
        assert info.value.status == 500
        assert b"before accept" not in info.value.body  # no traceback to the client
        with (
            caplog.at_level(logging.ERROR, logger="microweb"),
            client.websocket_connect("/after") as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_text()
        assert closed.value.code == 1011
    assert any("after accept" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_before_request_hooks_run_for_the_handshake() -> None:
    app = App()

    @app.before_request
    def guard(request: Any) -> Any:
        if request.query_params.get("token") != "ok":
            return {"detail": "no token"}, 401
        return None

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("welcome")

    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as info:
            client.websocket_connect("/ws").__enter__()
        assert info.value.status == 401
        with client.websocket_connect("/ws?token=ok") as socket:
            assert socket.receive_text() == "welcome"


def test_unknown_websocket_path_is_refused() -> None:
    app, _ = _chat_app()
    with TestClient(app) as client, pytest.raises(WebSocketDenied) as info:
        client.websocket_connect("/nowhere").__enter__()
    assert info.value.status == 403


def test_a_def_websocket_handler_is_refused_at_registration() -> None:
    app = App()
    with pytest.raises(TypeError, match="async def"):

        @app.websocket("/ws")
        def sync_handler(websocket: WebSocket) -> None: ...

    router = Router()
    with pytest.raises(TypeError, match="async def"):
        router.websocket("/ws")(lambda websocket: None)


def test_router_websockets_with_a_prefix() -> None:
    app = App()
    router = Router()

    @router.websocket("/feed/{n:int}")
    async def feed(websocket: WebSocket, n: int) -> None:
        await websocket.accept()
        await websocket.send_json({"n": n, "type": type(n).__name__})

    app.include_router(router, prefix="/api")
    with TestClient(app) as client, client.websocket_connect("/api/feed/7") as ws:
        assert ws.receive_json() == {"n": 7, "type": "int"}


def test_receive_times_out_instead_of_hanging() -> None:
    app = App()

    @app.websocket("/silent")
    async def silent(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    with (
        TestClient(app) as client,
        client.websocket_connect("/silent") as ws,
        pytest.raises(TimeoutError),
    ):
        ws.receive_text(timeout=0.2)


def test_http_request_to_a_websocket_path(make_client: MakeClient, protocol: str) -> None:
    app = App()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None: ...

    @app.get("/both")
    def both_http(request: Request) -> str:
        return "http"

    @app.websocket("/both")
    async def both_ws(websocket: WebSocket) -> None: ...

    client = make_client(app)
    r = client.get("/ws")
    if protocol == "asgi":
        assert r.status_code == 426
        assert r.headers["upgrade"] == "websocket"
    else:
        assert r.status_code == 501
        assert "app.asgi" in r.json()["detail"]
    assert client.get("/both").text == "http"  # a path with an HTTP route too


def test_serving_the_wsgi_entry_point_warns_once(
    make_client: MakeClient, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.websocket("/ws/{room}")
    async def ws(websocket: WebSocket) -> None: ...

    @app.get("/")
    def index() -> str:
        return "hi"

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    with caplog.at_level(logging.WARNING, logger="microweb"):
        # a module served by uvicorn may well say `wsgi = app.wsgi`: no warning for that
        app.wsgi  # noqa: B018
        app.wsgi  # noqa: B018
        assert warnings() == []
        client = make_client(app)
        assert client.get("/").text == "hi"
        if protocol == "asgi":
            assert warnings() == []
        else:  # the first request the WSGI entry point serves warns, once
            [warning] = warnings()
            assert "/ws/{room}" in warning
            assert "app.asgi" in warning
        assert client.get("/").text == "hi"
        assert len(warnings()) == (0 if protocol == "asgi" else 1)


# --------------------------------------------------------------------------
# What an open connection costs: the coroutine frames it waits in
# --------------------------------------------------------------------------


_PACKAGE = os.path.dirname(microweb.__file__) + os.sep


def _microweb_frames(task: asyncio.Task[Any]) -> list[str]:
    """The qualified names of microweb's coroutines `task` waits in, outermost first."""
    names: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        if type(awaited).__name__ == "async_generator_asend":  # the generator it steps
            awaited = next(r for r in gc.get_referents(awaited) if inspect.isasyncgen(r))
        code = getattr(awaited, "cr_code", None) or getattr(awaited, "ag_code", None)
        if code is None:
            break
        if code.co_filename.startswith(_PACKAGE):
            names.append(code.co_qualname)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return names


def _waiting_frames(handler: Any, block_send: bool = False) -> list[str]:
    """Serve one connection to `handler` in-process until it waits on the server,
    for the next message (or, with `block_send`, for a send to complete)."""
    app = App()
    app.websocket("/ws")(handler)

    async def run() -> list[str]:
        waiting = asyncio.Event()
        never = asyncio.Event()
        messages = [
            {"type": "websocket.receive", "text": '"hello"', "bytes": None},
            {"type": "websocket.connect"},
        ]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            waiting.set()
            await never.wait()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if block_send and message["type"] == "websocket.send":
                waiting.set()
                await never.wait()

        scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "headers": []}
        task = asyncio.ensure_future(app.asgi(scope, receive, send))
        await waiting.wait()
        try:
            return _microweb_frames(task)
        finally:
            task.cancel()
            await asyncio.wait({task})

    return asyncio.run(run())


CALL, SERVE = "ASGIAdapter.__call__", "serve_websocket"


@pytest.mark.parametrize(
    ("how", "frames"),
    [
        ("receive", [CALL, SERVE, "WebSocket.receive"]),
        ("receive_text", [CALL, SERVE, "WebSocket.receive_text"]),
        ("receive_json", [CALL, SERVE, "WebSocket.receive_json"]),
        ("iter_text", [CALL, SERVE, "WebSocket.iter_text"]),
        ("iter_json", [CALL, SERVE, "WebSocket.iter_json"]),
    ],
)
def test_an_idle_connection_waits_in_one_frame_of_the_socket(how: str, frames: list[str]) -> None:
    # each frame is memory held for as long as the client stays (a few hundred
    # bytes each: a tenth of what uvicorn keeps for an idle connection)
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        if how.startswith("iter_"):
            async for _ in getattr(websocket, how)():
                pass
        else:
            while True:
                await getattr(websocket, how)()

    assert _waiting_frames(handler) == frames


@pytest.mark.parametrize("how", ["send_text", "send_bytes", "send_json"])
def test_a_send_is_one_frame_of_the_socket(how: str) -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await getattr(websocket, how)(b"x" if how == "send_bytes" else "x")

    assert _waiting_frames(handler, block_send=True) == [CALL, SERVE, f"WebSocket.{how}"]
