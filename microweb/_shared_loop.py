"""The shared loop: the one event loop per process that runs ``async def``
code under WSGI (`shared_loop`), and how the threads that wait for it run it.

* `SharedLoop` is the one event loop per process that runs ``async def`` code
  under WSGI, in a background thread started lazily (and again after a fork).
  It runs as ``run_until_complete`` of a never-ending main task, so anyio sees
  a root task and reuses its worker threads.
* `SharedEventLoop` removes the wake-ups where it can: the thread that
  waits runs its own coroutine's steps (`run_pinned`), while the loop's
  thread sleeps; every other task runs in the loop's thread, so each task's
  steps all run in one thread. A coroutine that awaits nothing external
  costs 6.3 µs a call in process against about 110 µs for the hop (a
  trivial coroutine, on an idle machine); under gunicorn's sync worker an
  ``async def`` handler went from 1.62x to 1.22-1.25x the CPU of a raw WSGI
  app per request.

Invariants (tests/test_lending.py): one thread at a time runs loop code,
the one holding the baton; the loop's own thread lets it go only while it
sleeps or hands over to threads waiting for it, and a waiting thread holds
it for one step. A task's steps all run in one thread: a pinned task's
(scheduled through `call_soon`, the only way asyncio schedules a task's
step or wake-up) wait in its call's `steps`, everything else runs in the
loop's thread. asyncio's order holds across threads: a pinned task's
step scheduled while callbacks are ready runs after them (the loop's
thread rings the step's thread once it has run them). A waiting thread
interrupted (a signal handler that raised) lets the baton go if it holds
it (an RLock knows) and hands what is left in `steps`, sync work
included, to the loop's thread (the one case where a task moves); it
takes things from `steps` without a point in between where a handler
could raise, so nothing is lost. Whoever gives the baton
back leaves no work the sleeping loop thread would miss: what other
threads queue wakes it by itself (its sleep watches the wake-up fds), and
the giver wakes it for what its own step left (ready callbacks, a timer
earlier than the one it sleeps until -- at the latest when its task stops
for something or the timer is due -- a stop). Sync work a subtask sends
to a pinned task's bridge goes to the pool, never to the thread that must
keep running the task's own steps; while the thread does its own task's
sync work, the task is shielded from anyio's cancel scopes (which would
cancel it again at every turn of the loop meanwhile).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import heapq
import math
import os
import select
import selectors
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ._concurrency import (
    _STEP,
    Job,
    WorkerPool,
    _bridge,
    _Call,
    _finished,
    _keep_running,
    _noop,
    _outcome,
    _write,
    call_on_loop,
    logger,
)

__all__ = ["SharedEventLoop", "SharedLoop", "run_pinned", "shared_loop"]


# --------------------------------------------------------------------------
# The shared loop, run in turns by its own thread and the threads that wait
# --------------------------------------------------------------------------

_set_running_loop = asyncio.events._set_running_loop
_get_running_loop = asyncio.events._get_running_loop
_Task = asyncio.Task
_Handle = asyncio.Handle

#: Whether a WSGI thread runs its own coroutine's steps on the shared loop
#: (`SharedEventLoop`); tests turn it off to test the hop itself.
LEND = True


class _ParkingSelector(selectors.EpollSelector):
    """The shared loop's selector: where its thread would sleep, it parks
    (`SharedEventLoop._park`), then looks without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.park: Callable[[float | None], None] | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        park = self.park
        if park is not None and (timeout is None or timeout > 0):
            park(timeout)
            timeout = 0
        return super().select(timeout)


