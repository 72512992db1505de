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

The shared loop that runs ``async def`` code under WSGI is `_shared_loop`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import queue
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
    "WorkerPool",
    "call_on_loop",
    "current_bridge",
    "running_loop",
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
# Lifespan
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


def _after_fork_in_child() -> None:
    global _last_inbox
    _last_inbox = None  # a loop made before the fork gets a new eventfd of its own
    _inboxes.clear()
    _orphans.clear()  # (tasks of the parent's loops)
    for pool in list(WorkerPool._pools):
        pool._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
