"""Edges of a request's and an app's life: cancellation, failed startup, exit, trio.

Each case is one the concurrency review reproduced (``../shared/repros/``):

- a cancelled ASGI request whose ``def`` handler is running waits for it,
  so the handler keeps its uploaded files (repro 10);
- a startup hook that fails leaves the lifespan context at once, and is not
  retried by the requests that follow (repro 5);
- an ``async def`` shutdown hook runs at interpreter exit under WSGI even
  where no thread can be started any more (repro 4, Python >= 3.12);
- under a trio loop, the ASGI adapter says that it needs asyncio (repro 8).

Raw calls (`tests.raw`), no test client: each case is about what the server
sees. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio

from microweb import App, Request

from . import raw
from .servers import ROOT

DEADLINE = 20.0  # seconds: far above what any case needs, even on a loaded machine
PROTOCOLS = pytest.mark.parametrize("protocol", ["wsgi", "asgi"])


# --------------------------------------------------------------------------
# A cancelled request and its running def handler (ASGI only: WSGI servers
# have no way to cancel a request while its handler runs)
# --------------------------------------------------------------------------

UPLOAD = (
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    + b"x" * 5000
    + b"\r\n--B--\r\n"
)
UPLOAD_HEADERS = [("content-type", "multipart/form-data; boundary=B")]


def upload_app() -> tuple[App, threading.Event, threading.Event, dict[str, Any]]:
    app = App()
    started, release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    @app.post("/upload")
    def upload(request: Request) -> str:
        f = request.form()["file"]
        started.set()
        assert release.wait(DEADLINE)  # e.g. a slow database write before storing the file
        try:
            seen["read"] = len(f.read())
        except Exception as exc:
            seen["error"] = repr(exc)
            raise
        return "stored"

    return app, started, release, seen


def test_a_cancelled_request_lets_its_running_def_handler_finish_with_its_files() -> None:
    # a timeout middleware wrapping app.asgi, or a server shutting down, cancels
    # the request task: like anyio.to_thread.run_sync, the cancellation takes
    # effect when the def handler returns, and the request's cleanup (closing
    # the upload's files) runs after it, not under it
    app, started, release, seen = upload_app()

    async def main() -> None:
        task = asyncio.ensure_future(
            raw.call_asgi(app, method="POST", path="/upload", headers=UPLOAD_HEADERS, body=UPLOAD)
        )
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, started.wait, DEADLINE)
        task.cancel()
        for _ in range(50):  # many turns of the loop: the request stays in the handler
            await asyncio.sleep(0)
        assert not task.done()
        release.set()
        await asyncio.wait({task}, timeout=DEADLINE)
        assert task.cancelled()

    asyncio.run(main())
    assert seen == {"read": 5000}


def test_a_request_cancelled_while_waiting_for_a_thread_never_runs_its_handler() -> None:
    app = App(thread_limit=1)
    release = threading.Event()
    ran: list[str] = []

    @app.get("/{name}")
    def handler(name: str) -> str:
        ran.append(name)
        if name == "first":
            assert release.wait(DEADLINE)
        return name

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(raw.call_asgi(app, path="/first"))
        while not ran:  # the only thread is taken
            await asyncio.sleep(0)
        queued = asyncio.ensure_future(raw.call_asgi(app, path="/queued"))
        for _ in range(50):
            await asyncio.sleep(0)
        queued.cancel()
        await asyncio.wait({queued}, timeout=DEADLINE)
        assert queued.cancelled()  # at once: its handler had not started
        await loop.run_in_executor(None, release.set)
        assert (await asyncio.wait_for(first, DEADLINE)).body == b"first"
        # the thread takes waiting work in order: "last" runs after "queued" would have
        assert (await asyncio.wait_for(raw.call_asgi(app, path="/last"), DEADLINE)).body == b"last"

    asyncio.run(main())
    assert ran == ["first", "last"]


# --------------------------------------------------------------------------
# A failed startup
# --------------------------------------------------------------------------


def failing_app() -> tuple[App, dict[str, int]]:
    counts = {"entered": 0, "exited": 0, "startup": 0, "handler": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        counts["entered"] += 1  # e.g. app.state.pool = await create_pool()
        try:
            yield
        finally:
            counts["exited"] += 1  # await app.state.pool.close()

    app = App(lifespan=lifespan)

    @app.on_startup
    def check_config() -> None:
        counts["startup"] += 1
        raise RuntimeError("missing setting")

    @app.get("/")
    def home() -> str:
        counts["handler"] += 1
        return "hi"

    return app, counts


def serve_requests(app: App, protocol: str, n: int) -> list[raw.Answer]:
    """`n` GET / requests, as a server without lifespan events sends them
    (every WSGI server; uvicorn --lifespan off): on one loop under ASGI."""
    if protocol == "wsgi":
        return [raw.call_wsgi(app) for _ in range(n)]

    async def main() -> list[raw.Answer]:
        return [await raw.call_asgi(app) for _ in range(n)]

    return asyncio.run(main())


@PROTOCOLS
def test_a_failed_startup_leaves_the_lifespan_and_is_not_retried(protocol: str) -> None:
    app, counts = failing_app()
    answers = serve_requests(app, protocol, 5)
    assert [a.status for a in answers] == [500] * 5
    assert all(b"missing setting" not in a.body for a in answers)  # no detail to the client
    # one lifespan context, entered once and left when the startup failed: no
    # resource opened per request, none left open
    assert counts == {"entered": 1, "exited": 1, "startup": 1, "handler": 0}


def test_a_failed_startup_under_the_lifespan_protocol_leaves_the_lifespan() -> None:
    app, counts = failing_app()

    async def main() -> list[dict[str, Any]]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        lifespan = asyncio.ensure_future(app.asgi({"type": "lifespan"}, inbox.get, send))
        await asyncio.wait({lifespan}, timeout=DEADLINE)  # it returns after startup.failed
        assert lifespan.done()
        # the server then refuses to serve; if it served anyway, no second try
        assert (await raw.call_asgi(app)).status == 500
        return sent

    sent = asyncio.run(main())
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "missing setting" in sent[0]["message"]
    assert counts == {"entered": 1, "exited": 1, "startup": 1, "handler": 0}


# --------------------------------------------------------------------------
# Shutdown at interpreter exit (WSGI)
# --------------------------------------------------------------------------

AT_EXIT = """
import atexit, threading
from microweb import App
from tests import raw