class SharedEventLoop(asyncio.SelectorEventLoop):
    """The shared loop: one thread at a time runs it, and each task's steps all
    run in one thread.

    A hop costs two thread wake-ups (the loop's, then the waiting thread's),
    and on a machine with idle CPUs the wake-ups cost more than the rest of
    the hop together (a bare round trip of two Python threads costs 1.45x a
    raw WSGI request under gunicorn's sync worker). Here the thread that waits
    for a coroutine (`run_pinned`) runs that coroutine's steps itself: its task
    is *pinned* to the thread; the task's steps, as they become ready
    (`call_soon`), and the sync work the coroutine sends back wait in the
    call's `steps`, each ringing the call's (bridge) queue, which the thread
    serves. A coroutine that awaits nothing the loop must
    wait for (I/O, a timer, another task) is done without any thread being
    woken; one that awaits I/O wakes the loop's thread for it, as before.

    Every other task -- what a request leaves running, what it spawns (its
    subtasks), the app's own -- runs all its steps in the loop's own thread:
    asyncio code may assume a task stays in one thread (greenlets must:
    SQLAlchemy's asyncio extension runs each query in one), and a request's
    thread never runs code of another task (so a signal handler that raises
    in the main thread, gunicorn's sync worker, interrupts that request only).

    One thread at a time touches the loop: the holder of the *baton* (a
    lock). The loop's own thread holds it, except while it sleeps (`_park`:
    it lets the baton go, sleeps in a poll of the epoll object -- so it wakes
    on whatever its own select would have, its timeout included -- and takes
    the baton back before it looks) and while it hands the loop over to
    threads that want it (`_hand_over`, after any turn while some wait: a busy
    loop never starves them). A waiting thread takes the baton (`take`) for
    each step it runs, and gives it back (`give_back`) waking the sleeping
    loop thread only for work that thread's sleep would not end on: callbacks
    ready, a timer earlier than the one it sleeps until, a stop.

    asyncio's own epoll loop only, out of debug mode and without a task
    factory: its private state (`_ready`, `_scheduled`) is read as
    `BaseEventLoop._run_once` reads it.
    """

    def __init__(self) -> None:
        selector = _ParkingSelector()
        super().__init__(selector)
        #: (reentrant only to say who holds it: `_is_owned`; never taken twice)
        self.baton = threading.RLock()
        #: Tasks pinned to a waiting thread, and their calls (whose queues get their steps).
        self._pinned: dict[asyncio.Task[Any], _Call] = {}
        self._pin_next: _Call | None = None
        self._pin_first = False  # (its first step is `_start`'s to run)
        self._wanted = 0  # threads waiting for the baton
        self._turnstile = threading.Condition(threading.Lock())
        self._parked = False
        self._until = math.inf  # loop time the parked thread wakes at by itself
        self._wake_fd = -1
        self._hooks = (
            self._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
            self._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
        )
        self._ring_ctx = contextvars.Context()  # (the loop's thread's doorbells run in it)
        self._sleep = select.poll()
        self._sleep.register(selector.fileno(), select.POLLIN)
        selector.park = self._park

    def adopt(self, wake_fd: int) -> None:
        """In the loop's own thread, before it runs the loop (holding the baton from now on)."""
        self.baton.acquire()
        self._wake_fd = wake_fd

    def lendable(self) -> bool:
        """Whether a waiting thread may run its coroutine's steps (`run_pinned`)."""
        return (
            LEND
            and not self._debug  # type: ignore[attr-defined]
            and self._task_factory is None  # type: ignore[attr-defined]
            and _get_running_loop() is None
        )

    # -- the loop's own thread

    def _park(self, timeout: float | None) -> None:
        """Sleep without the baton until something the loop watches is ready."""
        scheduled = self._scheduled  # type: ignore[attr-defined]
        # (`_run_once` has just dropped the cancelled timers at the head)
        self._until = scheduled[0]._when if timeout is not None and scheduled else math.inf
        ms = -1 if timeout is None else math.ceil(timeout * 1e3)
        self._parked = True
        self.baton.release()
        try:
            self._sleep.poll(ms)
        finally:
            self.baton.acquire()
            self._parked = False

    def _run_once(self) -> None:
        super()._run_once()  # type: ignore[misc]
        if self._wanted:
            self._hand_over()

    def _hand_over(self) -> None:
        """Let the threads waiting for the baton have it, then take it back."""
        self.baton.release()
        try:
            with self._turnstile:
                # (bounded: threads that keep coming never starve this one)
                self._turnstile.wait_for(self._nobody_waits, 0.05)
        finally:
            self.baton.acquire()

    def _nobody_waits(self) -> bool:
        return not self._wanted

    # -- routing: a pinned task's steps go to its thread

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., Any], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        call = self._pin_next
        if call is not None:  # the first step of the task `_start` is making
            self._pin_next = None
            self._pinned[callback.__self__] = call  # type: ignore[attr-defined]
            if not self._ready:  # type: ignore[attr-defined]
                # nothing ready before it: `_start` runs it at once (no ring)
                handle = _Handle(callback, args, self, context)
                call.steps.append(handle)  # type: ignore[union-attr]
                self._pin_first = True
                return handle
        else:
            pinned = self._pinned
            if not pinned:
                return super().call_soon(callback, *args, context=context)
            task = getattr(callback, "__self__", None)
            if type(task) is not _Task or (call := pinned.get(task)) is None:
                return super().call_soon(callback, *args, context=context)
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        handle = _Handle(callback, args, self, context)
        call.steps.append(handle)  # type: ignore[union-attr]
        if self._ready:  # type: ignore[attr-defined]
            # callbacks ready before this step run first (asyncio's order: a
            # task started, then ``sleep(0)``, has run its first step): the
            # loop's thread rings the call's thread once it has run them
            self._ready.append(_Handle(call.queue.put, (_STEP,), self, self._ring_ctx))  # type: ignore[attr-defined]
        else:
            call.queue.put(_STEP)
        return handle

    # -- the threads that wait

    def take(self) -> None:
        """Take the baton (from a thread that waits for a coroutine)."""
        if self.baton._is_owned():  # type: ignore[attr-defined]
            # left taken by this thread, interrupted in between (a signal
            # handler that raised, in the main thread): it is this thread's
            return
        if not self.baton.acquire(False):
            turnstile = self._turnstile
            with turnstile:
                self._wanted += 1
            try:
                self.baton.acquire()
            finally:
                with turnstile:
                    self._wanted -= 1
                    turnstile.notify_all()

    def give_back(self, soon: bool = False) -> None:
        """Let the baton go; wake the parked loop thread for work its sleep would
        miss. `soon`: this thread takes the baton again at once (the task's next
        step is ready), so a timer can wait for that (a timeout that the task
        cancels before it ends wakes nobody) until it is due."""
        wake: Any = False
        try:
            if self._parked:
                wake = self._ready or self._stopping  # type: ignore[attr-defined]
                if not wake:
                    scheduled = self._scheduled  # type: ignore[attr-defined]
                    while scheduled and scheduled[0]._cancelled:  # (as `_run_once` does)
                        self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
                        heapq.heappop(scheduled)._scheduled = False
                    if scheduled and (when := scheduled[0]._when) < self._until:
                        # `soon`: not yet, unless the timer is due (a task that
                        # never stops, a timeout around it, would wait for ever)
                        wake = not soon or when <= self.time()
        finally:
            self.baton.release()
        if not wake:
            return
        if self._wake_fd < 0:
            self.call_soon_threadsafe(_noop)
            return
        try:
            _write(self._wake_fd, b"\0")
        except OSError:  # full (so readable: the loop's thread wakes anyway)
            pass

    def step(self, fn: Callable[[Any], Any], arg: Any, call: _Call) -> None:
        """With the baton taken here: ``fn(arg)`` as loop code, then give it back."""
        # (each part of the way back in a `finally` of its own: a signal handler
        # that raises in one, in the main thread, does not skip the others)
        try:
            hooks = sys.get_asyncgen_hooks()
            try:
                _set_running_loop(self)
                sys.set_asyncgen_hooks(*self._hooks)
                fn(arg)
            finally:
                sys.set_asyncgen_hooks(*hooks)
        finally:
            try:
                _set_running_loop(None)
            finally:
                # (`soon`: the task's next step waits in `steps`)
                self.give_back(bool(call.steps))

    def _start(self, call: _Call) -> None:
        """On the loop, here: make `call`'s task, pinned to this thread."""
        call.pinned = True
        call.steps = collections.deque()
        token = _bridge.set(call)  # the task's context is a copy of this one
        try:
            self._pin_next = call
            self._pin_first = False
            coro = call.run()
            try:
                task = call.task = _Task(coro, loop=self)
            except BaseException:
                coro.close()  # (a closed loop, say: never awaited, and no warning about it)
                raise
        finally:
            self._pin_next = None
            _bridge.reset(token)
        task.add_done_callback(call.ended)
        # the task's first step, now, with the baton still here (unless
        # callbacks ready before it must run first: then it was rung as any)
        if self._pin_first:
            self._pin_first = False
            _run_step(call.steps)

    def _unpin(self, call: _Call) -> None:
        """On the loop, here, when the waiting thread stops waiting before the
        task ends: the task goes on in the loop's own thread."""
        self._pinned.pop(call.task, None)  # type: ignore[arg-type]
        steps = call.steps
        call.steps = None  # (sync work sent from now on goes to the pool)
        job, call.job = call.job, None
        if job is not None:  # taken, not told: tell it (or have it done) elsewhere
            if job.ticket:
                call._fallback.submit(job)
            else:
                job.report()
        while steps:
            item = steps.popleft()
            if type(item) is Job:
                call._fallback.submit(item)
            else:
                self._ready.append(item)  # type: ignore[attr-defined]


