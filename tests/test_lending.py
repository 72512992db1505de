"""The shared loop run in turns by the WSGI threads that wait for it
(`_shared_loop.SharedEventLoop`).

A WSGI thread that wants a coroutine run runs that coroutine's steps itself
(its task is pinned to the thread); every other task runs in the loop's own
thread, which sleeps meanwhile: a coroutine that awaits nothing external
wakes no thread. What a user can see: the same answers, one loop shared by
every request, each task's steps in one thread (greenlets, as SQLAlchemy's
asyncio extension uses, cannot change threads), and work that a request
leaves on the loop (timers, tasks, callbacks) still done once the request has
been answered. Every wait here has a deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from microweb import _concurrency, _shared_loop
from microweb._shared_loop import shared_loop

from .test_concurrency_stress import DEADLINE, wait_until

note: contextvars.ContextVar[str] = contextvars.ContextVar("lending_note", default="-")


@pytest.fixture(autouse=True)
def _lending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shared_loop, "LEND", True)
    if type(shared_loop.get()) is not _shared_loop.SharedEventLoop:
        pytest.skip("the shared loop is lent on Linux (epoll) with asyncio's own loops only")


def test_an_idle_loop_is_run_by_the_waiting_thread_and_its_own_thread_sleeps() -> None:
    # in a process of its own: nothing else runs on its shared loop. The
    # loop's thread uses (next to) no CPU while a few hundred async requests are
    # answered (wsgiref's validator around app.wsgi), also those that set a
    # timeout they leave in time or read the body (the thread reads it, sent
    # back by the coroutine, and tells the coroutine itself).
    script = textwrap.dedent(
        """
        import asyncio, threading, time
        from microweb import App, Request
        from microweb._shared_loop import shared_loop
        from microweb.testing import TestClient

        app = App()
        threads = set()

        @app.get("/hello/{n:int}")
        async def hello(n: int) -> dict:
            threads.add(threading.get_ident())
            await asyncio.sleep(0)
            return {"n": n}

        @app.get("/timed")
        async def timed() -> str:
            async with asyncio.timeout(30):  # a timer, cancelled before the end
                await asyncio.sleep(0)
            return "in time"

        @app.post("/echo")
        async def echo(request: Request) -> dict:
            threads.add(threading.get_ident())
            return {"got": await request.json()}  # (read in the thread, sent back)

        with TestClient(app, protocol="wsgi") as client:
            assert client.get("/hello/0").json() == {"n": 0}
            loop_thread = next(t for t in threading.enumerate() if t.name == "microweb-loop")
            clock = time.pthread_getcpuclockid(loop_thread.ident)
            before, mine = time.clock_gettime_ns(clock), time.thread_time_ns()
            for n in range(200):
                assert client.get(f"/hello/{n}").json() == {"n": n}
                assert client.get("/timed").text == "in time"
                assert client.post("/echo", json=[n]).json() == {"got": [n]}
            after, mine = time.clock_gettime_ns(clock), time.thread_time_ns() - mine
        print(threads == {threading.get_ident()}, after - before, mine)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out[0] == "True", "the async handler ran in the WSGI thread"
    # (CPU time, not wall-clock; the loop's thread may still be on its way to
    # sleep when the count starts: a few microseconds, against milliseconds)
    loop_cpu, wsgi_cpu = int(out[1]), int(out[2])
    assert loop_cpu < wsgi_cpu / 100, f"the loop's thread ran {loop_cpu} ns ({wsgi_cpu} ns here)"


def _call(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    return shared_loop.call(fn, args, {})


def test_a_timer_left_behind_fires_without_another_request() -> None:
    fired = threading.Event()

    async def leave_a_timer() -> str:
        asyncio.get_running_loop().call_later(0.01, fired.set)
        return "answered"

    assert _call(leave_a_timer) == "answered"
    assert fired.wait(DEADLINE)


def test_a_timer_earlier_than_the_one_the_loop_sleeps_until_fires() -> None:
    late = threading.Event()
    early = threading.Event()

    async def schedule(delay: float, event: threading.Event) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, event.set)

    far = _call(schedule, 3600, late)  # the loop's thread sleeps until then
    try:
        _call(schedule, 0.01, early)
        assert early.wait(DEADLINE)
        assert not late.is_set()
    finally:
        shared_loop.get().call_soon_threadsafe(far.cancel)


