"""A thread hop keeps nothing of a request once it is answered.

Every way a request crosses between threads and event loops -- a ``def``
handler (answering, failing, or running on while its request is cancelled),
hook, middleware, background task or stream under ASGI (the worker pool), an
``async def`` one under WSGI (the shared loop and the bridge back to
the WSGI thread), a body read across either -- runs many times over, with the
cyclic garbage collector off. The memory traced after 3N more requests must be
what it was after a warm-up, give or take a constant: a job, future, task,
context or bridge kept per request (in a set, a list, a pool's bookkeeping, a
reference cycle) grows it with N.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from microweb import App, BackgroundTask, Request, Response, Router, StreamingResponse

from . import raw

#: Requests of each kind in the first measured batch (the second has twice as many).
N = 100
#: What the traced memory may grow by over both batches (4,800 requests):
#: five bytes a request would pass it; a job kept per request passes it tenfold.
BOUND = 24 * 1024

SMALL = b'{"n": [1, 2, 3]}'
BIG = b'{"k": "' + b"x" * 70_000 + b'"}'  # beyond the pre-read: read from the thread


def _plain_app() -> App:
    """Routes with nothing around them (the adapters' direct calls), and a router's hooks."""
    app = App()

    @app.get("/def")
    def sync_get() -> Any:
        return {"ok": True}

    @app.post("/def-body")
    def sync_body(request: Request) -> Any:
        return {"n": len(request.body())}

    @app.get("/def-fails")
    def sync_fails() -> None:
        raise ValueError("a failure")

    @app.get("/def-background")
    def sync_background() -> Response:
        return Response(b"ok", background=BackgroundTask(len, "a def task"))

    @app.get("/def-stream")
    def sync_stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b"]))

    @app.get("/async")
    async def async_get() -> Any:
        return {"ok": True}

    @app.post("/async-body")
    async def async_body(request: Request) -> Any:
        return {"n": len(await request.body())}

    @app.get("/async-fails")
    async def async_fails() -> None:
        raise ValueError("a failure")

    @app.get("/async-background")
    async def async_background() -> Response:
        async def task() -> None:
            await asyncio.sleep(0)

        return Response(b"ok", background=BackgroundTask(task))

    @app.get("/async-stream")
    async def async_stream() -> StreamingResponse:
        async def chunks() -> Any:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    hooked = Router()

    @hooked.before_request
    def sync_hook(request: Request) -> None:
        request.state.seen = True

    @hooked.after_request
    async def async_hook(request: Request, response: Response) -> None:
        response.headers["X-Seen"] = "1"

    @hooked.get("/def")
    def hooked_sync() -> Any:
        return {"ok": True}

    @hooked.get("/async")
    async def hooked_async() -> Any:
        return {"ok": True}

    app.include_router(hooked, prefix="/hooked")

    @app.get("/def-cancelled")
    def sync_cancelled() -> str:  # runs on while its request is cancelled (ASGI)
        started.set()
        release.wait()
        release.clear()
        return "too late"

    return app


started = threading.Event()
release = threading.Event()


def _middleware_app() -> App:
    """A def middleware around an async one: each waits for code of the other kind."""
    app = App()

    @app.middleware
    def outer(request: Request, call_next: Callable[[Request], Response]) -> Response:
        return call_next(request)

    @app.middleware
    async def inner(request: Request, call_next: Any) -> Response:
        return await call_next(request)  # type: ignore[no-any-return]

    @app.get("/def")
    def sync_get() -> Any:
        return {"ok": True}

    @app.post("/async-body")
    async def async_body(request: Request) -> Any:
        return {"n": len(await request.body())}

    return app


REQUESTS: list[tuple[str, str, str, bytes, int]] = [
    ("plain", "GET", "/def", b"", 200),
    ("plain", "POST", "/def-body", SMALL, 200),
    ("plain", "POST", "/def-body", BIG, 200),
    ("plain", "GET", "/def-fails", b"", 500),
    ("plain", "GET", "/def-background", b"", 200),
    ("plain", "GET", "/def-stream", b"", 200),
    ("plain", "GET", "/async", b"", 200),
    ("plain", "POST", "/async-body", SMALL, 200),
    ("plain", "POST", "/async-body", BIG, 200),
    ("plain", "GET", "/async-fails", b"", 500),
    ("plain", "GET", "/async-background", b"", 200),
    ("plain", "GET", "/async-stream", b"", 200),
    ("plain", "GET", "/hooked/def", b"", 200),
    ("plain", "GET", "/hooked/async", b"", 200),
    ("middleware", "GET", "/def", b"", 200),
    ("middleware", "POST", "/async-body", SMALL, 200),
]


@pytest.fixture
def quiet() -> Iterator[None]:
    logger = logging.getLogger("microweb")
    logger.disabled = True  # the failures' logs: not what is measured
    try:
        yield
    finally:
        logger.disabled = False


def _traced_after(run: Callable[[int], None], n: int) -> int:
    run(n)
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.usefixtures("quiet")
def test_requests_through_thread_hops_leave_nothing_behind(protocol: str) -> None:
    apps = {"plain": _plain_app(), "middleware": _middleware_app()}
    loop = asyncio.new_event_loop()

    def run(times: int) -> None:
        for _ in range(times):
            for which, method, path, body, status in REQUESTS:
                app = apps[which]
                if protocol == "wsgi":
                    answer = raw.call_wsgi(app, method=method, path=path, body=body)
                else:
                    answer = loop.run_until_complete(
                        raw.call_asgi(app, method=method, path=path, body=body)
                    )
                assert answer.status == status, (method, path)
            if protocol == "asgi":
                loop.run_until_complete(cancelled(apps["plain"]))

    async def cancelled(app: App) -> None:
        """A request cancelled while its def handler runs: the cancellation goes
        on once the handler has returned."""
        started.clear()
        task = asyncio.ensure_future(raw.call_asgi(app, path="/def-cancelled"))
        await asyncio.to_thread(started.wait)
        task.cancel()
        release.set()
        try:
            await task
        except asyncio.CancelledError:  # (no pytest.raises: it keeps an object per use)
            return
        raise AssertionError("the request was not cancelled")

    try:
        run(20)  # warm-up: pool threads, the shared loop, caches, free lists
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            run(5)
            before = tracemalloc.take_snapshot()
            start = tracemalloc.get_traced_memory()[0]
            first = _traced_after(run, N)
            second = _traced_after(run, 2 * N)
            grown = tracemalloc.take_snapshot().compare_to(before, "lineno")[:5]
        finally:
            tracemalloc.stop()
            gc.enable()
    finally:
        loop.close()
    growth = second - start
    top = "\n".join(str(stat) for stat in grown)
    assert growth <= BOUND, (
        f"{growth} bytes more after {3 * N * len(REQUESTS)} requests "
        f"({first - start} after the first {N * len(REQUESTS)}); the largest:\n{top}"
    )
