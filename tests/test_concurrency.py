"""Where code runs: def code never on an event loop; async code under WSGI on one loop."""

from __future__ import annotations

import asyncio
import contextvars
import io
import threading
from typing import Any

import pytest

from microweb import App, Request, Response, StreamingResponse
from microweb._shared_loop import shared_loop

from .conftest import MakeClient

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_def_code_never_runs_on_an_event_loop(make_client: MakeClient) -> None:
    app = App()
    seen: dict[str, bool] = {}

    @app.before_request
    def before(request: Request) -> None:
        seen["before"] = _on_loop()

    @app.middleware
    async def wrap(request: Request, call_next: Any) -> Response:
        seen["async middleware"] = _on_loop()
        return await call_next(request)  # type: ignore[no-any-return]

    @app.middleware
    def sync_wrap(request: Request, call_next: Any) -> Response:
        seen["sync middleware"] = _on_loop()
        return call_next(request)  # type: ignore[no-any-return]

    @app.after_request
    def after(request: Request, response: Response) -> None:
        seen["after"] = _on_loop()

    @app.get("/sync")
    def sync_handler() -> str:
        seen["handler"] = _on_loop()
        return "ok"

    @app.get("/async")
    async def async_handler() -> str:
        seen["async handler"] = _on_loop()
        return "ok"

    @app.exception_handler(KeyError)
    def on_key_error(request: Request, exc: KeyError) -> str:
        seen["error handler"] = _on_loop()
        return "handled"

    @app.get("/error")
    async def error() -> None:
        raise KeyError("x")

    client = make_client(app)
    assert client.get("/sync").text == "ok"
    assert client.get("/async").text == "ok"
    assert client.get("/error").text == "handled"
    assert seen == {
        "before": False,
        "async middleware": True,
        "sync middleware": False,
        "after": False,
        "handler": False,
        "async handler": True,
        "error handler": False,
    }


def test_async_code_under_wsgi_shares_one_loop() -> None:
    # what one request's async code makes on the loop (a queue, a task that
    # serves it) works in the next requests', from any of the server's threads
    from microweb.testing import TestClient

    app = App()
    loops: set[int] = set()
    served: list[asyncio.Queue[tuple[int, asyncio.Future[int]]]] = []

    async def server(q: asyncio.Queue[tuple[int, asyncio.Future[int]]]) -> None:
        while True:
            n, reply = await q.get()
            reply.set_result(n * 2)

    @app.get("/{n:int}")
    async def index(n: int) -> str:
        loop = asyncio.get_running_loop()
        loops.add(id(loop))
        if not served:
            q: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()
            served.append(q)
            task = loop.create_task(server(q))
            app.state.server = task  # (kept: the loop holds its tasks weakly)
        reply: asyncio.Future[int] = loop.create_future()
        await served[0].put((n, reply))
        return str(await reply)

    answers: dict[int, str] = {}
    with TestClient(app, protocol="wsgi") as client:
        assert client.get("/0").text == "0"

        def ask(n: int) -> None:
            answers[n] = client.get(f"/{n}").text

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

    async def stop(task: asyncio.Task[None]) -> bool:
        task.cancel()
        await asyncio.wait([task])
        return task.cancelled()

    assert shared_loop.call(stop, (app.state.server,), {})
    assert answers == {n: str(2 * n) for n in range(1, 9)}
    assert len(loops) == 1


def test_context_variables_flow_from_async_middleware_to_def_handler(
    make_client: MakeClient,
) -> None:
    app = App()

    @app.middleware
    async def set_id(request: Request, call_next: Any) -> Response:
        request_id.set(request.headers.get("x-id", "none"))
        return await call_next(request)  # type: ignore[no-any-return]

    @app.get("/sync")
    def sync_handler() -> str:
        return request_id.get()

    @app.get("/async")
    async def async_handler() -> str:
        return request_id.get()

    client = make_client(app)
    assert client.get("/sync", headers={"x-id": "a1"}).text == "a1"
    assert client.get("/async", headers={"x-id": "b2"}).text == "b2"


def test_async_stream_under_wsgi_may_read_the_body(make_client: MakeClient) -> None:
    app = App()

    @app.post("/echo")
    async def echo(request: Request) -> StreamingResponse:
        return StreamingResponse(request.stream())

    payload = bytes(range(256)) * 1000
    assert make_client(app).post("/echo", content=payload).content == payload


def _asgi_get(app: App, path: str) -> Any:
    async def one() -> bytes:
        body = bytearray()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "root_path": "",
        }
        await app.asgi(scope, receive, send)
        return bytes(body)

    return one()


@pytest.mark.parametrize(("limit", "parties", "expected"), [(2, 3, b"broken"), (100, 50, b"ok")])
def test_thread_limit_bounds_def_handlers_under_asgi(
    limit: int, parties: int, expected: bytes
) -> None:
    app = App(thread_limit=limit)
    barrier = threading.Barrier(parties, timeout=1.0)

    @app.get("/")
    def wait_for_all() -> bytes:
        # reaches the barrier only if `parties` handlers run at the same time
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return b"broken"
        return b"ok"

    async def run() -> list[bytes]:
        return list(await asyncio.gather(*(_asgi_get(app, "/") for _ in range(parties))))

    assert asyncio.run(run()) == [expected] * parties


def test_default_thread_limit_is_well_above_anyios_40() -> None:
    assert App().thread_limit >= 100