def test_callbacks_and_tasks_left_behind_run_to_their_end() -> None:
    done: list[str] = []
    finished = threading.Event()

    async def later() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        done.append("task")
        finished.set()

    async def leave_work() -> str:
        loop = asyncio.get_running_loop()
        loop.call_soon(done.append, "callback")
        kept.append(loop.create_task(later()))
        return "answered"

    kept: list[asyncio.Task[None]] = []
    assert _call(leave_work) == "answered"
    assert finished.wait(DEADLINE)
    assert done == ["callback", "task"]


def test_work_sent_back_to_the_thread_gives_the_loop_back() -> None:
    # the coroutine sends sync work to its thread (a body read, a def step):
    # the thread stops running the loop to do it, and the loop's own thread
    # carries on with the coroutine
    waiting = threading.get_ident()

    async def coroutine() -> list[Any]:
        bridge = _concurrency.current_bridge()
        assert bridge is not None
        seen = [threading.get_ident() == waiting]
        seen.append(await bridge.call_in_thread(lambda: threading.get_ident() == waiting))
        await asyncio.sleep(0)
        seen.append(note.get())
        note.set("from the loop")
        return seen

    def in_a_request() -> tuple[list[Any], str]:
        note.set("from the thread")
        return _call(coroutine), note.get()

    seen, after = contextvars.copy_context().run(in_a_request)
    assert seen == [True, True, "from the thread"]
    assert after == "from the loop"


def test_a_thread_running_a_loop_of_its_own_is_not_lent_the_shared_one() -> None:
    # (a WSGI app called from async code, say): it takes the usual way
    async def where() -> int:
        return threading.get_ident()

    async def main() -> int:
        return _call(where)

    assert asyncio.run(main()) != threading.get_ident()


# --------------------------------------------------------------------------
# Stress: threads that borrow the loop, threads that queue to it, work left on it
# --------------------------------------------------------------------------

KINDS = [
    "returns",
    "awaits",  # suspends a few times
    "sleeps",  # waits for a timer of its own
    "sends back",  # sync work to the waiting thread
    "locks",  # an asyncio.Lock shared by every request, held across awaits
    "asks",  # a request to a task that lives on the loop, through a queue
    "leaves a timer",  # a timer that fires after the answer
    "times out",
    "raises",
]


class Shared:
    """What the requests share on the loop (made on it, by the first request)."""

    def __init__(self) -> None:
        self.lock: asyncio.Lock | None = None
        self.queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] | None = None
        self.server: asyncio.Task[None] | None = None
        self.inside = 0
        self.most_inside = 0
        self.timers_set = 0
        self.timers_fired = 0
        self.count_lock = threading.Lock()
        self.ticks = 0

    async def ensure(self) -> None:
        if self.lock is None:
            self.lock = asyncio.Lock()
            self.queue = asyncio.Queue()
            self.server = asyncio.get_running_loop().create_task(self.serve())

    async def serve(self) -> None:
        assert self.queue is not None
        while True:
            n, reply = await self.queue.get()
            if n % 3 == 0:
                await asyncio.sleep(0)
            reply.set_result(n + 1)

    def fired(self) -> None:
        with self.count_lock:
            self.timers_fired += 1

    def tick(self) -> None:
        # a periodic timer of the loop's own: runs whoever runs the loop
        self.ticks += 1
        if self.ticks < 10_000:
            asyncio.get_running_loop().call_later(0.002, self.tick)