def run_pinned(loop: SharedEventLoop, call: _Call) -> Any:
    """From a thread that waits: run `call`'s coroutine on `loop`, its steps in this
    thread (see `SharedEventLoop`), and return its outcome.

    What the thread takes from `call.steps` is taken without a point where a
    signal handler could raise in between (a subscript, a ``del``, no call),
    so an interruption never loses a step: `_unpin` hands what is left to the
    loop's thread, sync work included.
    """
    q = call.queue
    hooks = sys.get_asyncgen_hooks()
    try:
        loop.take()
        loop.step(loop._start, call, call)  # (its first step too)
        steps = call.steps
        assert steps is not None
        while q.get() is not call:
            if not steps:
                continue
            if type(steps[0]) is Job:  # sync work sent back: done here, told to the coroutine
                loop.take()
                loop.give_back()  # (the timers its last step set must not wait for it)
                call.job = steps[0]
                del steps[0]
                if call.job.call():
                    loop.take()
                    loop.step(_finished, call.job, call)
                call.job = None
            else:  # a step of the task
                loop.take()
                loop.step(_run_step, steps, call)
    except BaseException:
        # interrupted (a signal handler that raised): let the loop go if this
        # thread still holds it, and hand the task to the loop's thread
        try:
            try:
                if _get_running_loop() is loop:
                    _set_running_loop(None)
                sys.set_asyncgen_hooks(*hooks)
            finally:
                if loop.baton._is_owned():  # type: ignore[attr-defined]
                    loop.give_back()
        finally:
            if call.task is not None and not call.task.done():
                loop.take()
                loop.step(loop._unpin, call, call)
                _keep_running(call)
        raise
    finally:
        loop._pinned.pop(call.task, None)  # type: ignore[arg-type]
        if call.steps:  # (nothing is left once the task has ended; never lose it)
            loop.take()
            loop.step(loop._unpin, call, call)
        call.close()
    return _outcome(call)


