"""Stress: the worker pool and the bridges under random bursts, idle timeouts,
cancellations and work that outlives its request (_concurrency.py's invariants).

Every case has a fixed seed and a bounded size; every wait has a deadline, so a
hang fails the test instead of hanging CI. Jobs sleep a little as *work* (to
vary the interleavings), never to wait for something else to happen.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from microweb import App, Request, Response, _concurrency, _shared_loop
from microweb._concurrency import WorkerPool

from . import raw

DEADLINE = 20.0  # seconds: far above what any case needs, even on a loaded machine


def wait_until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll `condition` (from a thread: no loop needed) until it holds or the deadline."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still not true after {deadline} s: {what}")
        time.sleep(0.001)


async def await_until(
    condition: Callable[[], bool], what: str, state: Callable[[], str] = lambda: ""
) -> None:
    """`wait_until` from a coroutine (the loop goes on meanwhile)."""
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still not true after {DEADLINE} s: {what} {state()}")
        await asyncio.sleep(0.001)


#: How long a quiet spell waits for idle threads to leave before it settles
#: for idle threads that linger (see `idle_threads_leave`).
LINGER = 2.0


def threads_left(pool: WorkerPool, busy: int = 0) -> bool:
    """Whether the idle threads have left, or linger idle and counted.

    Idle threads leave after the idle timeout, except one that CPython 3.11's
    ``SimpleQueue.get(timeout=...)`` keeps waiting past it (when another
    thread took the item that woke it): that one stays idle, counted in
    ``_idle``, until it takes a later job, which is as good. What must never
    be is an idle count that does not match the threads (repro_1's drift).
    """
    if pool._threads == busy:
        return True
    return pool._idle == pool._threads - busy and pool._backlog == 0


async def idle_threads_leave(pool: WorkerPool, busy: int = 0) -> None:
    """Wait up to `LINGER` for the idle threads to leave, then check `threads_left`."""
    end = time.monotonic() + LINGER
    while pool._threads != busy and time.monotonic() < end:
        await asyncio.sleep(0.001)
    assert threads_left(pool, busy), (
        f"threads {pool._threads} ({busy} busy), idle {pool._idle}, backlog {pool._backlog}"
    )


@pytest.fixture
def short_idle(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Make pool threads made from now on leave after `seconds` idle."""

    def set_timeout(seconds: float) -> None:
        monkeypatch.setattr(_concurrency, "IDLE_TIMEOUT", seconds)

    return set_timeout


# --------------------------------------------------------------------------
# The pool: random bursts, idle timeouts, cancellations
# --------------------------------------------------------------------------


class Tracker:
    """Counts the jobs a pool runs: which started, which finished, the peak at once."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.peak_threads = 0
        self.started: set[int] = set()
        self.finished: set[int] = set()

    def work(self, i: int, seconds: float) -> int:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.peak_threads = max(self.peak_threads, self.pool._threads)
            self.started.add(i)
        if seconds:
            time.sleep(seconds)  # the job's work
        with self.lock:
            self.running -= 1
            self.finished.add(i)
        return i


@pytest.mark.parametrize("seed", range(8))
def test_pool_under_random_bursts_idle_timeouts_and_cancellations(
    seed: int, short_idle: Callable[[float], None]
) -> None:
    rng = random.Random(seed)
    limit = rng.choice([1, 2, 3, 5])
    short_idle(rng.choice([0.001, 0.004, 0.02]))
    pool = WorkerPool(limit)
    tracker = Tracker(pool)
    cancelled_early: list[int] = []  # cancelled before their job started: must never run
    violations: list[str] = []
    serial = iter(range(1_000_000))

    async def call(i: int, seconds: float) -> int:
        try:
            return await pool.run(tracker.work, i, seconds)  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            with tracker.lock:
                if i in tracker.started and i not in tracker.finished:
                    violations.append(f"job {i} was still running when its wait was cancelled")
                if i not in tracker.started:
                    cancelled_early.append(i)
            raise

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(rng.randint(8, 14)):
            tasks: dict[asyncio.Task[int], int] = {}
            for _ in range(rng.randint(1, 3 * limit + 2)):
                i = next(serial)
                seconds = rng.choice([0.0, 0.0, 0.0005, 0.002])
                tasks[asyncio.ensure_future(call(i, seconds))] = i
                if rng.random() < 0.3:
                    await asyncio.sleep(0)  # let some start before the rest are sent
            for task in tasks:
                if rng.random() < 0.25:
                    loop.call_later(rng.choice([0.0, 0.0003, 0.001, 0.003]), task.cancel)
            done, pending = await asyncio.wait(tasks, timeout=DEADLINE)
            assert not pending, f"{len(pending)} calls never completed (pool hang)"
            for task in done:
                if not task.cancelled():
                    assert task.result() == tasks[task]
            if rng.random() < 0.5:  # a quiet spell: idle threads leave
                await idle_threads_leave(pool)
        # quiescent: every thread idle and unpromised, nothing owed to a queued job
        await await_until(
            lambda: pool._idle == pool._threads and pool._backlog == 0,
            "the pool's counts settle (idle == threads, no backlog)",
        )
        await idle_threads_leave(pool)
        final = next(serial)
        assert await asyncio.wait_for(call(final, 0.0), DEADLINE) == final

    asyncio.run(scenario())
    assert violations == []
    assert tracker.peak <= limit
    assert tracker.peak_threads <= limit
    assert not set(cancelled_early) & tracker.started, "a job cancelled before it started ran"


def test_a_def_request_after_a_burst_and_a_quiet_spell_is_answered(
    short_idle: Callable[[float], None],
) -> None:
    # repro_1: a burst of limit + 1 requests, then the idle timeout passes with
    # nothing to do; the pool counted one idle thread too many, and the next
    # request was queued for a thread that no longer existed
    short_idle(0.01)
    limit = 4
    app = App(thread_limit=limit)
    gate = threading.Event()

    @app.get("/slow")
    def slow() -> str:
        assert gate.wait(DEADLINE)
        return "slow"

    @app.get("/fast")
    def fast() -> str:
        return "fast"

    async def scenario() -> None:
        pool = app.asgi.pool
        burst = [asyncio.ensure_future(raw.call_asgi(app, path="/slow")) for _ in range(limit + 1)]
        await await_until(lambda: pool._threads == limit, "the burst fills the pool")
        gate.set()
        assert {a.status for a in await asyncio.gather(*burst)} == {200}
        await idle_threads_leave(pool)
        answer = await asyncio.wait_for(raw.call_asgi(app, path="/fast"), DEADLINE)
        assert (answer.status, answer.body) == (200, b"fast")

    asyncio.run(scenario())


class PoolMachine(RuleBasedStateMachine):
    """The pool against a model: whatever the order of submissions, releases,
    idle timeouts and cancellations, as many jobs run as the limit allows and
    no job waits while a thread could take it."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 3
        self.loop = asyncio.new_event_loop()
        saved = _concurrency.IDLE_TIMEOUT
        _concurrency.IDLE_TIMEOUT = 0.002
        try:
            self.pool = WorkerPool(self.limit)
        finally:
            _concurrency.IDLE_TIMEOUT = saved
        self.lock = threading.Lock()
        self.gates: dict[int, threading.Event] = {}
        self.started: set[int] = set()
        self.tasks: dict[int, asyncio.Task[int]] = {}
        self.released: set[int] = set()  # let go (or cancelled while queued): will not block
        self.count = 0

    def job(self, i: int) -> int:
        with self.lock:
            self.started.add(i)
        assert self.gates[i].wait(DEADLINE)
        return i

    async def call(self, i: int) -> int:
        return await self.pool.run(self.job, i)  # type: ignore[no-any-return]

    def spin(self, condition: Callable[[], bool], what: str) -> None:
        end = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > end:
                raise AssertionError(f"still not true after {DEADLINE} s: {what}")
            self.loop.run_until_complete(asyncio.sleep(0.001))

    def blocked(self) -> set[int]:
        """Jobs started and not released: each holds a thread."""
        with self.lock:
            return self.started - self.released

    def waiting(self) -> list[int]:
        """Jobs submitted, not started, not cancelled."""
        with self.lock:
            return [i for i in self.tasks if i not in self.started and i not in self.released]

    @rule(n=st.integers(1, 4))
    def submit(self, n: int) -> None:
        for _ in range(n):
            i = self.count = self.count + 1
            self.gates[i] = threading.Event()
            self.tasks[i] = self.loop.create_task(self.call(i))
        self.spin(lambda: True, "")  # let the loop start them

    @precondition(lambda self: bool(self.blocked()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.blocked())))
        self.released.add(i)
        self.gates[i].set()
        self.spin(lambda: self.tasks[i].done(), f"job {i} returns once released")
        assert self.tasks[i].result() == i

    @precondition(lambda self: len(self.blocked()) == self.limit and bool(self.waiting()))
    @rule(data=st.data())
    def cancel_a_queued_job(self, data: st.DataObject) -> None:
        # every thread is blocked in a job: a queued one cannot start meanwhile
        i = data.draw(st.sampled_from(self.waiting()))
        self.released.add(i)
        self.tasks[i].cancel()
        self.spin(lambda: self.tasks[i].done(), f"queued job {i} is cancelled at once")
        assert self.tasks[i].cancelled()

    @precondition(lambda self: bool(self.blocked()))
    @rule(data=st.data())
    def cancel_a_running_job(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.blocked())))
        task = self.tasks[i]
        task.cancel()
        for _ in range(20):
            self.loop.run_until_complete(asyncio.sleep(0))
        assert not task.done(), "a cancelled wait returned while its job still runs"
        self.released.add(i)
        self.gates[i].set()
        self.spin(task.done, f"job {i} ends once released")
        assert task.cancelled()

    @rule()
    def idle_spell(self) -> None:
        busy = len(self.blocked())
        self.loop.run_until_complete(idle_threads_leave(self.pool, busy))

    @invariant()
    def as_many_run_as_the_limit_allows(self) -> None:
        def settled() -> bool:
            blocked, waiting = len(self.blocked()), len(self.waiting())
            return blocked == min(self.limit, blocked + waiting)

        self.spin(settled, "queued jobs start while threads are free")
        assert len(self.blocked()) <= self.limit
        assert self.pool._threads <= self.limit

    def teardown(self) -> None:
        for gate in self.gates.values():
            gate.set()
        for task in self.tasks.values():
            task.cancel()
        self.spin(lambda: all(t.done() for t in self.tasks.values()), "every job ends")
        self.loop.close()


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)


