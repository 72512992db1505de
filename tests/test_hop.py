"""The hop from a thread to an event loop and back (`_concurrency.call_on_loop`):
async code under WSGI (the shared loop), and a def handler's async calls under
ASGI (the server's loop).

The shared loop, when it has nothing else to do, is lent to the waiting
thread, which runs the coroutine itself ("lent"); else, on asyncio's own
loops, the waiting thread makes the coroutine's task itself and wakes the
loop ("direct"); elsewhere (uvloop, debug mode, a task factory) a callback on
the loop makes it ("general"). Every test here runs all three ways
(the `hop_way` fixture) and checks what a user would: context variables,
`asyncio.current_task()`, errors, sync work sent back to the waiting thread.
A lone ``async def`` handler under WSGI is called by the adapter itself, not
through the pipeline: it must answer exactly as the pipeline does.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any

import anyio
import pytest

from microweb import App, HTTPException, Request, StreamingResponse, _concurrency, _shared_loop
from microweb._concurrency import current_bridge
from microweb._shared_loop import shared_loop
from microweb.testing import TestClient

from .conftest import MakeClient

DEADLINE = 20.0

note: contextvars.ContextVar[str] = contextvars.ContextVar("hop_note", default="-")


def _lone_handlers_app(*, hooked: bool) -> App:
    """Async handlers; `hooked`: behind a before-request hook that does nothing,
    so that every request goes through the pipeline."""
    app = App()
    if hooked:

        @app.before_request
        def nothing(request: Request) -> None:
            return None

    @app.get("/text")
    async def text() -> str:
        return "hello"

    @app.get("/json/{n:int}")
    async def as_json(n: int, q: str = "none") -> dict[str, Any]:
        return {"n": n, "q": q}

    @app.get("/made")
    async def made() -> Any:
        return "made", 201, {"x-made": "1"}

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout", headers={"x-why": "tea"})

    @app.get("/broken")
    async def broken() -> None:
        raise ValueError("boom")

    @app.get("/handled")
    async def handled() -> None:
        raise LookupError("looked up")

    @app.exception_handler(LookupError)
    async def on_lookup(request: Request, exc: LookupError) -> Any:
        return {"handled": str(exc), "note": note.get()}, 409

    @app.get("/context")
    async def context() -> StreamingResponse:
        note.set("set by the handler")
        task = asyncio.current_task()
        with anyio.fail_after(DEADLINE):  # (anyio needs a task of its own)
            await asyncio.sleep(0)

        def stream() -> Any:  # runs after the handler, in the request's context
            yield f"{note.get()}; a task: {task is not None}"

        return StreamingResponse(stream())

    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return {"body": (await request.body()).decode(), "note": note.get()}

    return app


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/text", {}),
    ("HEAD", "/text", {}),
    ("GET", "/json/7?q=x", {}),
    ("GET", "/json/seven", {}),
    ("GET", "/made", {}),
    ("GET", "/teapot", {}),
    ("GET", "/broken", {}),
    ("GET", "/handled", {}),
    ("GET", "/context", {}),
    ("POST", "/echo", {"content": b"a body"}),
    ("POST", "/echo", {"content": b"x" * 20, "headers": {"content-length": "20"}}),
]


def test_a_lone_async_handler_answers_as_the_pipeline_does(
    make_client: MakeClient, hop_way: str, caplog: pytest.LogCaptureFixture
) -> None:
    alone = make_client(_lone_handlers_app(hooked=False))
    piped = make_client(_lone_handlers_app(hooked=True))
    assert alone.app._hookless and not piped.app._hookless  # (else one path twice)
    for method, path, kwargs in REQUESTS:
        a = alone.request(method, path, **kwargs)
        p = piped.request(method, path, **kwargs)
        assert (a.status_code, a.headers.multi_items(), a.content) == (
            p.status_code,
            p.headers.multi_items(),
            p.content,
        ), f"{method} {path}"
    assert alone.get("/context").text == "set by the handler; a task: True"
    assert alone.get("/broken").status_code == 500
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "ValueError" in r.exc_text]
    assert len(errors) == 3  # one per /broken, either way alike


# --------------------------------------------------------------------------
# call_on_loop itself, both ways, on the shared loop and under ASGI
# --------------------------------------------------------------------------


def test_context_variables_flow_both_ways(hop_way: str) -> None:
    seen: list[str] = []

    async def coroutine() -> str:
        seen.append(note.get())
        note.set("from the loop")
        return "done"

    def in_a_request() -> tuple[str, str]:
        note.set("from the thread")
        return shared_loop.call(coroutine, (), {}), note.get()

    assert contextvars.copy_context().run(in_a_request) == ("done", "from the loop")
    assert seen == ["from the thread"]
    assert note.get() == "-"  # (nothing set in the test's own context)


def test_the_coroutine_runs_in_a_task_of_its_own_that_is_let_go(hop_way: str) -> None:
    tasks: list[weakref.ref[asyncio.Task[Any]]] = []

    async def coroutine() -> None:
        task = asyncio.current_task()
        assert isinstance(task, asyncio.Task)
        tasks.append(weakref.ref(task))
        with anyio.fail_after(DEADLINE):  # (anyio needs a task of its own)
            await asyncio.sleep(0)

    for _ in range(3):
        shared_loop.call(coroutine, (), {})
    assert len(tasks) == 3
    # freed once the hop ended (reference counting alone: nothing holds them)
    assert all(ref() is None for ref in tasks)


def test_errors_come_back_as_they_were_raised(hop_way: str) -> None:
    async def fails() -> None:
        raise KeyError("k")

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(KeyError):
        shared_loop.call(fails, (), {})
    with pytest.raises(RuntimeError, match="cancelled") as info:
        shared_loop.call(cancelled, (), {})
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


def test_sync_work_sent_back_runs_in_the_waiting_thread(hop_way: str) -> None:
    waiting = threading.get_ident()

    def blocking(n: int) -> tuple[int, int]:
        note.set(f"set in the thread {n}")
        return threading.get_ident(), n

    async def coroutine() -> list[Any]:
        bridge = current_bridge()
        assert bridge is not None
        first = await bridge.call_in_thread(blocking, 1)
        seen = note.get()
        second = await bridge.call_in_thread(blocking, 2)
        return [first, seen, second]

    def in_a_request() -> tuple[list[Any], str]:
        return shared_loop.call(coroutine, (), {}), note.get()

    (first, seen, second), after = contextvars.copy_context().run(in_a_request)
    assert first == (waiting, 1) and second == (waiting, 2)
    assert seen == "set in the thread 1"  # a step's change, seen by the coroutine after it
    assert after == "set in the thread 2"  # and back in the waiting thread's context


def test_a_def_handler_calls_async_code_back_on_the_servers_loop(
    make_client: MakeClient, hop_way: str
) -> None:
    # under ASGI, request.json() in a def handler runs the read on the loop
    # (LoopRunner.call_async); under WSGI it reads in the thread
    app = App()

    @app.post("/echo")
    def echo(request: Request) -> Any:
        return {"got": request.json(), "thread": threading.current_thread().name}

    client = make_client(app)
    for n in range(3):
        answer = client.post("/echo", json={"n": n})
        assert answer.status_code == 200 and answer.json()["got"] == {"n": n}


def test_a_forked_child_hops_to_a_loop_of_its_own() -> None:
    # the child of a process whose shared loop runs (gunicorn --preload with
    # async startup) starts a loop and a wake-up pipe of its own
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from microweb._shared_loop import shared_loop

        async def where():
            return id(asyncio.get_running_loop()), os.getpid()

        parent = shared_loop.call(where, (), {})
        pid = os.fork()
        if pid == 0:
            child = shared_loop.call(where, (), {})
            again = shared_loop.call(where, (), {})
            os._exit(0 if child[1] == os.getpid() and child == again else 3)
        _, status = os.waitpid(pid, 0)
        assert shared_loop.call(where, (), {}) == parent
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child 0"


def test_a_loop_made_in_debug_mode_takes_the_general_way() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert _concurrency._direct(loop)
        loop.set_debug(True)
        assert not _concurrency._direct(loop)
        loop.set_debug(False)
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
        assert not _concurrency._direct(loop)
    finally:
        loop.close()


class Interrupted(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)")
def test_a_wait_interrupted_by_a_signal_leaves_the_coroutine_running_to_its_end(
    hop_way: str,
) -> None:
    # a signal handler that raises (Ctrl-C) ends the thread's wait; the task
    # goes on, kept referenced until it ends (never collected half-way). A
    # thread that runs the loop itself ("lent") may also be interrupted in
    # the coroutine's own code, as a loop's thread would: then the coroutine
    # sees the exception. Either way the caller does, and the loop goes on.
    release = threading.Event()
    outcome: list[str] = []

    async def slow() -> None:
        try:
            while not release.is_set():
                await asyncio.sleep(0.001)
        except Interrupted:
            outcome.append("interrupted")
            raise
        outcome.append("finished")

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            shared_loop.call(slow, (), {})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if hop_way != "lent":
        assert outcome == [] and len(_concurrency._orphans) == 1
    gc.collect()
    release.set()
    end = time.monotonic() + DEADLINE
    while (not outcome or _concurrency._orphans) and time.monotonic() < end:
        time.sleep(0.001)
    assert not _concurrency._orphans
    assert outcome in (["finished"], ["interrupted"])
    if hop_way != "lent":
        assert outcome == ["finished"]

    async def after() -> str:
        await asyncio.sleep(0)
        return "served"

    assert shared_loop.call(after, (), {}) == "served"


# --------------------------------------------------------------------------
# A pipeline of async steps mostly: one hop for all of them (WSGI)
# --------------------------------------------------------------------------


def _shaped_app(before: str, handler: str, after: str, middleware: str, steps: list[str]) -> App:
    """Hooks, middleware and a handler at "/" of the kinds given ("a": async def,
    "s": def), each adding its letter to `steps` (capital: async)."""
    app = App()

    def sync_hook(letter: str) -> Any:
        def hook(request: Request, *response: Any) -> None:
            steps.append(letter)

        return hook

    def async_hook(letter: str) -> Any:
        async def hook(request: Request, *response: Any) -> None:
            await asyncio.sleep(0)
            steps.append(letter)

        return hook

    for kind in before:
        app.before_request(async_hook("B") if kind == "a" else sync_hook("b"))
    for kind in middleware:
        if kind == "a":

            async def mw(request: Request, call_next: Any) -> Any:
                return await call_next(request)

            app.middleware(mw)
        else:

            def sync_mw(request: Request, call_next: Any) -> Any:
                return call_next(request)

            app.middleware(sync_mw)
    for kind in after:
        app.after_request(async_hook("A") if kind == "a" else sync_hook("a"))

    if handler == "a":

        @app.get("/")
        async def index() -> str:
            steps.append("H")
            return "ok"

    else:

        @app.get("/")
        def sync_index() -> str:
            steps.append("h")
            return "ok"

    return app


@pytest.mark.parametrize(
    ("before", "handler", "after", "middleware", "hops"),
    [
        ("a", "a", "", "", 1),  # was 2: one per async step
        ("aa", "a", "a", "", 1),  # was 4
        ("aa", "a", "s", "", 1),  # was 3 (the def after-hook comes back to the thread)
        # a trip back to the thread for a def step costs what a hop costs: as many
        # either way, so one hop per async step, as before
        ("a", "a", "s", "", 2),
        ("s", "a", "a", "", 2),
        ("a", "s", "", "", 1),
        ("", "a", "", "", 1),
        ("a", "a", "", "a", 2),  # with middleware: one hop per async step, as before
    ],
)
def test_a_pipeline_of_async_steps_costs_one_hop_under_wsgi(
    before: str,
    handler: str,
    after: str,
    middleware: str,
    hops: int,
    hop_way: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    real = _shared_loop.call_on_loop

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    real_pinned = _shared_loop.run_pinned

    def counting_pinned(loop: Any, call: Any) -> Any:
        calls.append(call.fn)
        return real_pinned(loop, call)

    monkeypatch.setattr(_shared_loop, "call_on_loop", counting)
    monkeypatch.setattr(_shared_loop, "run_pinned", counting_pinned)
    steps: list[str] = []
    app = _shaped_app(before, handler, after, middleware, steps)
    expected = "".join("B" if k == "a" else "b" for k in before)
    expected += "H" if handler == "a" else "h"
    expected += "".join("A" if k == "a" else "a" for k in reversed(after))
    with TestClient(app, protocol="wsgi") as client:
        for _ in range(3):
            steps.clear()
            answer = client.get("/")
            assert (answer.status_code, answer.text) == (200, "ok")
            assert "".join(steps) == expected
        calls.clear()
        client.get("/")
    assert len(calls) == hops