def _raw_post(
    app: App, protocol: str, path: str, body: bytes, loop: asyncio.AbstractEventLoop
) -> int:
    """One request through the bare entry point (no client that allocates cycles)."""
    if protocol == "wsgi":
        status: list[str] = []
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "t",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
        }
        result = app.wsgi(environ, lambda s, h, e=None: status.append(s))
        b"".join(result)
        getattr(result, "close", lambda: None)()
        return int(status[0][:3])

    async def run() -> int:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"content-length", str(len(body)).encode())],
        }
        await app.asgi(scope, receive, send)
        return int(sent[0]["status"])

    return loop.run_until_complete(run())


def test_a_request_leaves_no_reference_cycles(protocol: str) -> None:
    # every request's objects are freed by reference counting alone: a cycle
    # per request (say request <-> channel) makes the GC run often and slowly
    import gc
    import logging

    app = App()

    @app.post("/sync")
    def sync_echo(request: Request) -> Any:
        return request.json()

    @app.post("/async")
    async def async_echo(request: Request) -> Any:
        return await request.json()

    @app.post("/fail")
    def fail() -> None:
        raise ValueError("x")

    @app.post("/async-fail")
    async def async_fail() -> None:
        raise ValueError("x")

    @app.post("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b"]))

    @app.post("/async-stream")
    async def async_stream() -> StreamingResponse:
        async def chunks() -> Any:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    paths = {
        "/sync": 200,
        "/async": 200,
        "/missing": 404,
        "/fail": 500,
        "/async-fail": 500,
        "/stream": 200,
        "/async-stream": 200,
    }
    logging.getLogger("microweb").disabled = True
    loop = asyncio.new_event_loop()
    try:
        for path in paths:  # warm up: threads, loops, caches
            _raw_post(app, protocol, path, b'{"n": [1, 2, 3]}', loop)
        gc.collect()
        gc.disable()
        try:
            for _ in range(10):
                for path, status in paths.items():
                    assert _raw_post(app, protocol, path, b'{"n": [1, 2, 3]}', loop) == status
            assert gc.collect() == 0
        finally:
            gc.enable()
    finally:
        loop.close()
        logging.getLogger("microweb").disabled = False


def _nested_app(limit: int) -> App:
    app = App(thread_limit=limit)

    @app.middleware
    def outer(request: Request, call_next: Any) -> Response:  # holds a thread while it waits
        return call_next(request)  # type: ignore[no-any-return]

    @app.middleware
    async def inner(request: Request, call_next: Any) -> Response:
        return await call_next(request)  # type: ignore[no-any-return]

    @app.get("/")
    def handler() -> str:  # needs a thread again, inside the outer middleware's wait
        return "ok"

    return app


def test_nested_sync_work_needs_no_second_pool_thread() -> None:
    # a def middleware waiting on async code that runs def code: that def code
    # runs in the waiting thread, so `thread_limit` concurrent requests cannot
    # exhaust the pool (they did, for good, when it took a second thread)
    app = _nested_app(limit=2)

    async def run() -> list[bytes]:
        return list(
            await asyncio.wait_for(asyncio.gather(*(_asgi_get(app, "/") for _ in range(6))), 10)
        )

    assert asyncio.run(run()) == [b"ok"] * 6


def test_an_abandoned_call_next_does_not_hang_the_wsgi_thread(make_client: MakeClient) -> None:
    app = App()

    @app.middleware
    async def timeout(request: Request, call_next: Any) -> Any:
        try:
            return await asyncio.wait_for(call_next(request), 0.2)
        except asyncio.TimeoutError:
            return {"detail": "timeout"}, 504

    @app.middleware
    def passthrough(request: Request, call_next: Any) -> Response:
        return call_next(request)  # type: ignore[no-any-return]

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(0.6)
        return "late"

    client = make_client(app)
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(client.get("/slow")))
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "the request never ended"
    assert (answers[0].status_code, answers[0].json()) == (504, {"detail": "timeout"})


def test_sync_streams_do_not_take_the_handlers_threads() -> None:
    # a sync stream holds a thread only while it makes a chunk, and not one of
    # the threads `def` handlers run in
    from microweb.testing import TestClient

    app = App(thread_limit=2)
    release = threading.Event()

    @app.get("/feed")
    def feed() -> StreamingResponse:
        def chunks() -> Any:
            yield b"first"
            release.wait(30)  # a feed with nothing new to say
            yield b"last"

        return StreamingResponse(chunks())

    def within(seconds: float, fn: Any) -> Any:
        """fn() in a thread; fails the test if it does not return in time."""
        out: list[Any] = []
        worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
        worker.start()
        worker.join(seconds)
        assert out, f"still waiting after {seconds} s"
        return out[0]

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    with TestClient(app, protocol="asgi") as client:
        contexts = [client.stream("GET", "/feed") for _ in range(3)]
        streams = [context.__enter__() for context in contexts]
        chunks = [r.iter_raw() for r in streams]
        for it in chunks:
            assert within(5, lambda it=it: next(it)) == b"first"
        # no thread of the handlers' pool is stuck in a stream
        assert within(5, lambda: client.get("/ping").text) == "pong"
        release.set()
        for it, context in zip(chunks, contexts, strict=True):
            assert b"".join(it) == b"last"
            context.__exit__(None, None, None)


def test_a_stream_stops_when_the_client_leaves_even_with_an_unread_body() -> None:
    from microweb.testing import TestClient

    app = App()
    closed = threading.Event()

    @app.post("/ticker")
    async def ticker() -> StreamingResponse:  # never reads the request body
        async def ticks() -> Any:
            try:
                while True:
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                closed.set()

        return StreamingResponse(ticks())

    with TestClient(app, protocol="asgi") as client:
        with client.stream("POST", "/ticker", content=b"{}") as r:
            assert next(r.iter_lines()) == "tick"
        assert closed.wait(10), "the generator was not closed after the client left"