# --------------------------------------------------------------------------
# Bridges: work that outlives the wait of the thread it was sent to
# --------------------------------------------------------------------------


class Late:
    """What the requests of `_outliving_app` leave running."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: list[str] = []
        self.gates: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.tasks: list[asyncio.Future[Response]] = []


def _outliving_app(rng: random.Random, late: Late) -> App:
    """An async middleware that answers at once and leaves the rest of the chain
    running (a task of its own); that rest waits at a gate the test opens once
    the answer is out, then runs a random mix of def and async steps."""
    app = App()

    @app.middleware
    async def answer_now(request: Request, call_next: Any) -> Any:
        late.tasks.append(asyncio.ensure_future(call_next(request)))
        return {"detail": "accepted"}, 202

    @app.middleware
    async def gate(request: Request, call_next: Any) -> Response:
        event = asyncio.Event()
        with late.lock:
            late.gates.append((asyncio.get_running_loop(), event))
        await event.wait()
        return await call_next(request)  # type: ignore[no-any-return]

    for _ in range(rng.randint(0, 2)):
        if rng.random() < 0.5:

            @app.middleware
            def sync_layer(request: Request, call_next: Any) -> Response:
                return call_next(request)  # type: ignore[no-any-return]

        else:

            @app.middleware
            async def async_layer(request: Request, call_next: Any) -> Response:
                await asyncio.sleep(0)
                return await call_next(request)  # type: ignore[no-any-return]

    def record(request: Request) -> str:
        with late.lock:
            late.ran.append(request.query_params["i"])
        return "done"

    if rng.random() < 0.5:
        app.post("/work")(record)
    else:

        @app.post("/work")
        async def work(request: Request) -> str:
            await asyncio.sleep(0)
            return record(request)

    if rng.random() < 0.5:

        @app.after_request
        def mark(request: Request, response: Response) -> None:
            response.headers["x-late"] = "1"

    return app


@pytest.mark.parametrize("seed", range(6))
def test_work_left_running_after_the_answer_still_runs(protocol: str, seed: int) -> None:
    # repro_11: under WSGI the late chain's def steps went to the bridge of a
    # thread that had stopped waiting, and never ran
    rng = random.Random(seed)
    late = Late()
    app = _outliving_app(rng, late)
    n = rng.randint(2, 6)
    expected = sorted(str(i) for i in range(n))

    def open_gates() -> None:
        gates = list(late.gates)
        rng.shuffle(gates)
        for loop, event in gates:
            loop.call_soon_threadsafe(event.set)

    if protocol == "wsgi":
        for i in range(n):  # one server thread after another
            answer = raw.call_wsgi(app, method="POST", path="/work", query=f"i={i}")
            assert answer.status == 202
        wait_until(lambda: len(late.gates) == n, "every late chain reached its gate")
        open_gates()
        wait_until(lambda: len(late.ran) == n, f"all {n} late handlers ran ({late.ran})")
        wait_until(lambda: all(t.done() for t in late.tasks), "every late chain ended")
    else:

        async def server() -> None:  # one loop for all, as a server's
            for i in range(n):
                answer = await raw.call_asgi(app, method="POST", path="/work", query=f"i={i}")
                assert answer.status == 202
            await await_until(lambda: len(late.gates) == n, "every late chain reached its gate")
            open_gates()
            await asyncio.wait_for(asyncio.gather(*late.tasks), DEADLINE)

        asyncio.run(server())
    assert sorted(late.ran) == expected
    assert [t.result().status for t in late.tasks] == [200] * n


def test_a_thread_waiting_for_a_coroutine_cancelled_before_it_started_is_told(
    hop_way: str,
) -> None:
    # a loop shutting down (asyncio.run's last step) cancels every task, also one
    # not started yet: the thread that waits for it must hear, not wait forever
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    ran: list[bool] = []

    async def coroutine() -> int:
        ran.append(True)
        return 1

    def cancel_every_task() -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()

    def queued() -> bool:
        """Whether the waiter's work is queued: its task, or the callback that makes it."""
        ready = list(loop._ready)  # type: ignore[attr-defined]
        return bool(asyncio.all_tasks(loop)) or any(
            h._callback is _concurrency._start for h in ready
        )

    def shut_down() -> None:
        # holds the loop until the waiter's work is queued, then cancels every
        # task, also the one that the callback queued is about to make
        wait_until(queued, "the waiter queued its work")
        cancel_every_task()
        loop.call_soon(cancel_every_task)

    errors: list[BaseException] = []

    def wait() -> None:
        try:
            _concurrency.call_on_loop(loop, coroutine, (), {}, WorkerPool(1))
        except RuntimeError as exc:
            errors.append(exc)

    loop.call_soon_threadsafe(shut_down)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(DEADLINE)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(DEADLINE)
    loop.close()
    assert not waiter.is_alive(), "the thread still waits for a coroutine that never ran"
    assert len(errors) == 1 and "cancelled before it started" in str(errors[0])
    assert ran == []