async def _request(kind: str, n: int, shared: Shared) -> Any:
    await shared.ensure()
    assert note.get() == f"thread {n}"
    result: Any = n
    if kind == "awaits":
        for _ in range(1 + n % 3):
            await asyncio.sleep(0)
    elif kind == "sleeps":
        await asyncio.sleep(0.0005)
    elif kind == "sends back":
        bridge = _concurrency.current_bridge()
        assert bridge is not None
        result = await bridge.call_in_thread(lambda: n * 10)
    elif kind == "locks":
        assert shared.lock is not None
        async with shared.lock:
            shared.inside += 1
            shared.most_inside = max(shared.most_inside, shared.inside)
            await asyncio.sleep(0)
            shared.inside -= 1
    elif kind == "asks":
        assert shared.queue is not None
        reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await shared.queue.put((n, reply))
        result = await reply
    elif kind == "leaves a timer":
        with shared.count_lock:
            shared.timers_set += 1
        asyncio.get_running_loop().call_later(0.001 * (n % 4), shared.fired)
    elif kind == "times out":
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 0.0005)
        except asyncio.TimeoutError:
            result = -n
    elif kind == "raises":
        raise LookupError(n)
    note.set(f"loop {n}")
    return result


def _expected(kind: str, n: int) -> Any:
    return {"sends back": n * 10, "asks": n + 1, "times out": -n}.get(kind, n)


