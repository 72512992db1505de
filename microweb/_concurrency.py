"""Threads and event loops: where the adapters run code of the other kind.

* `WorkerPool` runs ``def`` code for the ASGI adapter. It is a plain pool of
  threads blocking on one `queue.SimpleQueue`; measured here, one hop costs
  about half of ``anyio.to_thread.run_sync`` (48 µs against 108 µs per call on
  an idle loop), and the hop is most of what a ``def`` handler costs under ASGI.
* `SharedLoop` is the one event loop per process that runs ``async def`` code
  under WSGI, in a background thread started lazily (and again after a fork).
  It runs as ``run_until_complete`` of a never-ending main task, so anyio sees
  a root task and reuses its worker threads.
* `Bridge` lets that loop hand work back to the waiting WSGI thread: sync
  steps of the pipeline and ``wsgi.input`` reads run there, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = [
    "Bridge",
    "LifespanHolder",
    "SharedLoop",
    "WorkerPool",
    "call_on_loop",
    "current_bridge",
    "shared_loop",
]

logger = logging.getLogger("microweb")

#: Seconds an idle pool thread waits for work before it exits.
IDLE_TIMEOUT = 10.0


def _report(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class WorkerPool:
    """At most `limit` threads running sync functions for coroutines."""

    _pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._reset()
        WorkerPool._pools.add(self)

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # idle threads not yet promised to a queued item
        self._threads = 0

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Start ``fn(*args)`` in a pool thread (in a copy of the current context)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = self._threads < self.limit
                if spawn:
                    self._threads += 1
        self._queue.put((loop, fut, contextvars.copy_context(), fn, args))
        if spawn:
            threading.Thread(target=self._work, name="microweb-worker", daemon=True).start()
        return fut

    def _work(self) -> None:
        q, lock = self._queue, self._lock
        while True:
            try:
                item = q.get(timeout=IDLE_TIMEOUT)
            except queue.Empty:
                with lock:
                    if self._idle > 0:  # nobody was promised this thread: leave
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            loop, fut, ctx, fn, args = item
            del item
            result: Any = None
            exc: BaseException | None = None
            try:
                result = ctx.run(fn, *args)
            except BaseException as e:
                exc = e
            with lock:
                self._idle += 1
            try:
                loop.call_soon_threadsafe(_report, fut, result, exc)
            except RuntimeError:  # the loop was closed meanwhile
                pass
            del loop, fut, ctx, fn, args, result, exc


class _Outcome:
    """The result of one coroutine run for a waiting thread."""

    __slots__ = ("exc", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.exc: BaseException | None = None


class _Call:
    """A sync call the loop asks a waiting thread to make."""

    __slots__ = ("args", "ctx", "fn", "fut", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        self.loop, self.fut, self.fn, self.args = loop, fut, fn, args
        self.ctx = contextvars.copy_context()

    def run(self) -> None:
        result: Any = None
        exc: BaseException | None = None
        try:
            result = self.ctx.run(self.fn, *self.args)
        except BaseException as e:
            exc = e
        try:
            self.loop.call_soon_threadsafe(_report, self.fut, result, exc)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


class Bridge:
    """The way back from a coroutine to the thread that waits for it.

    A thread that runs a coroutine on a loop and waits for it (`call_on_loop`)
    serves its bridge meanwhile: the sync work the coroutine sends back
    (`call_in_thread`: sync pipeline steps, ``wsgi.input`` reads, disk
    writes) runs in that thread, which is idle anyway, instead of needing
    another one. Each wait has a bridge of its own, so nested waits (a ``def``
    middleware's `call_next` inside an async one) never mix their outcomes.
    """

    __slots__ = ("queue",)

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    async def call_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """From the loop: run ``fn(*args)`` in the waiting thread."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.queue.put(_Call(loop, fut, fn, args))
        return await fut

    def wait(self, until: Any) -> None:
        """In the waiting thread: serve calls until `until` is put on the queue."""
        q = self.queue
        while True:
            item = q.get()
            if item is until:
                return
            if type(item) is _Call:
                item.run()


#: The bridge of the thread waiting for the running coroutine (None when nobody waits).
_bridge: contextvars.ContextVar[Bridge | None] = contextvars.ContextVar(
    "microweb_bridge", default=None
)


def current_bridge() -> Bridge | None:
    """On a loop: the bridge back to the thread that waits for this coroutine, if any."""
    return _bridge.get()


def call_on_loop(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[..., Coroutine[Any, Any, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tasks: set[asyncio.Task[Any]],
) -> Any:
    """From a thread that may block: run ``await fn(*args, **kwargs)`` on `loop`
    and return its result, serving the coroutine's calls meanwhile (see `Bridge`).

    The coroutine runs in a copy of this thread's context. A CancelledError
    from it (microweb never cancels these tasks) comes back as a RuntimeError:
    an error of the code, not a cancellation of this thread.
    """
    bridge = Bridge()
    outcome = _Outcome()
    put = bridge.queue.put

    async def run() -> None:
        try:
            outcome.value = await fn(*args, **kwargs)
        except asyncio.CancelledError as exc:
            outcome.exc = RuntimeError("the coroutine was cancelled")
            outcome.exc.__cause__ = exc
        except BaseException as exc:
            outcome.exc = exc
        finally:
            put(outcome)

    def start() -> None:
        task = loop.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    token = _bridge.set(bridge)
    try:
        loop.call_soon_threadsafe(start)  # the task copies this context, bridge included
    finally:
        _bridge.reset(token)
    bridge.wait(outcome)
    exc = outcome.exc
    if exc is not None:
        outcome.exc = None
        try:
            raise exc
        finally:
            del exc  # no frame <-> traceback cycle left behind
    return outcome.value


class LifespanHolder:
    """Keeps an app's lifespan context open in one task, from `enter` to `exit`."""

    def __init__(self, cm: Any) -> None:
        self._cm = cm
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def enter(self) -> None:
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        stop = self._stop = asyncio.Event()
        cm = self._cm

        async def hold() -> None:
            try:
                async with cm:
                    entered.set_result(None)
                    await stop.wait()
            except BaseException as exc:
                if not entered.done():
                    entered.set_exception(exc)
                    return
                raise

        self._task = loop.create_task(hold())
        await entered

    async def exit(self) -> None:
        if self._task is not None and self._stop is not None:
            self._stop.set()
            await self._task


class SharedLoop:
    """One event loop per process, in a daemon thread, for async code under WSGI.

    Started on first use, and again after a fork (the thread does not survive
    it) or if the loop ever stopped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ident: int | None = None
        self._thread: threading.Thread | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    def _reset(self) -> None:  # in a forked child: the thread did not survive
        self._lock = threading.Lock()
        self.loop = None
        self.ident = None
        self._thread = None
        self.tasks = set()

    def get(self) -> asyncio.AbstractEventLoop:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            with self._lock:
                if self.loop is None or self._thread is None or not self._thread.is_alive():
                    self._start()
            loop = self.loop
            assert loop is not None
        return loop

    def _start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                loop = asyncio.new_event_loop()
            except BaseException as exc:  # e.g. out of file descriptors
                failure.append(exc)
                ready.set()
                return
            asyncio.set_event_loop(loop)

            async def forever() -> None:
                self.ident = threading.get_ident()
                self.loop = loop
                ready.set()
                await loop.create_future()  # never done: the loop's main task

            try:
                loop.run_until_complete(forever())
            except BaseException:
                logger.exception("the shared event loop stopped; it will be restarted")
            finally:
                self.loop = None

        thread = threading.Thread(target=main, name="microweb-loop", daemon=True)
        self._thread = thread
        thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise RuntimeError("cannot start the shared event loop") from failure[0]

    def call(
        self,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """From a WSGI thread: `call_on_loop` on the shared loop."""
        return call_on_loop(self.get(), fn, args, kwargs, self.tasks)

    def on_loop(self) -> bool:
        return threading.get_ident() == self.ident


shared_loop = SharedLoop()


def _after_fork_in_child() -> None:
    shared_loop._reset()
    for pool in list(WorkerPool._pools):
        pool._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
