"""Threads and event loops: where the adapters run code of the other kind.

* `Job` is one sync call that a coroutine has made in another thread. It runs
  in a copy of the coroutine's context, and what it sets there is set in the
  coroutine's context when the coroutine resumes (`Job.wait`), so context
  variables flow through every step of a request whatever thread runs it.
* `WorkerPool` runs jobs for the ASGI adapter (``def`` handlers and hooks):
  a plain pool of threads blocking on one `queue.SimpleQueue`; one hop costs
  about a third of ``anyio.to_thread.run_sync`` (15 µs against 50 µs per
  call, the best of seven batches on an idle loop), and the hop is most of
  what a ``def`` handler costs.
* `LoopInbox` takes what threads send back to a loop (a finished job): a
  deque, and one wake-up through an eventfd per batch instead of
  ``call_soon_threadsafe`` per call.
* `SharedLoop` is the one event loop per process that runs ``async def`` code
  under WSGI, in a background thread started lazily (and again after a fork).
  It runs as ``run_until_complete`` of a never-ending main task, so anyio sees
  a root task and reuses its worker threads.
* `Bridge` lets a loop hand work back to a thread that waits for one of its
  coroutines (`call_on_loop`): sync steps of the pipeline and ``wsgi.input``
  reads run there, never on the loop, and never need a second thread.
* `call_on_loop` is the hop itself: the thread makes the coroutine's task
  (on asyncio's own loops, see `_direct`), wakes the loop (the shared loop
  through a pipe of its own, `_WakePipe`) and sleeps on its bridge queue,
  where the task puts its outcome as its last step. Two thread wake-ups and
  one loop turn: in process, about 57k instructions a hop (2026-12: it was
  108k, and three loop turns); most of the rest is asyncio's own (making a
  Task, about 14k; a loop turn), and the wake-ups' kernel cost (7.5 µs for
  a bare round trip of two Python threads on one CPU of the benchmark
  machine, about 50 µs across two idle CPUs of that VM).
* `SharedEventLoop` removes the wake-ups where it can: the thread that
  waits runs its own coroutine's steps (`run_pinned`), while the loop's
  thread sleeps; every other task runs in the loop's thread, so each task's
  steps all run in one thread. A coroutine that awaits nothing external
  costs 6.3 µs a call in process against about 110 µs for the hop (a
  trivial coroutine, on an idle machine); under gunicorn's sync worker an
  ``async def`` handler went from 1.62x to 1.22-1.25x the CPU of a raw WSGI
  app per request.

Invariants (each is broken on purpose by a stress test in
tests/test_concurrency_stress.py):

1. Pool accounting, under `WorkerPool._lock`: every job put on the queue has
   a thread promised to it -- an idle thread (``_idle`` counts idle threads
   not yet promised to a job), a thread started for it, or, when the pool is
   full, the next thread to finish a job (``_backlog``). A thread that
   finishes a job takes a backlog promise before it counts itself idle; a
   thread whose wait times out leaves only if an unpromised idle slot
   exists. So ``_threads <= limit`` and no job waits while a thread idles.
2. A job is started at most once and only if nobody cancelled it first: the
   thread and a cancelled waiter race for its one ticket (`list.pop` is
   atomic). A waiter cancelled after the job started waits for it to return
   before the cancellation goes on, so a request's cleanup never runs under
   its still-running ``def`` code (as ``anyio.to_thread.run_sync``).
3. A bridge is served only while its thread waits. When the wait ends the
   thread closes the bridge (under its lock, so no job is put after that) and
   hands any job still queued to a pool; a job sent later goes to the pool
   too. Work that outlives a request's wait (a shielded task) still runs.
4. Context: a job's changes to its context are applied to the waiter's own
   context when the waiter resumes, the diff taken against a snapshot made
   when the job started; nothing is ever set in a context that another
   request runs in.
5. Inbox: a call sent to a loop's inbox runs once, in the order its thread
   sent it. The loop clears the "woken" flag before it empties the deque, so
   a call that arrives as the loop finds the deque empty wakes it again.
6. Shared loop (tests/test_lending.py): one thread at a time runs loop code,
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
import logging
import math
import os
import queue
import select
import selectors
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

__all__ = [
    "Bridge",
    "Job",
    "LifespanHolder",
    "SharedLoop",
    "WorkerPool",
    "call_on_loop",
    "current_bridge",
    "running_loop",
    "shared_loop",
]

logger = logging.getLogger("microweb")

#: Seconds an idle pool thread waits for work before it exits.
IDLE_TIMEOUT = 10.0

_MISSING: Any = object()
Changes = list[tuple[contextvars.ContextVar[Any], Any]]


def _changes(ctx: contextvars.Context, start: contextvars.Context) -> Changes | None:
    """What code run in `ctx` set since `start` (a copy of it) was made, or None.

    By identity, never with ``==``: a value's ``__eq__`` may raise or return
    an array (numpy, SQLAlchemy), and a new value equal to the old one (`True`
    for `1`) is still a change.
    """
    changes = [(var, value) for var, value in ctx.items() if start.get(var, _MISSING) is not value]
    return changes or None


def apply_changes(changes: Changes) -> None:
    """Set in the current context what a step run elsewhere set in its copy."""
    for var, value in changes:
        var.set(value)


def running_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop; a clear error under any other async library."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    where = "outside any asyncio event loop"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            where = "under trio"
        except RuntimeError:
            pass
    raise RuntimeError(
        f"microweb's ASGI adapter needs an asyncio event loop, and it was called {where}: "
        "serve app.asgi with an asyncio server (uvicorn; hypercorn with its default asyncio "
        "worker, not -k trio), or serve app.wsgi with a WSGI server"
    ) from None


# --------------------------------------------------------------------------
# Inboxes: from a thread to a loop
# --------------------------------------------------------------------------


class LoopInbox:
    """Calls that other threads send to one event loop: `loop.call_soon_threadsafe`,
    cheaper, for the hops' way back.

    ``call_soon_threadsafe`` costs a handle per call, and on asyncio's own
    loops a wake-up through the loop's self-pipe, which the loop reads until
    the read fails (an `OSError` made and caught on every wake-up): a fifth of
    a thread hop. Here calls wait in a deque; the first one since the loop
    last looked writes to an eventfd the loop watches (`add_reader`), and the
    loop runs every call waiting when it wakes: one read, whatever the number
    of calls. Where that is not available (no eventfd, or a loop that does
    not take readers, or not asyncio's own loop: uvloop's own wake-up is
    cheap), the loop is woken with ``call_soon_threadsafe`` -- once per batch
    too.
    """

    __slots__ = ("_fd", "_items", "_signalled", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`'s thread (it registers a reader there)."""
        #: The loop, weakly: an inbox (cached by `loop_inbox`) never keeps a loop
        #: alive; whoever sends calls does (a `Job` holds its loop).
        self.loop = weakref.ref(loop)
        self._items: collections.deque[tuple[Callable[[Any], Any], Any]] = collections.deque()
        self._signalled = False
        self._fd = -1
        if _EVENTFD and isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            try:
                loop.add_reader(fd, self._woken)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            # the reader keeps this alive as long as the loop: close with the loop
            weakref.finalize(loop, os.close, fd)

    def call(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """From any thread that keeps the loop alive: run ``fn(arg)`` on the loop
        soon (never raises; dropped if the loop is closed)."""
        self._items.append((fn, arg))
        if self._signalled:
            return  # the loop has been woken and has not looked yet: it will see it
        self._signalled = True
        try:
            if self._fd >= 0:
                os.write(self._fd, _ONE)
            elif (loop := self.loop()) is not None:
                loop.call_soon_threadsafe(self._run)
        except (OSError, RuntimeError):  # the loop is closed: nobody waits any more
            pass

    def _woken(self) -> None:
        try:
            os.read(self._fd, 8)
        except OSError:
            pass
        self._run()

    def _run(self) -> None:
        # cleared before the deque is emptied: a call added from now on
        # wakes the loop again (at worst once for nothing)
        self._signalled = False
        items = self._items
        while items:
            fn, arg = items.popleft()
            try:
                fn(arg)
            except Exception:
                logger.exception("a call sent to the event loop failed")


_EVENTFD = hasattr(os, "eventfd")
_ONE = (1).to_bytes(8, sys.byteorder)
_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopInbox] = (
    weakref.WeakKeyDictionary()
)
_last_inbox: LoopInbox | None = None


