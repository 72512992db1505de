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
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Bridge", "SharedLoop", "WorkerPool", "shared_loop"]

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
    """The result of one coroutine run on the shared loop for a WSGI thread."""

    __slots__ = ("exc", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.exc: BaseException | None = None


class _Call:
    """A sync call the loop asks the WSGI thread to make."""

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
        self.loop.call_soon_threadsafe(_report, self.fut, result, exc)


class Bridge:
    """The link between one WSGI thread and the shared loop, for one request.

    The WSGI thread blocks in `wait` serving the queue: sync calls the loop
    sends it (`call_in_thread`) and, at last, the outcome it waits for.
    """

    __slots__ = ("_done", "queue")

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: set[int] = set()

    async def call_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """From the loop: run ``fn(*args)`` in the waiting WSGI thread."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.queue.put(_Call(loop, fut, fn, args))
        return await fut

    def wait(self, until: Any) -> None:
        """In the WSGI thread: serve calls until `until` is put on the queue."""
        if id(until) in self._done:
            self._done.discard(id(until))
            return
        q = self.queue
        while True:
            item = q.get()
            if item is until:
                return
            if type(item) is _Call:
                item.run()
            else:  # the outcome of a nested wait that is not running: keep it
                self._done.add(id(item))


class SharedLoop:
    """One event loop per process, in a daemon thread, for async code under WSGI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ident: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def _reset(self) -> None:  # in a forked child: the thread did not survive
        self._lock = threading.Lock()
        self.loop = None
        self.ident = None
        self._tasks = set()

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None:
            with self._lock:
                if self.loop is None:
                    self._start()
            loop = self.loop
            assert loop is not None
        return loop

    def _start(self) -> None:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def forever() -> None:
                self.ident = threading.get_ident()
                self.loop = loop
                ready.set()
                await loop.create_future()  # never done: the loop's main task

            loop.run_until_complete(forever())

        threading.Thread(target=main, name="microweb-loop", daemon=True).start()
        ready.wait()

    def call(
        self,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bridge: Bridge,
    ) -> Any:
        """From a WSGI thread: run ``await fn(*args, **kwargs)`` on the loop and
        return its result, serving `bridge` meanwhile."""
        loop = self.get()
        outcome = _Outcome()
        put = bridge.queue.put
        tasks = self._tasks

        async def run() -> None:
            try:
                outcome.value = await fn(*args, **kwargs)
            except BaseException as exc:
                outcome.exc = exc
            finally:
                put(outcome)

        def start() -> None:
            task = loop.create_task(run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.call_soon_threadsafe(start)
        bridge.wait(outcome)
        if outcome.exc is not None:
            exc, outcome.exc = outcome.exc, None
            raise exc
        return outcome.value

    def on_loop(self) -> bool:
        return threading.get_ident() == self.ident


shared_loop = SharedLoop()


def _after_fork_in_child() -> None:
    shared_loop._reset()
    for pool in list(WorkerPool._pools):
        pool._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
