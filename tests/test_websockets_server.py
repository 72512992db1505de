"""WebSockets against a real uvicorn, with the `websockets` client library."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .servers import Server, serve

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def uvicorn_server() -> Iterator[Server]:
    with serve("uvicorn", "tests.apps.ws_app") as server:
        yield server


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_echo_json_bytes_and_a_70kb_message(uvicorn_server: Server) -> None:
    async def go() -> None:
        async with connect(ws_url(uvicorn_server, "/echo")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            big = "x" * 70_000
            await ws.send(big)
            assert await ws.recv() == big
        async with connect(ws_url(uvicorn_server, "/json")) as ws:
            await ws.send('{"a": [1, 2]}')
            assert await ws.recv() == '{"echo":{"a":[1,2]}}'
        async with connect(ws_url(uvicorn_server, "/bytes")) as ws:
            await ws.send(b"\x00\xff" * 1000)
            assert await ws.recv() == b"\x00\xff" * 1000

    run(go())


def test_subprotocol_negotiation(uvicorn_server: Server) -> None:
    async def go() -> None:
        async with connect(
            ws_url(uvicorn_server, "/proto"), subprotocols=["chat.v1", "chat.v2"]
        ) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await ws.recv() == "chat.v1,chat.v2"

    run(go())


def test_server_close_code_and_reason(uvicorn_server: Server) -> None:
    async def go() -> None:
        async with connect(ws_url(uvicorn_server, "/close")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4003, "go away")

    run(go())


def test_the_handler_sees_the_clients_close_code(uvicorn_server: Server) -> None:
    async def go() -> None:
        async with connect(ws_url(uvicorn_server, "/watch/c1")) as ws:
            await ws.close(4444, "done")

    run(go())
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=uvicorn_server.url) as client:
        while time.monotonic() < deadline:
            code = client.get("/seen/c1").json()["code"]
            if code is not None:
                break
            time.sleep(0.05)  # polling another process with a deadline
    assert code == 4444


def test_refused_handshakes(uvicorn_server: Server) -> None:
    async def status_of(path: str) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(uvicorn_server, path)):
                pass
        return info.value.response.status_code

    assert run(status_of("/refuse")) == 403
    assert run(status_of("/nowhere")) == 403
    assert run(status_of("/crash")) == 500
    log = uvicorn_server.log()
    assert "crash before accept" in log and "Traceback" in log


def test_plain_http_to_a_websocket_path_gets_426(uvicorn_server: Server) -> None:
    r = httpx.get(uvicorn_server.url + "/echo")
    assert r.status_code == 426
    assert r.headers["upgrade"] == "websocket"


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_under_wsgi_a_websocket_path_gets_501(kind: str) -> None:
    with serve(kind, "tests.apps.ws_app") as server:
        r = httpx.get(server.url + "/echo")
        log = server.log()
    assert r.status_code == 501
    assert "app.asgi" in r.json()["detail"]
    # serving the WSGI entry point logged one warning that names the routes
    assert log.count("WebSocket routes are served only by the ASGI entry point") == 1
    assert "/watch/{tag}" in log


def test_uvicorn_logs_no_wsgi_warning_for_a_module_that_names_app_wsgi(
    uvicorn_server: Server,
) -> None:
    # ws_app says `wsgi = app.wsgi` (for gunicorn); uvicorn never serves it
    assert httpx.get(uvicorn_server.url + "/echo").status_code == 426
    assert "WebSocket routes are served only" not in uvicorn_server.log()


def test_a_thousand_concurrent_connections_each_echo(uvicorn_server: Server) -> None:
    n = 1000

    async def go() -> list[str]:
        connecting = asyncio.Semaphore(100)  # bounds the handshakes in flight, not the open ones
        all_open = asyncio.Barrier(n)

        async def one(i: int) -> str:
            async with connecting:
                ws = await connect(ws_url(uvicorn_server, "/echo"), open_timeout=60)
            async with ws:
                await all_open.wait()  # all 1,000 are open at once from here
                await ws.send(f"m{i}")
                return str(await ws.recv())

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 120)

    assert run(go()) == [f"m{i}" for i in range(n)]