# --------------------------------------------------------------------------
# Hops: many threads waiting for coroutines on the shared loop at once
# --------------------------------------------------------------------------

hop_note: contextvars.ContextVar[str] = contextvars.ContextVar("hop_note", default="-")

#: What one hop's coroutine does (see `_hop`).
HOP_KINDS = [
    "returns",  # at once
    "awaits",  # suspends a few times first
    "sends back",  # sync work to the waiting thread, twice
    "nests",  # sync work that itself hops (a def step inside async code inside def code)
    "raises",
    "is cancelled",  # a CancelledError of its own: a RuntimeError for the thread
    "times out",  # cancels a wait of its own and goes on
    "outlives",  # leaves a task that sends sync work back after the wait has ended
]


class Outlived:
    """What the tasks left running by "outlives" hops did once their hop ended;
    and every hop's task (weakly: once its hop has ended, nothing holds it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.done: list[tuple[str, int]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.hops: list[weakref.ref[asyncio.Task[Any]]] = []


async def _hop(kind: str, tag: str, outlived: Outlived) -> Any:
    """The coroutine of one hop: sees the thread's `hop_note`, sets its own."""
    assert hop_note.get() == f"thread {tag}", hop_note.get()
    task = asyncio.current_task()
    assert task is not None
    with outlived.lock:
        outlived.hops.append(weakref.ref(task))
    del task
    result: Any = tag
    if kind == "awaits":
        for _ in range(1 + len(tag) % 3):
            await asyncio.sleep(0)
    elif kind == "sends back":
        bridge = _concurrency.current_bridge()
        assert bridge is not None
        waiting = await bridge.call_in_thread(threading.get_ident)
        again = await bridge.call_in_thread(threading.get_ident)
        result = (tag, waiting == again)
    elif kind == "nests":
        bridge = _concurrency.current_bridge()
        assert bridge is not None
        result = await bridge.call_in_thread(_hop_again, tag, outlived)
        assert hop_note.get() == f"loop {tag}+"  # set by the nested hop, back through two hops
    elif kind == "raises":
        raise LookupError(tag)
    elif kind == "is cancelled":
        raise asyncio.CancelledError
    elif kind == "times out":
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 0.001)
        except asyncio.TimeoutError:
            result = (tag, "timed out")
    elif kind == "outlives":
        bridge = _concurrency.current_bridge()

        async def later() -> None:
            for _ in range(3):
                await asyncio.sleep(0)
            # this hop's wait has ended by now (or soon will): the bridge hands
            # the work to its fallback pool
            await asyncio.sleep(0.001)  # work: let the hop end first, most of the time
            assert bridge is not None
            value = await bridge.call_in_thread(lambda: threading.current_thread().name)
            with outlived.lock:
                outlived.done.append((tag, len(value)))

        task = asyncio.ensure_future(later())
        with outlived.lock:
            outlived.started += 1
            outlived.tasks.add(task)
        task.add_done_callback(outlived.tasks.discard)
    hop_note.set(f"loop {tag}")
    return result