app = App()

@app.on_shutdown
async def stop():
    print("async shutdown hook ran", flush=True)

@app.get("/")
{handler}home():
    return "hi"

print(raw.call_wsgi(app).body.decode(), flush=True)

def no_more_threads():
    # what Python >= 3.12 does at interpreter shutdown; atexit runs the latest
    # registered first, so this comes before microweb's shutdown
    def start(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")
    threading.Thread.start = start

atexit.register(no_more_threads)
"""


@pytest.mark.parametrize("handler", ["def ", "async def "], ids=["def", "async"])
def test_async_shutdown_hooks_run_at_exit_when_no_thread_can_start(handler: str) -> None:
    # a def-only app never started the shared loop's thread, and at exit none can start
    script = textwrap.dedent(AT_EXIT).format(handler=handler)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["hi", "async shutdown hook ran"], out.stderr


# --------------------------------------------------------------------------
# Under trio (hypercorn -k trio): a clear error
# --------------------------------------------------------------------------


def trio_app() -> App:
    app = App()

    @app.get("/")
    async def home() -> str:
        return "hi"

    return app


def test_an_http_request_under_trio_says_asyncio_is_needed() -> None:
    app = trio_app()
    errors: list[BaseException] = []

    async def http() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            raise AssertionError(f"nothing should be sent: {message}")

        try:
            await app.asgi(raw.scope(), receive, send)
        except RuntimeError as exc:
            errors.append(exc)

    trio.run(http)
    assert len(errors) == 1
    message = str(errors[0])
    assert "asyncio" in message and "under trio" in message, message


def test_a_lifespan_under_trio_fails_its_startup_saying_asyncio_is_needed() -> None:
    app = trio_app()
    sent: list[dict[str, Any]] = []

    async def lifespan() -> None:
        messages = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with trio.move_on_after(DEADLINE):
            await app.asgi({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    trio.run(lifespan)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "asyncio" in sent[0]["message"] and "trio" in sent[0]["message"]


# --------------------------------------------------------------------------
# A def step inside an anyio cancel scope that is cancelled (a timeout, a task
# group, Starlette's BaseHTTPMiddleware around app.asgi)
# --------------------------------------------------------------------------


def test_a_cancelled_scope_around_a_running_def_handler_does_not_spin_the_loop() -> None:
    # anyio cancels a task again at every turn of the loop while it stays in a
    # cancelled scope: waiting for the def handler must not wake up for each
    app = App()

    @app.get("/slow")
    def slow() -> str:
        threading.Event().wait(0.5)  # the work: half a second of blocking I/O
        return "done"

    async def main() -> float:
        loop_cpu = time.thread_time()  # this thread runs the loop
        with anyio.move_on_after(0.05):
            await raw.call_asgi(app, path="/slow")
        return time.thread_time() - loop_cpu

    cpu = asyncio.run(main())
    # waiting, the loop's thread uses next to no CPU; a busy loop would use
    # most of the half second (a third of it with two other busy processes)
    assert cpu < 0.1, f"the loop's thread used {cpu:.3f} s of CPU while the handler waited"


# --------------------------------------------------------------------------
# Context values that compare oddly
# --------------------------------------------------------------------------


def within_deadline(call: Any) -> Any:
    """`call()` in a daemon thread: a hang fails the test instead of hanging the run."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert out, f"no answer within {DEADLINE} s (a hang, or an exception above)"
    return out[0]


class Ambiguous:
    """A value whose ``==`` raises, as a numpy array's truth value does."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of an array is ambiguous")

    __hash__ = object.__hash__


def odd_values_app() -> App:
    import contextvars

    flag: contextvars.ContextVar[object] = contextvars.ContextVar("flag")
    array: contextvars.ContextVar[object] = contextvars.ContextVar("array")
    app = App(thread_limit=1)

    @app.middleware
    async def set_first(request: Request, call_next: Any) -> Any:
        flag.set(1)
        array.set(Ambiguous())
        return await call_next(request)

    @app.get("/")
    def handler() -> str:  # a def step: another thread, then back
        flag.set(True)  # equal to 1, and still a change
        array.set(Ambiguous())
        return "ok"

    @app.get("/async")
    async def async_handler() -> str:  # under WSGI: the shared loop, then back
        flag.set(True)
        array.set(Ambiguous())
        return "ok"

    @app.after_request
    async def report(request: Request, response: Any) -> None:
        response.headers["x-flag"] = repr(flag.get())

    return app


@PROTOCOLS
@pytest.mark.parametrize("path", ["/", "/async"])
def test_context_values_are_carried_by_identity_not_equality(protocol: str, path: str) -> None:
    app = odd_values_app()
    for _ in range(3):  # with one thread: a thread lost to the first would hang the next
        if protocol == "wsgi":
            answer = within_deadline(lambda: raw.call_wsgi(app, path=path))
        else:
            answer = within_deadline(lambda: asyncio.run(raw.call_asgi(app, path=path)))
        assert (answer.status, answer.body, answer.header("x-flag")) == (200, b"ok", "True")


@PROTOCOLS
def test_what_startup_sets_in_the_context_is_seen_by_no_request(protocol: str) -> None:
    # startup is not a step of the first request (under an ASGI server with the
    # lifespan protocol it is a task of its own): every request sees the same
    import contextvars

    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")
    app = App()

    @app.on_startup
    async def start() -> None:
        seen.set("set by startup")

    @app.get("/")
    def home() -> str:
        return seen.get()

    assert [a.body for a in serve_requests(app, protocol, 3)] == [b"unset"] * 3


def test_a_request_cancelled_during_startup_does_not_start_it_twice() -> None:
    # a server that runs no lifespan: the first request starts up the app, and
    # its client leaves meanwhile; startup goes on, and the next request uses it
    app, counts = failing_app()
    release = asyncio.Event()
    app._startup.clear()

    @app.on_startup
    async def slow() -> None:
        counts["startup"] += 1
        await release.wait()

    async def main() -> raw.Answer:
        first = asyncio.ensure_future(raw.call_asgi(app))
        while counts["startup"] == 0:
            await asyncio.sleep(0)
        first.cancel()
        await asyncio.wait({first}, timeout=DEADLINE)
        assert first.cancelled()
        second = asyncio.ensure_future(raw.call_asgi(app))
        for _ in range(50):
            await asyncio.sleep(0)
        release.set()
        return await asyncio.wait_for(second, DEADLINE)

    answer = asyncio.run(main())
    assert (answer.status, answer.body) == (200, b"hi")
    assert (counts["entered"], counts["startup"], counts["handler"]) == (1, 1, 1)