def loop_inbox(loop: asyncio.AbstractEventLoop) -> LoopInbox:
    """`loop`'s inbox, made on first use (on the loop's thread)."""
    global _last_inbox
    last = _last_inbox  # (one read: another loop's thread may replace it meanwhile)
    if last is not None and last.loop() is loop:
        return last
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = LoopInbox(loop)
    _last_inbox = inbox
    return inbox


# --------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------


class Job:
    """A sync call ``fn(*args)`` that a coroutine makes in another thread.

    Made on the coroutine's loop (it copies the current context), run by a
    thread with `run`, awaited with `wait`.
    """

    __slots__ = (
        "args",
        "changes",
        "ctx",
        "done",
        "exc",
        "fn",
        "fut",
        "inbox",
        "loop",
        "result",
        "ticket",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.ctx = contextvars.copy_context()
        if loop is None:
            loop = asyncio.get_running_loop()
        self.loop = loop
        self.inbox = loop_inbox(loop)
        self.fut: asyncio.Future[None] = loop.create_future()
        self.ticket = [None]  # popped by whoever starts or cancels the job first
        self.result: Any = None
        self.exc: BaseException | None = None
        self.changes: Changes | None = None
        self.done = False  # set on the loop once the thread has finished

    def run(self) -> None:
        """In a thread: make the call (unless the waiter was cancelled first) and report."""
        if self.call():
            self.report()

    def call(self) -> bool:
        """Make the call unless the waiter was cancelled first; whether it was made.

        Never raises: what the call raises is kept for the waiter.
        """
        try:
            self.ticket.pop()
        except IndexError:
            return False  # cancelled before it started: never run it
        ctx = self.ctx
        start = ctx.copy() if len(ctx) else None  # (an empty context: all it holds after is new)
        try:
            self.result = ctx.run(self.fn, *self.args)
        except BaseException as exc:
            self.exc = exc
        try:
            if start is not None:
                self.changes = _changes(ctx, start)
            elif len(ctx):
                self.changes = list(ctx.items())
        except BaseException as exc:  # MemoryError, say: the waiter must still hear
            self.exc = exc
        return True

    def report(self) -> None:
        """Wake the waiter (from the thread that made the call)."""
        self.inbox.call(_finished, self)

    async def wait(self) -> Any:
        """On the loop: the call's result (or its exception), its context changes applied.

        Cancelled before the call started, the call never runs; cancelled
        after, this waits for the call to return and then lets the
        cancellation go on (further cancellations meanwhile are absorbed).
        """
        try:
            await self.fut
        except asyncio.CancelledError:
            try:
                self.ticket.pop()
            except IndexError:  # the call runs: wait for it to return
                # shielded from anyio's cancel scopes, which cancel the task
                # again at every turn of the loop while it stays in one (a
                # busy loop, if each cancellation just woke this up)
                with anyio.CancelScope(shield=True):
                    while not self.done:
                        self.fut = self.loop.create_future()
                        try:
                            await self.fut
                        except asyncio.CancelledError:
                            continue
            raise
        if self.changes is not None:
            apply_changes(self.changes)
        exc = self.exc
        if exc is not None:
            self.exc = None
            try:
                raise exc
            finally:
                del exc  # no frame <-> traceback cycle left behind
        result, self.result = self.result, None
        return result


def _finished(job: Job) -> None:
    job.done = True
    fut = job.fut
    if not fut.done():
        fut.set_result(None)


# --------------------------------------------------------------------------
# The worker pool
# --------------------------------------------------------------------------


class WorkerPool:
    """At most `limit` threads running jobs for coroutines (see invariant 1).

    The threads wait on one `queue.SimpleQueue`: a thread that finishes a job
    takes the next queued one without sleeping. On CPython 3.11,
    ``SimpleQueue.get(timeout=...)`` can wait past its timeout, until the next
    job, when another thread took the item that woke it: such a thread stays
    (idle and counted: it takes a later job) instead of leaving.
    """

    _pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a pool needs at least one thread")
        self.limit = limit
        #: Seconds an idle thread waits for work before it exits (tests make it short).
        self.idle_timeout = IDLE_TIMEOUT
        self._reset()
        WorkerPool._pools.add(self)

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # idle threads not yet promised to a queued job
        self._backlog = 0  # queued jobs promised to the next thread that finishes one
        self._threads = 0

    @property
    def threads(self) -> int:
        """Threads alive (busy or idle)."""
        return self._threads

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a pool thread and return its result (see `Job.wait`)."""
        job = Job(fn, args)
        self.submit(job)
        return await job.wait()

    def submit(self, job: Job) -> None:
        """Queue `job` (from any thread), with a thread promised to it."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                spawn = False
            elif self._threads < self.limit:
                self._threads += 1
                spawn = True
            else:
                self._backlog += 1
                spawn = False
        if spawn:
            try:
                threading.Thread(target=self._work, name="microweb-worker", daemon=True).start()
            except BaseException:
                with self._lock:
                    self._threads -= 1
                raise
        self._queue.put(job)

    def _work(self) -> None:
        q, lock = self._queue, self._lock
        while True:
            try:
                job = q.get(timeout=self.idle_timeout)
            except queue.Empty:
                with lock:
                    if self._idle > 0:  # an idle slot nobody was promised: leave
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue  # a job is promised to this thread: it is on its way
            made = job.call()
            # Counted free before the waiter is woken: the waiter's next job
            # (the next request, often) then finds this thread idle instead of
            # starting another one.
            with lock:
                if self._backlog:
                    self._backlog -= 1  # take a queued job nobody else was promised
                else:
                    self._idle += 1
            if made:
                job.report()
            del job


# --------------------------------------------------------------------------
# Bridges: from a loop back to the thread that waits for it
# --------------------------------------------------------------------------


class Bridge:
    """The way back from a coroutine to the thread that waits for it.

    A thread that runs a coroutine on a loop and waits for it (`call_on_loop`)
    serves its bridge meanwhile: the sync work the coroutine sends back
    (`call_in_thread`: sync pipeline steps, ``wsgi.input`` reads, disk
    writes) runs in that thread, which is idle anyway, instead of needing
    another one. Each wait has a bridge of its own, so nested waits (a ``def``
    middleware's `call_next` inside an async one) never mix their outcomes.
    Once the wait is over, work sent to the bridge goes to `fallback`.
    """

    __slots__ = ("_closed", "_fallback", "_lock", "queue")

    def __init__(self, fallback: WorkerPool) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._fallback = fallback
        self._lock = threading.Lock()
        self._closed = False

    async def call_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """From the loop: run ``fn(*args)`` in the waiting thread (or the fallback pool)."""
        job = Job(fn, args)
        with self._lock:
            queued = not self._closed
            if queued:
                self.queue.put(job)
        if not queued:
            self._fallback.submit(job)
        return await job.wait()

    def wait(self, until: Any) -> None:
        """In the waiting thread: run jobs until `until` is put on the queue."""
        q = self.queue
        while True:
            item = q.get()
            if item is until:
                return
            if type(item) is Job:
                item.run()

    def close(self) -> None:
        """In the waiting thread, when it stops waiting: later jobs go to the fallback."""
        with self._lock:
            self._closed = True
        q = self.queue
        while not q.empty():  # nothing is put any more, and only this thread takes
            item = q.get_nowait()
            if type(item) is Job:
                self._fallback.submit(item)


class _Call(Bridge):
    """One coroutine run on a loop for a thread that waits for it (`call_on_loop`):
    its bridge, its task's coroutine (`run`) and its outcome.

    `run` puts the call itself on the bridge queue as its very last step,
    after its bookkeeping: once the thread is woken, the loop has nothing
    left to do for it but go back to sleep (work the loop did after the
    wake-up would keep the woken thread waiting for the GIL, and wake it
    twice).
    """

    __slots__ = (
        "args",
        "changes",
        "exc",
        "fn",
        "job",
        "kwargs",
        "pinned",
        "started",
        "steps",
        "task",
        "value",
    )

    def __init__(
        self,
        fallback: WorkerPool,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        # Bridge.__init__, inlined (this runs once a hop)
        self.queue = queue.SimpleQueue()
        self._fallback = fallback
        self._lock = threading.Lock()
        self._closed = False
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        #: The coroutine's task, held by the waiting thread (it keeps it alive).
        self.task: asyncio.Task[None] | None = None
        self.started = False
        self.value: Any = None
        self.exc: BaseException | None = None
        self.changes: Changes | None = None
        #: Whether the task's steps run in the waiting thread (`SharedEventLoop`):
        #: then its steps and sync work wait in `steps` (each rings `queue`
        #: with `_STEP`), and `job` is the sync work the thread is doing.
        self.pinned = False
        self.steps: collections.deque[Any] | None = None
        self.job: Job | None = None

    async def call_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        steps = self.steps
        if steps is None:
            return await Bridge.call_in_thread(self, fn, *args)
        job = Job(fn, args)
        task = asyncio.current_task()
        if task is not self.task or self._closed:
            # another task's work (a subtask's, which inherited this bridge):
            # the waiting thread runs its own task's steps, which must not
            # wait for it (the task may have a timeout to keep meanwhile)
            self._fallback.submit(job)
            return await job.wait()
        steps.append(job)
        self.queue.put(_STEP)
        if task in _cancel_scoped:
            # the task's next step waits for this thread, which is busy with
            # the work: an anyio cancel scope expiring meanwhile would cancel
            # it again at every turn of the loop (a busy loop) if the task
            # were not shielded. (Cancelled, the work runs to its end
            # anyway: see Job.wait.)
            with anyio.CancelScope(shield=True):
                return await job.wait()
        return await job.wait()

    async def run(self) -> None:
        """The task's coroutine: ``await fn(*args, **kwargs)``, the outcome kept here."""
        self.started = True
        task: Any = self.task
        if task is None:  # (running before the thread that made it stored it)
            task = asyncio.current_task()
        try:
            # started: `ended` has nothing to say, and no loop turn to take for it
            task.remove_done_callback(self.ended)
            start = contextvars.copy_context()
            try:
                self.value = await self.fn(*self.args, **self.kwargs)
            except asyncio.CancelledError as exc:
                self.exc = RuntimeError("the coroutine was cancelled")
                self.exc.__cause__ = exc
            except BaseException as exc:
                self.exc = exc
            self.changes = _changes(contextvars.copy_context(), start)
        except BaseException as exc:  # MemoryError, say: the thread must still hear
            self.exc = exc
        finally:
            self.queue.put(self)  # whatever happens, the thread must hear

    def ended(self, task: asyncio.Task[None]) -> None:
        """The task's done callback until it starts: cancelled before its first
        step (a loop shutting down), the coroutine never runs; tell the thread."""
        if not self.started:
            self.exc = RuntimeError("the coroutine was cancelled before it started")
            self.queue.put(self)


#: Rings a pinned call's queue: a step or sync work waits in its `steps`.
_STEP: Any = object()

try:  # tasks in an anyio cancel scope (anyio's own record of them)
    from anyio._backends._asyncio import _task_states as _cancel_scoped
except ImportError:  # (another anyio: shield every wait for the thread's work)

    class _Everything:
        def __contains__(self, item: object) -> bool:
            return True

    _cancel_scoped = _Everything()  # type: ignore[assignment]

#: The bridge of the thread waiting for the running coroutine (None when nobody waits).
_bridge: contextvars.ContextVar[Bridge | None] = contextvars.ContextVar(
    "microweb_bridge", default=None
)


def current_bridge() -> Bridge | None:
    """On a loop: the bridge back to the thread that waits for this coroutine, if any."""
    return _bridge.get()


def _start(loop: asyncio.AbstractEventLoop, call: _Call) -> None:
    """On the loop: start `call`'s task (`call_on_loop`'s general way)."""
    task = call.task = loop.create_task(call.run())
    task.add_done_callback(call.ended)


#: Loop classes whose tasks a waiting thread may make itself (see `_direct`).
_DIRECT_TYPES: dict[type, bool] = {}


def _direct(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a thread may make a task of `loop` itself, then wake the loop.

    asyncio's own loops only (uvloop's are not thread-safe there), out of
    debug mode (where `call_soon` insists on the loop's thread) and without a
    task factory (which `create_task` would call). Their ``call_soon``, which
    a new task calls, appends to the loop's ready queue exactly as
    ``call_soon_threadsafe`` does, which then only adds the wake-up; so the
    task's first step runs in the loop's first turn after the wake-up,
    instead of a callback making the task in that turn and the task's first
    step waiting for the next one.
    """
    cls = type(loop)
    direct = _DIRECT_TYPES.get(cls)
    if direct is None:
        direct = _DIRECT_TYPES[cls] = (
            issubclass(cls, asyncio.BaseEventLoop)
            and cls.call_soon is asyncio.BaseEventLoop.call_soon
            and cls._call_soon is asyncio.BaseEventLoop._call_soon  # type: ignore[attr-defined]
            and cls.create_task is asyncio.BaseEventLoop.create_task
        )
    return direct and not loop.get_debug() and loop.get_task_factory() is None


def _noop() -> None:
    pass


#: Tasks whose waiting thread stopped waiting before they ended (interrupted).
_orphans: set[asyncio.Task[Any]] = set()


def call_on_loop(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[..., Coroutine[Any, Any, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fallback: WorkerPool,
    wake_fd: int = -1,
) -> Any:
    """From a thread that may block: run ``await fn(*args, **kwargs)`` on `loop`
    and return its result, serving the coroutine's calls meanwhile (see `Bridge`).

    The coroutine runs in a copy of this thread's context; what it sets there
    is set in this thread's context when it returns. A CancelledError from it
    (microweb never cancels these tasks) comes back as a RuntimeError: an
    error of the code, not a cancellation of this thread.

    One call costs the loop one turn: the task is made here where the loop
    allows it (`_direct`), else by a callback. `wake_fd` is a pipe the loop
    reads (`_WakePipe`), written to wake it; without one (-1), a no-op
    callback sent with ``call_soon_threadsafe`` wakes it.
    """
    call = _Call(fallback, fn, args, kwargs)
    direct = _direct(loop)
    token = _bridge.set(call)  # the task's context is a copy of this one, bridge included
    try:
        if direct:
            coro = call.run()
            try:
                task = call.task = asyncio.Task(coro, loop=loop)
            except BaseException:
                coro.close()  # (a closed loop, say: never awaited, and no warning about it)
                raise
            task.add_done_callback(call.ended)
            del task
        else:
            loop.call_soon_threadsafe(_start, loop, call)
    finally:
        _bridge.reset(token)
    try:
        if direct:
            # woken last, just before this thread sleeps: the loop, woken, then
            # seldom finds the GIL still held
            if wake_fd < 0:
                loop.call_soon_threadsafe(_noop)
            else:
                try:
                    _write(wake_fd, b"\0")
                except OSError:  # full (so readable: the loop wakes anyway)
                    pass
        call.wait(call)
    except BaseException:
        _keep_running(call)
        raise
    finally:
        call.close()
    return _outcome(call)


def _keep_running(call: _Call) -> None:
    """The waiting thread was interrupted: keep `call`'s task alive until it ends."""
    orphan = call.task
    if orphan is not None and not orphan.done():
        _orphans.add(orphan)
        orphan.add_done_callback(_orphans.discard)


def _outcome(call: _Call) -> Any:
    """`call`'s value or exception, once it ended, its context changes applied here."""
    # (the task is released here, after the wake-up, not by the loop before it sleeps)
    call.task = None
    if call.changes is not None:
        apply_changes(call.changes)
    exc = call.exc
    if exc is not None:
        call.exc = None
        try:
            raise exc
        finally:
            del exc  # no frame <-> traceback cycle left behind
    return call.value


_write = os.write


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
            task, self._task = self._task, None
            self._stop.set()
            await task


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
    global _last_inbox
    _last_inbox = None  # a loop made before the fork gets a new eventfd of its own
    _inboxes.clear()
    shared_loop._reset()
    _orphans.clear()  # (tasks of the parent's loops)
    for pool in list(WorkerPool._pools):
        pool._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