def _run_step(steps: collections.deque[asyncio.Handle]) -> None:
    """The first of `steps`, taken and run (as `Handle._run`, without its frame)."""
    handle = steps[0]
    del steps[0]
    if handle._cancelled:
        return
    try:
        handle._context.run(handle._callback, *handle._args)  # type: ignore[attr-defined]
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        handle._loop.call_exception_handler(  # type: ignore[attr-defined]
            {"message": f"Exception in callback {handle!r}", "exception": exc, "handle": handle}
        )


def _shared_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop for `SharedLoop`: a `SharedEventLoop` where it can be."""
    if (
        hasattr(selectors, "EpollSelector")
        and hasattr(select, "poll")
        and type(asyncio.get_event_loop_policy()) is asyncio.DefaultEventLoopPolicy
    ):
        return SharedEventLoop()
    return asyncio.new_event_loop()  # (a policy of the user's, uvloop's: its loops)


# --------------------------------------------------------------------------
# Lifespan and the shared loop
# --------------------------------------------------------------------------


#: Threads for sync work that async code under WSGI sends when no WSGI thread
#: waits for it any more (work a request left running on the shared loop).
SPARE_THREADS = 40


class _WakePipe:
    """A pipe that a loop reads: a thread that queued a task for the loop writes a
    byte to wake it. Cheaper than ``call_soon_threadsafe``'s wake-up, which
    queues a callback and whose reader reads the loop's own pipe until it
    fails (an exception each time); one read here, and the loop's level-
    triggered selector says so again if bytes are left."""

    __slots__ = ("_read", "fd")

    def __init__(self, read: int, write: int) -> None:
        self._read = read
        #: The end written to wake the loop (`call_on_loop`'s `wake_fd`).
        self.fd = write

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> _WakePipe | None:
        """A pipe read by `loop` (None where the loop has no `add_reader`)."""
        try:
            read, write = os.pipe()
        except OSError:
            return None
        pipe = cls(read, write)
        try:
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            loop.add_reader(read, pipe._drain)
        except (NotImplementedError, OSError, ValueError):
            pipe.close()
            return None
        return pipe

    def _drain(self) -> None:
        try:
            os.read(self._read, 4096)
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._read, self.fd):
            try:
                os.close(fd)
            except OSError:
                pass


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
        self.pool = WorkerPool(SPARE_THREADS)
        #: Wakes the loop once a task is queued for it (see `_WakePipe`), or None.
        self._wake: _WakePipe | None = None

    def _reset(self) -> None:  # in a forked child: the thread did not survive
        self._lock = threading.Lock()
        self.loop = None
        self.ident = None
        self._thread = None
        if self._wake is not None:
            self._wake.close()  # (the parent's: no other thread uses it here)
            self._wake = None

    def running(self) -> bool:
        """Whether the loop's thread is alive (it is never started by this)."""
        thread = self._thread
        return self.loop is not None and thread is not None and thread.is_alive()

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self.loop  # (None once the loop has stopped, and in a forked child)
        if loop is None:
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
                loop = _shared_event_loop()
            except BaseException as exc:  # e.g. out of file descriptors
                failure.append(exc)
                ready.set()
                return
            asyncio.set_event_loop(loop)
            # (a pipe the loop reads is left open when the loop stops: a thread
            # may still write to it, and its number must not name another file)
            wake = _WakePipe.open(loop)
            if isinstance(loop, SharedEventLoop):
                loop.adopt(-1 if wake is None else wake.fd)

            async def forever() -> None:
                self.ident = threading.get_ident()
                self._wake = wake
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
        loop = self.loop
        if loop is None:
            loop = self.get()
        if type(loop) is SharedEventLoop and loop.lendable():
            return run_pinned(loop, _Call(self.pool, fn, args, kwargs))
        wake = self._wake
        return call_on_loop(loop, fn, args, kwargs, self.pool, -1 if wake is None else wake.fd)

    def on_loop(self) -> bool:
        """Whether this thread runs loop code now (the loop's own thread, or a
        waiting thread running its coroutine's step)."""
        loop = self.loop
        return loop is not None and _get_running_loop() is loop


shared_loop = SharedLoop()


def _after_fork_in_child() -> None:
    shared_loop._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
