"""Lifespan: startup and shutdown hooks, the lifespan context, both protocols."""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any
from wsgiref.validate import validator

import pytest

from microweb import App
from microweb.testing import TestClient


def _counting_app() -> tuple[App, list[str]]:
    app = App()
    events: list[str] = []

    @app.on_startup
    def sync_start() -> None:
        events.append("start sync")

    @app.on_startup
    async def async_start() -> None:
        events.append("start async")
        app.state.lock = asyncio.Lock()
        app.state.loop = asyncio.get_running_loop()

    @app.on_shutdown
    async def async_stop() -> None:
        events.append("stop async")

    @app.on_shutdown
    def sync_stop() -> None:
        events.append("stop sync")

    @app.get("/")
    async def index() -> dict[str, Any]:
        async with app.state.lock:  # made at startup: must be usable here
            return {"same_loop": asyncio.get_running_loop() is app.state.loop}

    return app, events


def test_startup_runs_once_before_the_first_request(protocol: str) -> None:
    app, events = _counting_app()
    client = TestClient(app, protocol=protocol)
    assert events == []
    assert client.get("/").json() == {"same_loop": True}
    assert client.get("/").json() == {"same_loop": True}
    assert events == ["start sync", "start async"]
    client.close()
    assert events == ["start sync", "start async", "stop async", "stop sync"]


def test_with_block_runs_startup_and_shutdown(protocol: str) -> None:
    app, events = _counting_app()
    with TestClient(app, protocol=protocol):
        assert events == ["start sync", "start async"]
    assert events[2:] == ["stop async", "stop sync"]


def test_lifespan_context_manager(protocol: str) -> None:
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        app.state.db = "connected"
        log.append("enter")
        yield
        log.append("exit")

    app = App(lifespan=lifespan)

    @app.get("/")
    def index() -> str:
        return str(app.state.db)

    with TestClient(app, protocol=protocol) as client:
        assert client.get("/").text == "connected"
        assert log == ["enter"]
    assert log == ["enter", "exit"]


def test_failing_startup(protocol: str) -> None:
    app = App()

    @app.on_startup
    def boom() -> None:
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="startup failed"):
        TestClient(app, protocol=protocol).__enter__()


def test_startup_belongs_to_each_app() -> None:
    a, a_events = _counting_app()
    _b, b_events = _counting_app()
    with TestClient(a, protocol="asgi") as client:
        client.get("/")
    assert a_events[:2] == ["start sync", "start async"]
    assert b_events == []


# ------------------------------------------------------------------ raw ASGI


def test_asgi_lifespan_protocol_messages() -> None:
    app, events = _counting_app()

    async def run() -> list[dict[str, Any]]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await inbox.put({"type": "lifespan.startup"})
        await inbox.put({"type": "lifespan.shutdown"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app.asgi(scope, inbox.get, send)
        return sent

    sent = asyncio.run(run())
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["start sync", "start async", "stop async", "stop sync"]


def test_asgi_lifespan_startup_failed() -> None:
    app = App()

    @app.on_startup
    async def boom() -> None:
        raise RuntimeError("no database")

    async def run() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app.asgi({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        return sent

    sent = asyncio.run(run())
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "no database" in sent[0]["message"]


def _http_scope(path: str = "/") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


def test_asgi_server_without_lifespan_still_starts_once() -> None:
    app, events = _counting_app()

    async def run() -> list[int]:
        statuses: list[int] = []

        async def one() -> None:
            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app.asgi(_http_scope(), receive, send)

        await asyncio.gather(*(one() for _ in range(8)))
        return statuses

    assert asyncio.run(run()) == [200] * 8
    assert events == ["start sync", "start async"]


# ------------------------------------------------------------------ raw WSGI


def _wsgi_get(app: App, path: str = "/") -> tuple[str, bytes]:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    result = validator(app.wsgi)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    return status[0], body


def test_wsgi_startup_once_under_concurrent_first_requests() -> None:
    app, events = _counting_app()
    results: list[tuple[str, bytes]] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=10)
        results.append(_wsgi_get(app))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [status for status, _ in results] == ["200 OK"] * 8
    assert all(body == b'{"same_loop":true}' for _, body in results)
    assert events == ["start sync", "start async"]
    app.wsgi.shutdown()
    assert events[2:] == ["stop async", "stop sync"]


def _child(app: App, conn: Any) -> None:
    status, body = _wsgi_get(app)
    conn.send((status, body, os.getpid()))
    conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() (a pre-fork server's model)")
def test_wsgi_startup_runs_again_in_a_forked_worker() -> None:
    app, events = _counting_app()
    assert _wsgi_get(app)[0] == "200 OK"  # started (and its loop made) before the fork
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe()
    process = ctx.Process(target=_child, args=(app, child_conn))
    process.start()
    assert parent_conn.poll(30)
    status, body, pid = parent_conn.recv()
    process.join(30)
    # the child ran its own startup on its own loop (the parent's did not survive)
    assert (status, body) == ("200 OK", b'{"same_loop":true}')
    assert pid != os.getpid()
    assert events == ["start sync", "start async"]  # the parent's list: startup ran once here
    app.wsgi.shutdown()


def test_the_lifespan_context_is_held_in_one_task(protocol: str) -> None:
    # Starlette's documented pattern: a task group open for the app's life
    import anyio

    log: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            app.state.tasks = tg
            log.append("started")
            yield
            tg.cancel_scope.cancel()
        log.append("stopped cleanly")

    app = App(lifespan=lifespan)

    @app.get("/")
    def index() -> str:
        return "ok"

    with TestClient(app, protocol=protocol) as client:
        assert client.get("/").text == "ok"
    assert log == ["started", "stopped cleanly"]