@pytest.mark.parametrize("seed", range(6))
def test_threads_borrowing_and_queueing_to_the_loop_at_once(seed: int) -> None:
    # bursts of threads (waitress, gthread) each making random requests, while
    # a periodic timer keeps the loop busy now and then (so that some requests
    # find it lent, some find it busy and queue to it): every request gets its
    # own answer and context, shared loop objects stay consistent, and every
    # timer left behind fires
    rng = random.Random(seed)
    shared = Shared()
    loop = shared_loop.get()
    if seed % 2:
        loop.call_soon_threadsafe(shared.tick)
    threads = rng.choice([2, 3, 4, 8])
    plans = [
        [(rng.choice(KINDS), k * 1000 + i) for i in range(rng.randint(10, 40))]
        for k in range(threads)
    ]
    failures: list[str] = []
    start = threading.Barrier(threads)

    def one(kind: str, n: int) -> None:
        note.set(f"thread {n}")
        try:
            value = shared_loop.call(_request, (kind, n, shared), {})
        except LookupError as exc:
            if kind != "raises" or exc.args != (n,):
                failures.append(f"{n} ({kind}) raised {exc!r}")
            return
        except BaseException as exc:
            failures.append(f"{n} ({kind}) raised {exc!r}")
            return
        if kind == "raises" or value != _expected(kind, n):
            failures.append(f"{n} ({kind}) returned {value!r}")
        elif note.get() != f"loop {n}":
            failures.append(f"{n} ({kind}): the thread sees {note.get()!r}")

    def thread(k: int) -> None:
        pauses = random.Random(seed * 100 + k)
        start.wait(DEADLINE)
        for kind, n in plans[k]:
            contextvars.copy_context().run(one, kind, n)
            if pauses.random() < 0.2:
                time.sleep(pauses.choice([0.0, 0.0005, 0.003]))  # work between requests

    workers = [threading.Thread(target=thread, args=(k,), daemon=True) for k in range(threads)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(DEADLINE)
        assert not any(w.is_alive() for w in workers), "a thread still waits (hang)"
        assert failures == []
        assert shared.most_inside <= 1, "two requests held the asyncio.Lock at once"
        wait_until(
            lambda: shared.timers_fired == shared.timers_set,
            f"every timer left behind fired ({shared.timers_fired} of {shared.timers_set})",
        )
        if seed % 2:
            ticks = shared.ticks
            wait_until(lambda: shared.ticks >= ticks + 3, "the loop's own timer goes on")
    finally:
        shared.ticks = 10_000  # (stops the ticking)

        async def stop() -> None:
            if shared.server is not None:
                shared.server.cancel()
                await asyncio.wait([shared.server])

        shared_loop.call(stop, (), {})


# --------------------------------------------------------------------------
# One thread per task (found by a review of a first version, which let the
# waiting thread run the whole loop: other tasks' steps changed threads)
# --------------------------------------------------------------------------


def _wait_for_a_sleeping_loop() -> None:
    # (so that the next call finds the loop's thread asleep, the case to test)
    loop = shared_loop.get()
    assert isinstance(loop, _shared_loop.SharedEventLoop)
    wait_until(lambda: loop._parked, "the loop's thread sleeps")


@pytest.mark.parametrize("started_by", ["a request", "the loop's own thread"])
def test_every_step_of_a_task_runs_in_one_thread(started_by: str) -> None:
    # asyncio runs a loop in one thread, and libraries rely on it: SQLAlchemy's
    # asyncio extension runs each query in a greenlet, which only the thread
    # that made it can resume. A task a request leaves running (a write after
    # the answer), or one that lives on the loop (a connection's reader), is
    # resumed in that one thread, whichever thread resumes it.
    loop = shared_loop.get()
    threads: list[int] = []
    holder: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    async def task(go: asyncio.Event) -> None:
        threads.append(threading.get_ident())  # (a query's greenlet made here)
        await go.wait()  # (the driver's answer)
        threads.append(threading.get_ident())  # (the greenlet resumed here)

    async def start() -> None:
        go = asyncio.Event()
        holder.append((asyncio.get_running_loop().create_task(task(go)), go))
        await asyncio.sleep(0)  # the task's first step, in the loop's thread
        await asyncio.sleep(0)

    async def resume() -> None:
        t, go = holder[0]
        go.set()
        await asyncio.wait([t])

    if started_by == "a request":
        _wait_for_a_sleeping_loop()
        _call(start)
        t, go = holder[0]
        loop.call_soon_threadsafe(go.set)  # the loop's thread resumes it
        wait_until(t.done, "the task ended")
    else:
        asyncio.run_coroutine_threadsafe(start(), loop).result(DEADLINE)
        _wait_for_a_sleeping_loop()
        _call(resume)  # a request resumes it
    assert len(threads) == 2
    assert threads[0] == threads[1], "one task's steps ran in two threads"


def test_a_request_runs_its_own_steps_and_nothing_else_in_its_thread() -> None:
    me = threading.get_ident()
    where: dict[str, int] = {}

    async def sub() -> None:
        where["subtask"] = threading.get_ident()
        await asyncio.sleep(0)

    async def request() -> None:
        where["first"] = threading.get_ident()
        await asyncio.gather(sub())  # a task of its own: the loop's thread
        await asyncio.sleep(0.001)  # a timer
        await asyncio.sleep(0)
        where["last"] = threading.get_ident()

    _call(request)
    assert where["first"] == where["last"] == me
    assert where["subtask"] != me


class Interrupted(Exception):
    pass


def test_a_signal_for_the_main_thread_never_lands_in_another_task() -> None:
    # gunicorn's sync worker (and any single-threaded server) answers requests
    # in the main thread, where Python runs signal handlers. A handler that
    # raises (a SIGALRM timeout around a request, say) interrupts that
    # request, never a task of the app that runs on the loop at that moment
    # (here the signal is sent as such a task runs).
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    import signal

    main = threading.main_thread().ident
    assert main is not None
    holder: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    async def background(go: asyncio.Event) -> None:  # a task of the app's own
        while True:
            await go.wait()
            go.clear()
            signal.pthread_kill(main, signal.SIGUSR1)  # a signal arrives now

    async def start() -> None:
        go = asyncio.Event()
        holder.append((asyncio.get_running_loop().create_task(background(go)), go))

    async def request() -> str:
        holder[0][1].set()
        for _ in range(5):
            await asyncio.sleep(0.001)
        return "answered"

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    asyncio.run_coroutine_threadsafe(start(), shared_loop.get()).result(DEADLINE)
    task = holder[0][0]
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        _wait_for_a_sleeping_loop()
        with pytest.raises(Interrupted):
            _call(request)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        alive = not task.done()
        shared_loop.get().call_soon_threadsafe(task.cancel)
    assert alive, "the app's task was killed by the request's signal"
    wait_until(lambda: not _concurrency._orphans, "the interrupted request's task ended")


def test_a_loop_that_never_sleeps_still_serves_requests() -> None:
    # a task of the app's that keeps the loop busy (it never waits for
    # anything): the loop's thread hands the loop over between its turns
    stop = threading.Event()
    spins = [0]

    async def busy() -> None:
        while not stop.is_set():
            spins[0] += 1
            await asyncio.sleep(0)

    async def request(n: int) -> int:
        await asyncio.sleep(0)
        return n

    future = asyncio.run_coroutine_threadsafe(busy(), shared_loop.get())
    try:
        wait_until(lambda: spins[0] > 10, "the busy task runs")
        answers: list[int] = []

        def ask(k: int) -> None:
            for n in range(20):
                answers.append(_call(request, k * 100 + n))

        threads = [threading.Thread(target=ask, args=(k,), daemon=True) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert not any(t.is_alive() for t in threads), "a request waits for ever"
        assert sorted(answers) == [k * 100 + n for k in range(3) for n in range(20)]
    finally:
        stop.set()
        future.result(DEADLINE)


def test_a_thread_interrupted_as_it_took_the_loop_takes_it_back_next_time() -> None:
    # a signal handler that raises right after the thread took the baton (in
    # the main thread of a single-threaded server): the thread's next call
    # goes on with it, and the loop's own thread then gets it back
    loop = shared_loop.get()
    assert isinstance(loop, _shared_loop.SharedEventLoop)
    fired = threading.Event()
    answers: list[Any] = []

    async def request() -> str:
        asyncio.get_running_loop().call_later(0.001, fired.set)  # for the loop's thread
        await asyncio.sleep(0)
        return "answered"

    def thread() -> None:
        loop.take()  # ... and interrupted: never given back
        answers.append(_call(request))

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    t.join(DEADLINE)
    assert not t.is_alive(), "the next call waits for ever for the loop"
    assert answers == ["answered"]
    assert fired.wait(DEADLINE), "the loop's own thread never got the loop back"


@pytest.mark.parametrize("library", ["asyncio", "anyio"])
def test_a_timeout_around_a_coroutine_that_never_waits_fires(library: str) -> None:
    # a request whose coroutine yields (`await asyncio.sleep(0)`) but never
    # waits for anything: its steps follow one another in its thread, and the
    # timeout it set around them still fires once due (found by a review: the
    # loop's thread was woken for the timer only once the task stopped, so
    # the request ran for ever)
    import anyio

    give_up = threading.Event()

    async def spin() -> None:
        while not give_up.is_set():
            await asyncio.sleep(0)

    async def request() -> str:
        try:
            if library == "asyncio":
                async with asyncio.timeout(0.01):
                    await spin()
            else:
                with anyio.fail_after(0.01):
                    await spin()
        except TimeoutError:
            return "timed out"
        return "never timed out"

    _wait_for_a_sleeping_loop()
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(_call(request)), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    give_up.set()  # (ends the request if the timeout never fired)
    thread.join(DEADLINE)
    assert result == ["timed out"]


class _SignalOnTaking:
    """The loop's baton (the same lock), where a signal arrives for the main
    thread just as it takes the baton: its handler runs there."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.armed = True

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got: bool = self.lock.acquire(blocking, timeout)
        if got and self.armed and threading.current_thread() is threading.main_thread():
            import signal

            self.armed = False
            signal.raise_signal(signal.SIGUSR1)
        return got

    def release(self) -> None:
        self.lock.release()

    def _is_owned(self) -> bool:
        return bool(self.lock._is_owned())


def test_a_signal_as_the_thread_takes_the_loop_leaves_the_loop_working() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    import signal

    loop = shared_loop.get()
    assert isinstance(loop, _shared_loop.SharedEventLoop)
    lock = loop.baton

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    async def request() -> str:
        await asyncio.sleep(0)
        return "answered"

    answers: list[str] = []
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        _wait_for_a_sleeping_loop()
        loop.baton = _SignalOnTaking(lock)  # type: ignore[assignment]
        with pytest.raises(Interrupted):
            _call(request)
        loop.baton = lock
        running = asyncio.events._get_running_loop()
        other = threading.Thread(target=lambda: answers.append(_call(request)), daemon=True)
        other.start()
        other.join(DEADLINE)  # (a few ms when it works; a hang otherwise)
        answered = answers == ["answered"]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        loop.baton = lock
        if answers != ["answered"]:  # (the baton leaked: the next tests need the loop)
            asyncio.events._set_running_loop(None)
            lock.release()
            wait_until(lambda: answers == ["answered"], "the next request is answered")
    assert running is None, "the shared loop is left as this thread's running loop"
    assert answered, "the next request hangs: the baton was left taken"


def test_a_cancel_scope_expiring_during_sync_work_does_not_spin_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio

    loop = shared_loop.get()
    turns = [0]
    run_once = loop._run_once  # type: ignore[attr-defined]

    def counted() -> None:
        turns[0] += 1
        run_once()

    spun = threading.Event()

    def slow_read() -> None:  # (a slow client's body, say)
        start = turns[0]
        end = time.monotonic() + 2.0
        while turns[0] - start < 1000 and time.monotonic() < end:
            time.sleep(0.005)
        if turns[0] - start >= 1000:
            spun.set()

    async def request() -> str:
        bridge = _concurrency.current_bridge()
        assert bridge is not None
        with anyio.move_on_after(0.001):
            await bridge.call_in_thread(slow_read)
        return "answered"

    _wait_for_a_sleeping_loop()
    monkeypatch.setattr(loop, "_run_once", counted)
    assert _call(request) == "answered"
    assert not spun.is_set(), "the loop's thread turned 1000 times while the read blocked"


def test_a_thread_interrupted_as_it_takes_a_step_loses_no_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the waiting thread is interrupted (a signal handler that raised) just
    # as it learns that its task's next step is ready: the step is not lost,
    # the task goes on in the loop's thread to its end
    finished = threading.Event()
    taken = [0]

    class InterruptedQueue(queue.SimpleQueue):  # type: ignore[type-arg]
        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            item = super().get(block, timeout)
            if item is _concurrency._STEP:
                taken[0] += 1
                if taken[0] == 3:  # (the first is the task's first step)
                    raise Interrupted
            return item

    class Patched:
        SimpleQueue = InterruptedQueue
        Empty = queue.Empty

    async def request() -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        finished.set()

    monkeypatch.setattr(_concurrency, "queue", Patched)
    with pytest.raises(Interrupted):
        _call(request)
    monkeypatch.undo()
    assert finished.wait(DEADLINE), "the task lost a step: it never ended"
    wait_until(lambda: not _concurrency._orphans, "the interrupted request's task is let go")
    assert _call(request) is None  # (and the loop serves the next one)


def test_callbacks_ready_before_a_step_of_a_request_run_before_it() -> None:
    # asyncio runs callbacks in the order they were scheduled: a coroutine
    # that starts a task or schedules a callback and then yields
    # (`await asyncio.sleep(0)`, the usual "let the others run") finds them
    # run when it resumes. They run in the loop's thread, the request's
    # steps in its own: the request's next step waits for what was ready
    # before it (found by a review: it resumed first about one time in five)
    async def request() -> list[str]:
        seen: list[str] = []

        async def started() -> None:
            seen.append("task")

        task = asyncio.get_running_loop().create_task(started())
        await asyncio.sleep(0)
        seen.append("after the task's first step")
        asyncio.get_running_loop().call_soon(seen.append, "callback")
        await asyncio.sleep(0)
        seen.append("after the callback")
        await task
        return seen

    expected = asyncio.run(request())
    assert expected == ["task", "after the task's first step", "callback", "after the callback"]
    for _ in range(50):
        assert _call(request) == expected


def test_a_request_that_waits_for_a_timer_at_once_is_answered() -> None:
    # its first step sets the timer: the loop's thread, asleep, must hear of it
    async def request(n: int) -> int:
        await asyncio.sleep(0.001)
        return n

    answers: list[int] = []

    def thread() -> None:
        for n in range(20):
            _wait_for_a_sleeping_loop()
            answers.append(_call(request, n))

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    t.join(DEADLINE)
    assert not t.is_alive(), "a request waits for its timer for ever"
    assert answers == list(range(20))
