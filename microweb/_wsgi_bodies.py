"""Streamed response bodies under WSGI: the iterables `app.wsgi` returns.

A sync iterable is iterated in the server's thread. An async one is pumped by
one task on the shared loop into the request's bridge queue, a few chunks
ahead; the server's thread takes them (serving the loop's calls meanwhile,
such as body reads). With a keep-alive interval (Server-Sent Events) the
server's thread waits for a chunk at most that long and sends the ping
instead; a sync iterable then runs in a producer thread of its own, since
a blocked ``next()`` cannot time out.

A stream that fails half-way raises `StreamAborted` to the server (after
logging the cause), so the server drops the connection instead of ending
the body as if it were whole.

A response with background tasks is wrapped in `WithBackground`: the server
calls its ``close()`` once it has written the body (or given up on a client
that left), and the tasks run there, in the server's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import queue
import threading
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._concurrency import Bridge, Job, _bridge
from ._shared_loop import shared_loop
from .background import log_failure, tasks_of
from .responses import chunk_bytes

if TYPE_CHECKING:
    from .background import BackgroundTask
    from .requests import Request

__all__ = ["AsyncBody", "StreamAborted", "SyncBody", "WithBackground", "close_iterable"]

logger = logging.getLogger("microweb")

#: Chunks a producer may run ahead of the server's writes.
AHEAD = 4


class StreamAborted(Exception):
    """Raised to the server when a streamed body fails half-way (logged by microweb)."""

    def __init__(self) -> None:
        super().__init__("the response stream failed; the error is in the 'microweb' log")


def close_iterable(it: Any) -> None:
    """Close a sync or async iterator that will not be iterated further."""
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("Error while closing a response stream")
    elif hasattr(it, "aclose"):
        try:
            shared_loop.call(it.aclose, (), {})
        except Exception:
            logger.exception("Error while closing a response stream")


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()
_STOPPED = object()


def _release(request: Request | None) -> None:
    if request is not None and request._form is not None:
        request._close()


class SyncBody:
    """A sync streamed body (the iterable handed to the server).

    The stream runs in the request's context `ctx` (it is the request's last
    step): what earlier steps set in context variables is seen there.
    """

    def __init__(
        self,
        stream: Iterable[bytes | str],
        request: Request | None,
        ctx: contextvars.Context,
        keepalive: float | None = None,
        ping: bytes = b"",
    ) -> None:
        self._it: Iterator[bytes | str] = iter(stream)
        self._request = request
        self._ctx = ctx
        self._keepalive = keepalive
        self._ping = ping
        self._done = False
        if keepalive is not None:
            self._queue: queue.Queue[Any] = queue.Queue(AHEAD)
            self._stop = threading.Event()
            # a copy: the server's thread may still be in `ctx` when the producer starts
            threading.Thread(
                target=ctx.copy().run, args=(self._produce,), name="microweb-stream", daemon=True
            ).start()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._keepalive is None:
            try:
                return chunk_bytes(self._ctx.run(next, self._it))
            except StopIteration:
                raise
            except Exception as exc:
                logger.error("Exception while streaming a response", exc_info=exc)
                raise StreamAborted from None
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self._keepalive)
        except queue.Empty:
            return self._ping
        if type(item) is bytes:
            return item
        self._done = True
        if type(item) is _Failed:
            logger.error("Exception while streaming a response", exc_info=item.exc)
            raise StreamAborted
        raise StopIteration

    def _produce(self) -> None:
        """In a thread of its own: iterate, and hand the chunks over."""
        it, stop = self._it, self._stop
        item: Any = _END
        try:
            for chunk in it:
                if not self._offer(chunk_bytes(chunk)):
                    return
        except Exception as exc:
            item = _Failed(exc)
        finally:
            close_iterable(it)  # here: only the thread running a generator may close it
        self._offer(item)
        del stop

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue  # the server is slow to write: wait, unless it closed us
        return False

    def close(self) -> None:
        if self._keepalive is None:
            self._ctx.run(close_iterable, self._it)
        else:
            self._stop.set()  # the producer closes the iterator after its current chunk
        _release(self._request)


class AsyncBody:
    """An async streamed body: pumped on the shared loop into the bridge queue."""

    def __init__(
        self,
        stream: AsyncIterable[bytes | str],
        request: Request,
        keepalive: float | None = None,
        ping: bytes = b"",
    ) -> None:
        self._request = request
        # chunks come through this bridge, and the pump's calls (body reads)
        self._bridge = Bridge(shared_loop.pool)
        self._keepalive = keepalive
        self._ping = ping
        self._finished = False
        self._closing = False
        self._stopped = threading.Event()
        self._loop = loop = shared_loop.get()
        self._sem: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        put = self._bridge.queue.put

        stopped = self._stopped

        async def pump() -> None:
            self._sem = sem = asyncio.Semaphore(AHEAD)
            it = stream.__aiter__()
            try:
                async for chunk in it:
                    await sem.acquire()
                    put(chunk_bytes(chunk))
                put(_END)
            except asyncio.CancelledError:
                # the end only when close() cancelled it; else the stream failed
                put(_END if self._closing else _Failed(RuntimeError("the stream was cancelled")))
            except BaseException as exc:
                put(_Failed(exc))
            finally:
                aclose = getattr(it, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:
                        logger.exception("Error while closing a response stream")

        def finished(task: asyncio.Task[None]) -> None:
            # a done callback: it runs even for a task cancelled before it started
            stopped.set()
            put(_STOPPED)

        def start() -> None:
            self._task = loop.create_task(pump())
            self._task.add_done_callback(finished)

        token = _bridge.set(self._bridge)  # the pump's context: its calls come to this thread
        try:
            loop.call_soon_threadsafe(start)
        finally:
            _bridge.reset(token)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._finished:
            raise StopIteration
        q = self._bridge.queue
        while True:
            try:
                item = q.get(timeout=self._keepalive)
            except queue.Empty:
                return self._ping
            if type(item) is bytes:
                assert self._sem is not None
                self._loop.call_soon_threadsafe(self._sem.release)
                return item
            if item is _END or item is _STOPPED:
                self._finished = True
                raise StopIteration
            if type(item) is _Failed:
                self._finished = True
                logger.error("Exception while streaming a response", exc_info=item.exc)
                raise StreamAborted
            if type(item) is Job:
                item.run()  # a sync call from the loop (e.g. a body read)

    def close(self) -> None:
        if not self._stopped.is_set():
            self._closing = True
            self._loop.call_soon_threadsafe(self._cancel)
            q = self._bridge.queue
            while True:  # let the generator's finally run before the request ends
                item = q.get()
                if item is _STOPPED:
                    break
                if type(item) is Job:
                    item.run()
        self._bridge.close()  # calls from tasks the stream left running go to spare threads
        _release(self._request)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class WithBackground:
    """A response body whose ``close()`` runs the response's background tasks.

    PEP 3333 servers call ``close()`` once they have written the body, and
    also when the client left half-way: the tasks run in both cases. They run
    in order in the server's thread, in `ctx` (a copy of the request's
    context); an ``async def`` task runs on the shared loop while this thread
    waits, as async handlers do. A task that raises is logged; the next runs.

    With `detach`, ``close()`` starts them in a thread of their own and
    returns: waitress writes the end of a chunked body only after ``close()``
    returns (gunicorn before it calls it), so a streamed body's client would
    wait for the tasks.
    """

    __slots__ = ("_background", "_body", "_closed", "_ctx", "_detach")

    def __init__(
        self,
        body: Iterable[bytes],
        background: BackgroundTask,
        ctx: contextvars.Context,
        detach: bool = False,
    ) -> None:
        self._body = body
        self._background = background
        self._ctx = ctx
        self._detach = detach
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if self._detach:
                threading.Thread(
                    target=self._ctx.run,
                    args=(run_background, self._background),
                    name="microweb-background",
                    daemon=True,
                ).start()
            else:
                self._ctx.run(run_background, self._background)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def run_background(background: BackgroundTask) -> None:
    """Run the tasks one after another in this (a WSGI) thread, logging failures."""
    for task in tasks_of(background):
        try:
            if task.is_async:
                shared_loop.call(task.func, task.args, task.kwargs)
            else:
                rv = task.func(*task.args, **task.kwargs)
                if inspect.isawaitable(rv):  # a def that returns a coroutine: run it too
                    shared_loop.call(_awaited, (rv,), {})
        except Exception as exc:
            log_failure(task, exc)