def _hop_again(tag: str, outlived: Outlived) -> Any:
    """In the waiting thread, sent back by a "nests" hop: hop once more."""
    hop_note.set(f"thread {tag}+")
    value = _shared_loop.shared_loop.call(_hop, ("returns", f"{tag}+", outlived), {})
    assert hop_note.get() == f"loop {tag}+"
    return value


def _expected_hop(kind: str, tag: str) -> Any:
    if kind == "sends back":
        return (tag, True)
    if kind == "nests":
        return f"{tag}+"
    if kind == "times out":
        return (tag, "timed out")
    return tag


@pytest.mark.parametrize("seed", range(8))
def test_many_threads_hop_to_the_shared_loop_at_once(seed: int, hop_way: str) -> None:
    # bursts of threads waiting at once (as under waitress or gunicorn's gthread
    # worker), each hop a random kind: every thread hears its own outcome, with
    # the context variables its coroutine set, and no task is left behind
    rng = random.Random(seed)
    threads = rng.choice([2, 4, 8, 16])
    plans = [[rng.choice(HOP_KINDS) for _ in range(rng.randint(5, 25))] for _ in range(threads)]
    outlived = Outlived()
    failures: list[str] = []
    start = threading.Barrier(threads)

    def one(kind: str, tag: str) -> None:
        hop_note.set(f"thread {tag}")
        try:
            value = _shared_loop.shared_loop.call(_hop, (kind, tag, outlived), {})
        except LookupError as exc:
            if kind != "raises" or exc.args != (tag,):
                failures.append(f"{tag} ({kind}) raised {exc!r}")
            return
        except RuntimeError as exc:
            if kind != "is cancelled" or "cancelled" not in str(exc):
                failures.append(f"{tag} ({kind}) raised {exc!r}")
            return
        if kind in ("raises", "is cancelled") or value != _expected_hop(kind, tag):
            failures.append(f"{tag} ({kind}) returned {value!r}")
        elif hop_note.get() != f"loop {tag}":
            failures.append(f"{tag} ({kind}): the thread sees {hop_note.get()!r}")

    def thread(k: int) -> None:
        pauses = random.Random(seed * 100 + k)
        start.wait(DEADLINE)
        for i, kind in enumerate(plans[k]):
            # each hop in a context of its own, as each WSGI request is
            contextvars.copy_context().run(one, kind, f"{seed}.{k}.{i}")
            if pauses.random() < 0.2:
                time.sleep(pauses.choice([0.0, 0.0005]))  # work between requests

    workers = [threading.Thread(target=thread, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(DEADLINE)
    assert not any(w.is_alive() for w in workers), "a thread still waits for its hop (hang)"
    assert failures == []
    wait_until(
        lambda: len(outlived.done) == outlived.started,
        f"the work left running sent its sync work back ({len(outlived.done)} of "
        f"{outlived.started})",
    )
    wait_until(lambda: not outlived.tasks, "every task left running ended")
    wait_until(
        lambda: all(ref() is None for ref in outlived.hops),
        "every hop's task is let go (freed, by reference counting alone)",
    )


# --------------------------------------------------------------------------
# LoopInbox: calls from threads to a loop, one wake-up per batch
# --------------------------------------------------------------------------


@pytest.fixture(params=["eventfd", "call_soon_threadsafe"])
def inbox_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "eventfd" and not _concurrency._EVENTFD:
        pytest.skip("os.eventfd is Linux-only: this platform uses call_soon_threadsafe")
    if request.param == "call_soon_threadsafe":
        monkeypatch.setattr(_concurrency, "_EVENTFD", False)  # (uvloop's way, and other OSes')
    return str(request.param)


@pytest.mark.parametrize("seed", range(4))
def test_every_call_sent_to_a_loop_runs_once_in_order(inbox_kind: str, seed: int) -> None:
    # threads send while the loop empties the inbox: a call that arrives as the
    # loop finishes a batch must wake it again (the flag is cleared first)
    rng = random.Random(seed)
    senders, calls = rng.randint(2, 8), rng.randint(50, 400)

    async def main() -> dict[int, list[int]]:
        loop = asyncio.get_running_loop()
        inbox = _concurrency.LoopInbox(loop)
        assert (inbox._fd >= 0) == (inbox_kind == "eventfd")
        got: dict[int, list[int]] = {i: [] for i in range(senders)}
        done = loop.create_future()
        remaining = [senders * calls]

        def arrived(item: tuple[int, int]) -> None:
            got[item[0]].append(item[1])
            remaining[0] -= 1
            if not remaining[0]:
                done.set_result(None)

        def send(sender: int) -> None:
            pause = random.Random(seed * 100 + sender)
            for n in range(calls):
                inbox.call(arrived, (sender, n))
                if pause.random() < 0.05:
                    time.sleep(0.0005)  # (work: varies the interleavings)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
        for thread in threads:
            thread.start()
        try:
            await asyncio.wait_for(done, DEADLINE)
        finally:
            for thread in threads:
                thread.join(DEADLINE)
        await asyncio.sleep(0)  # nothing arrives twice
        return got

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can: more interleavings
    try:
        got = asyncio.run(main())
    finally:
        sys.setswitchinterval(interval)
    assert got == {i: list(range(calls)) for i in range(senders)}


def test_a_call_sent_as_the_loop_finds_the_inbox_empty_is_run(inbox_kind: str) -> None:
    # the narrowest race, made to happen: a thread sends just as the loop finds
    # nothing more to run. The loop must be woken again (it cleared the flag
    # before looking), or the call waits for the next one, maybe forever.
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        inbox = _concurrency.LoopInbox(loop)
        ran: list[str] = []
        second = loop.create_future()

        def then(_: Any) -> None:
            ran.append("then")
            second.set_result(None)

        class Racing(collections.deque[Any]):
            raced = False

            def __bool__(self) -> bool:
                empty = not len(self)
                if empty and not self.raced:  # found empty: another thread sends now
                    self.raced = True
                    sender = threading.Thread(target=inbox.call, args=(then, None))
                    sender.start()
                    sender.join(DEADLINE)
                return not empty

        inbox._items = Racing()
        threading.Thread(target=inbox.call, args=(ran.append, "first")).start()
        await asyncio.wait_for(second, DEADLINE)
        return ran

    assert asyncio.run(main()) == ["first", "then"]


def test_a_call_to_a_closed_loop_is_dropped_and_its_eventfd_closed_with_the_loop(
    inbox_kind: str,
) -> None:
    import gc
    import os

    loop = asyncio.new_event_loop()
    inbox = loop.run_until_complete(_inbox_of_running_loop())
    fd = inbox._fd
    loop.close()
    inbox.call(print, "never")  # nobody waits: no error either
    del loop, inbox
    gc.collect()
    if fd >= 0:
        with pytest.raises(OSError):
            os.fstat(fd)


async def _inbox_of_running_loop() -> _concurrency.LoopInbox:
    return _concurrency.loop_inbox(asyncio.get_running_loop())


def test_a_failing_call_is_logged_and_the_next_ones_run(
    inbox_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        inbox = _concurrency.LoopInbox(loop)
        ran: list[int] = []
        done = loop.create_future()

        def fail(_: Any) -> None:
            raise ValueError("a failing call")

        def sender() -> None:
            inbox.call(ran.append, 1)
            inbox.call(fail, None)
            inbox.call(ran.append, 2)
            inbox.call(done.get_loop().call_soon, lambda: done.set_result(None))

        threading.Thread(target=sender).start()
        await asyncio.wait_for(done, DEADLINE)
        return ran

    with caplog.at_level("ERROR", logger="microweb"):
        assert asyncio.run(main()) == [1, 2]
    assert "a failing call" in caplog.text
