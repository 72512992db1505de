"""Randomized stress tests of the concurrency core, under both protocols.

Each case is built from a fixed seed (``random.Random(seed)``), so a failure
replays exactly; requests are sent from several client threads at once and
from one thread in turn (the test client calls ``app.wsgi`` in the calling
thread, so a WSGI request runs on a reused thread, as in a server's worker).
Every wait has a deadline (`DEADLINE`): a hang fails the test, it never hangs
the run. What is checked:

1. context variables (API.md §7): in a random pipeline of ``def`` and
   ``async def`` before-hooks, middleware, handler, after-hooks, error
   handler and streamed body, each step sees exactly what the earlier steps
   of its own request set, and nothing from any other request -- both ways
   a thread may start a coroutine on a loop (the `hop_way` fixture);
2. request bodies: random bytes, sent with Content-Length or chunked, read
   every way (``body()``, ``json()``, ``stream()`` in the handler or in a
   streamed response's generator) after hooks that may read them too, come
   back whole, through the test client, through a real uvicorn and through
   a queue-based ``receive`` (as hypercorn's).

The worker pool itself (bursts, idle timeouts, cancellations, a hypothesis
state machine) and work that outlives its answer are in
``tests/test_concurrency_stress.py``.

The real server's app is this module's `app` (``uvicorn tests.test_stress:app.asgi``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import queue
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import h11
import httpx
import pytest

from microweb import App, HTTPException, Request, Response, StreamingResponse
from microweb.testing import TestClient

from . import raw
from .conftest import MakeClient
from .servers import serve

T = TypeVar("T")

#: Seconds any wait may last before the test fails as a hang (the work itself
#: takes milliseconds, even on a busy two-core machine).
DEADLINE = 5.0
KIB = 1024


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def run_concurrently(
    jobs: Sequence[Callable[[], T]],
    threads: int,
    on_hang: Callable[[], None] | None = None,
    labels: Sequence[str] = (),
) -> list[T]:
    """Run `jobs` from `threads` client threads, thread k taking jobs k, k+threads, ...
    one after another, and return their results in order.

    Fails if they have not all returned within `DEADLINE` (naming the stuck
    jobs by their `labels`, after calling `on_hang`, which should make the
    stuck requests return) and re-raises the first exception a job raised.
    """
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    current: dict[int, int] = {}

    def work(first: int) -> None:
        for i in range(first, len(jobs), threads):
            current[first] = i
            try:
                results[i] = jobs[i]()
            except BaseException as exc:
                errors.append(exc)
                return
        del current[first]

    # daemon threads, not an executor: a thread stuck in the app must not block exit
    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + DEADLINE
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    stuck = [i for k, i in current.items() if workers[k].is_alive()]
    if stuck:
        if on_hang is not None:
            on_hang()
        for worker in workers:
            worker.join(DEADLINE)
        names = [labels[i] if labels else f"job {i}" for i in stuck]
        raise AssertionError(f"no answer within {DEADLINE} s (a hang) to: {'; '.join(names)}")
    if errors:
        raise errors[0]
    return results


class ServerThread:
    """One long-lived thread that makes calls one after another, like a WSGI server's
    worker thread serving request after request."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, out = item
            try:
                out.put((True, fn()))
            except BaseException as exc:
                out.put((False, exc))

    def call(self, fn: Callable[[], T]) -> T:
        out: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._calls.put((fn, out))
        try:
            ok, value = out.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(f"no answer within {DEADLINE} s: a hang") from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._calls.put(None)


class InFlight:
    """A test client's open responses, so that a hung request can be broken off.

    Closing a response is what a client going away does: the app's next
    ``receive()`` says ``http.disconnect`` (ASGI), or the server stops
    iterating the body (WSGI).
    """

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._open: set[httpx.Response] = set()
        self._lock = threading.Lock()

    def request(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        with self.client.stream(method, url, **kwargs) as response:
            with self._lock:
                self._open.add(response)
            try:
                return response.status_code, response.read()
            finally:
                with self._lock:
                    self._open.discard(response)

    def abort(self) -> None:
        with self._lock:
            responses = list(self._open)
        for response in responses:
            response.close()
        if self.client.protocol == "asgi":
            _cancel_asgi_requests(self.client)


def _cancel_asgi_requests(client: TestClient) -> None:
    """Last resort for an ASGI request stuck before its response started: cancel the
    test client's request tasks on its loop (the TestClient has no request timeout)."""

    async def cancel() -> None:
        for task in asyncio.all_tasks():
            func = getattr(task.get_coro(), "cr_frame", None)
            func = func.f_locals.get("func") if func is not None else None
            if getattr(func, "__qualname__", "").endswith("handle_request.<locals>.run"):
                task.cancel()

    client._portal().call(cancel)


class Gate:
    """Holds coroutines (on any loop) until a thread opens it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def wait(self) -> None:
        event = asyncio.Event()
        with self._lock:
            if self._open:
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        await event.wait()

    def open(self) -> None:
        with self._lock:
            self._open = True
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)


def random_size(rng: random.Random, limit: int = 200 * KIB) -> int:
    """A body size, often at an edge: empty, one byte, around the 64 KiB read size."""
    return (
        rng.choice([0, 1, rng.randrange(2, KIB), 64 * KIB - 1, 64 * KIB, 64 * KIB + 1])
        if (rng.random() < 0.4)
        else rng.randrange(limit + 1)
    )


def split(rng: random.Random, data: bytes, largest: int = 80 * KIB) -> list[bytes]:
    """`data` cut into random non-empty pieces."""
    pieces = []
    i = 0
    while i < len(data):
        n = rng.randint(1, largest)
        pieces.append(data[i : i + n])
        i += n
    return pieces


# --------------------------------------------------------------------------
# 1. Context variables in random pipelines
# --------------------------------------------------------------------------


class StepFailed(Exception):
    """Raised by the step that a request names in ``?fail=``."""


#: What one step of one request saw: (step name, {step name: value} of the set variables).
Trace = list[tuple[str, dict[str, str]]]


@dataclass(frozen=True)
class Pipeline:
    """The shape of a random app: for each step whether it is ``async def``."""

    before: tuple[bool, ...]
    middleware: tuple[bool, ...]
    after: tuple[bool, ...]
    handler: bool
    error_handler: bool
    #: "" (the handler returns text), "sync" or "async": a StreamingResponse's generator.
    stream: str

    @classmethod
    def draw(cls, rng: random.Random) -> Pipeline:
        def kinds() -> tuple[bool, ...]:
            return tuple(rng.random() < 0.5 for _ in range(rng.randint(0, 3)))

        return cls(
            kinds(),
            kinds(),
            kinds(),
            rng.random() < 0.5,
            rng.random() < 0.5,
            rng.choice(["", "sync", "async"]),
        )

    @property
    def names(self) -> list[str]:
        """Every step's name (also the name of the variable it sets)."""
        return [*self.failing, "e", "g"]

    @property
    def failing(self) -> list[str]:
        """The steps a request may make fail: hooks, middleware and the handler."""
        return [
            *(f"b{i}" for i in range(len(self.before))),
            *(f"m{i}" for i in range(len(self.middleware))),
            "h",
            *(f"a{i}" for i in range(len(self.after))),
        ]

    def order(self, fail: str) -> list[str]:
        """The steps a request runs, in order, when step `fail` raises ("": none).

        Before-hooks, middleware, handler (whose failure the error handler `e`
        answers, ending the chain), after-hooks in reverse (each failure
        answered by `e`), then the streamed body `g` if the handler's response
        is still the one sent.
        """
        steps: list[str] = []
        for name in [f"b{i}" for i in range(len(self.before))] + [
            f"m{i}" for i in range(len(self.middleware))
        ]:
            steps.append(name)
            if name == fail:
                steps.append("e")
                break
        else:
            steps.append("h")
            if fail == "h":
                steps.append("e")
        for i in reversed(range(len(self.after))):
            steps.append(f"a{i}")
            if fail == f"a{i}":
                steps.append("e")
        if self.stream and not fail:
            steps.append("g")
        return steps


def pipeline_app(
    p: Pipeline, cvars: dict[str, contextvars.ContextVar[str | None]], traces: dict[str, Trace]
) -> App:
    """An app of shape `p`: every step records the variables it sees, then (unless it
    is the request's ``?fail=``) sets its own to ``"<step>@<request token>"``."""
    app = App()

    def look(name: str, token: str) -> None:
        seen = {n: v for n, var in cvars.items() if (v := var.get()) is not None}
        traces[token].append((name, seen))

    def act(name: str, request: Request) -> None:
        token = request.query_params["t"]
        if request.query_params.get("fail") == name:
            raise StepFailed(name)
        cvars[name].set(f"{name}@{token}")

    def visit(name: str, request: Request) -> None:
        look(name, request.query_params["t"])
        act(name, request)

    async def visit_async(name: str, request: Request) -> None:
        look(name, request.query_params["t"])
        for _ in range(int(request.query_params["y"])):
            await asyncio.sleep(0)  # let other requests' steps run in between
        act(name, request)

    def before(name: str, is_async: bool) -> Any:
        if is_async:

            async def hook(request: Request) -> None:
                await visit_async(name, request)

            return hook

        def sync_hook(request: Request) -> None:
            visit(name, request)

        return sync_hook

    def middleware(name: str, is_async: bool) -> Any:
        if is_async:

            async def mw(request: Request, call_next: Any) -> Response:
                await visit_async(name, request)
                return await call_next(request)  # type: ignore[no-any-return]

            return mw

        def sync_mw(request: Request, call_next: Any) -> Response:
            visit(name, request)
            return call_next(request)  # type: ignore[no-any-return]

        return sync_mw

    def after(name: str, is_async: bool) -> Any:
        if is_async:

            async def hook(request: Request, response: Response) -> None:
                await visit_async(name, request)

            return hook

        def sync_hook(request: Request, response: Response) -> None:
            visit(name, request)

        return sync_hook

    for i, is_async in enumerate(p.before):
        app.before_request(before(f"b{i}", is_async))
    for i, is_async in enumerate(p.middleware):
        app.middleware(middleware(f"m{i}", is_async))
    for i, is_async in enumerate(p.after):
        app.after_request(after(f"a{i}", is_async))

    def body(token: str) -> Any:
        if p.stream == "sync":

            def chunks() -> Iterator[bytes]:
                look("g", token)
                yield b"ok"

            return StreamingResponse(chunks(), media_type="text/plain")
        if p.stream == "async":

            async def async_chunks() -> AsyncIterator[bytes]:
                look("g", token)
                yield b"ok"

            return StreamingResponse(async_chunks(), media_type="text/plain")
        return "ok"

    if p.handler:

        @app.get("/")
        async def handler(request: Request) -> Any:
            await visit_async("h", request)
            return body(request.query_params["t"])

    else:

        @app.get("/")
        def sync_handler(request: Request) -> Any:
            visit("h", request)
            return body(request.query_params["t"])

    if p.error_handler:

        @app.exception_handler(StepFailed)
        async def failed(request: Request, exc: StepFailed) -> Any:
            await visit_async("e", request)
            return {"failed": str(exc)}, 418

    else:

        @app.exception_handler(StepFailed)
        def sync_failed(request: Request, exc: StepFailed) -> Any:
            visit("e", request)
            return {"failed": str(exc)}, 418

    return app


@dataclass
class PipelineRun:
    pipeline: Pipeline
    #: Per request: (token, failing step or "", status, body).
    requests: list[tuple[str, str, int, bytes]]
    traces: dict[str, Trace]


def run_pipeline_case(make_client: MakeClient, seed: int) -> PipelineRun:
    """Build the app of `seed` and send it 32 requests (one thread in turn, or four at once)."""
    rng = random.Random(seed)
    p = Pipeline.draw(rng)
    cvars = {n: contextvars.ContextVar[str | None](f"stress_{n}", default=None) for n in p.names}
    traces: dict[str, Trace] = {}
    client = make_client(pipeline_app(p, cvars, traces))
    inflight = InFlight(client)
    threads = 1 if seed % 3 == 0 else 4
    plan = [(f"{seed}.{i}", rng.choice(["", "", *p.failing]), rng.randint(0, 2)) for i in range(32)]
    for token, _, _ in plan:
        traces[token] = []

    def job(token: str, fail: str, yields: int) -> tuple[str, str, int, bytes]:
        status, body = inflight.request("GET", "/", params={"t": token, "fail": fail, "y": yields})
        return token, fail, status, body

    jobs = [lambda a=args: job(*a) for args in plan]  # type: ignore[misc]
    return PipelineRun(p, run_concurrently(jobs, threads, inflight.abort), traces)


def draw_loop_first(rng: random.Random) -> Pipeline:
    """A pipeline without middleware, its steps ``async def`` mostly: the WSGI
    adapter drives such a route from the shared loop, in one hop
    (`_pipeline.loop_first`)."""
    while True:

        def kinds() -> tuple[bool, ...]:
            return tuple(rng.random() < 0.75 for _ in range(rng.randint(0, 3)))

        stream = rng.choice(["", "sync", "async"])
        p = Pipeline(kinds(), (), kinds(), rng.random() < 0.75, rng.random() < 0.5, stream)
        steps = [*p.before, p.handler, *reversed(p.after)]
        sync_runs = sum(1 for i, a in enumerate(steps) if not a and (i == 0 or steps[i - 1]))
        if 1 + sync_runs < sum(steps):
            return p


def run_loop_first_case(seed: int, loop_first: bool) -> tuple[Pipeline, PipelineRun]:
    """`draw_loop_first`'s app of `seed` under WSGI, its pipeline driven from the
    loop or from the thread (as `loop_first` says), sent 32 requests (4 threads)."""
    from microweb import wsgi

    rng = random.Random(seed)
    p = draw_loop_first(rng)
    cvars = {n: contextvars.ContextVar[str | None](f"stress_{n}", default=None) for n in p.names}
    traces: dict[str, Trace] = {}
    saved = wsgi.loop_first
    wsgi.loop_first = lambda app, route: loop_first  # type: ignore[assignment]
    try:
        with TestClient(pipeline_app(p, cvars, traces), protocol="wsgi") as client:
            inflight = InFlight(client)
            plan = [
                (f"{seed}.{i}", rng.choice(["", "", *p.failing]), rng.randint(0, 2))
                for i in range(32)
            ]
            for token, _, _ in plan:
                traces[token] = []

            def job(token: str, fail: str, yields: int) -> tuple[str, str, int, bytes]:
                params = {"t": token, "fail": fail, "y": yields}
                status, body = inflight.request("GET", "/", params=params)
                return token, fail, status, body

            jobs = [lambda a=args: job(*a) for args in plan]  # type: ignore[misc]
            requests = run_concurrently(jobs, 4, inflight.abort)
    finally:
        wsgi.loop_first = saved
    return p, PipelineRun(p, requests, traces)


@pytest.mark.parametrize("seed", range(10))
def test_a_pipeline_driven_from_the_loop_runs_as_one_driven_from_the_thread(seed: int) -> None:
    # under WSGI a route of async steps mostly runs its whole pipeline on the
    # shared loop (its def steps sent back to the server's thread) instead of
    # hopping once per async step: the same requests answer alike, run the same
    # steps in the same order, and every step sees exactly what it saw the
    # other way (what its own request's earlier steps set, nothing else)
    p, from_loop = run_loop_first_case(seed, True)
    _, from_thread = run_loop_first_case(seed, False)
    assert from_loop.requests == from_thread.requests, p
    assert from_loop.traces == from_thread.traces, p
    for token, fail, _, _ in from_loop.requests:
        steps = [name for name, _ in from_loop.traces[token]]
        assert steps == p.order(fail), (p, fail)
        expected = expected_seen(steps, fail, token)
        assert [seen for _, seen in from_loop.traces[token]] == expected, (p, token, fail)


def expected_seen(order: list[str], fail: str, token: str) -> list[dict[str, str]]:
    """What each step of `order` should see: the values the earlier steps set."""
    return [{n: f"{n}@{token}" for n in order[:i] if n != fail} for i in range(len(order))]


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_pipeline_steps_run_in_order(
    make_client: MakeClient, seed: int, hop_way: str
) -> None:
    run = run_pipeline_case(make_client, seed)
    for token, fail, status, body in run.requests:
        expected = (418, json.dumps({"failed": fail}, separators=(",", ":")).encode())
        assert (status, body) == (expected if fail else (200, b"ok")), (run.pipeline, fail)
        steps = [name for name, _ in run.traces[token]]
        assert steps == run.pipeline.order(fail), (run.pipeline, fail)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_pipeline_steps_see_what_earlier_steps_set(
    make_client: MakeClient, seed: int, hop_way: str
) -> None:
    # every step, def or async, sees the values the earlier steps of its own
    # request set (API.md §7); values of other requests are the next test's concern
    run = run_pipeline_case(make_client, seed)
    for token, fail, _, _ in run.requests:
        trace = run.traces[token]
        expected = expected_seen([name for name, _ in trace], fail, token)
        for (name, seen), want in zip(trace, expected, strict=True):
            own = {n: v for n, v in seen.items() if v.endswith(f"@{token}")}
            assert own == want, (
                f"step {name!r} of request {token} (fail={fail!r}) saw {own}, expected {want}; "
                f"{run.pipeline}"
            )


@pytest.mark.parametrize("seed", SEEDS)
def test_random_pipeline_steps_see_nothing_of_other_requests(
    make_client: MakeClient, seed: int, hop_way: str
) -> None:
    # nothing a request sets is seen by another: not by a concurrent one, not by
    # the next one served by the same thread
    run = run_pipeline_case(make_client, seed)
    for token, fail, _, _ in run.requests:
        for name, seen in run.traces[token]:
            foreign = {n: v for n, v in seen.items() if not v.endswith(f"@{token}")}
            assert not foreign, (
                f"step {name!r} of request {token} (fail={fail!r}) saw other requests' "
                f"values {foreign}; {run.pipeline}"
            )


# --------------------------------------------------------------------------
# 2. Request bodies
# --------------------------------------------------------------------------

#: How a handler reads the body: in the handler, or in its streamed response's generator.
READ_IN_HANDLER = ("body", "json", "stream")
READ_IN_STREAM = ("gen-sync", "gen-async")


def body_app(hooks: Sequence[bool]) -> App:
    """Before-hooks (``async def`` where `hooks` says so) that read the body when the
    request's ``?read=`` names them, and ``/{how}/{def|async}`` routes that send back
    the body they read, each `how` of `READ_IN_HANDLER` and `READ_IN_STREAM`."""
    app = App()

    def hook(i: int, is_async: bool) -> Any:
        if is_async:

            async def read(request: Request) -> None:
                if str(i) in request.query_params.getall("read"):
                    await request.body()

            return read

        def sync_read(request: Request) -> None:
            if str(i) in request.query_params.getall("read"):
                request.body()

        return sync_read

    for i, is_async in enumerate(hooks):
        app.before_request(hook(i, is_async))

    def streamed(request: Request, how: str) -> StreamingResponse:
        if how == "gen-sync":

            def chunks() -> Iterator[bytes]:
                yield from request.stream()  # read while the response streams

            return StreamingResponse(chunks(), media_type="application/octet-stream")

        async def async_chunks() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                yield chunk

        return StreamingResponse(async_chunks(), media_type="application/octet-stream")

    def route(how: str) -> None:
        @app.post(f"/{how}/def", name=f"{how}-def")
        def sync_echo(request: Request) -> Any:
            if how == "body":
                return request.body()
            if how == "json":
                return request.json()
            if how == "stream":
                return b"".join(request.stream())
            return streamed(request, how)

        @app.post(f"/{how}/async", name=f"{how}-async")
        async def echo(request: Request) -> Any:
            if how == "body":
                return await request.body()
            if how == "json":
                return await request.json()
            if how == "stream":
                return b"".join([chunk async for chunk in request.stream()])
            return streamed(request, how)

    for how in READ_IN_HANDLER + READ_IN_STREAM:
        route(how)
    return app


def run_body_case(make_client: MakeClient, seed: int, ways: Sequence[str]) -> None:
    """12 random bodies, sent from 3 threads to the app of `seed`, read one of `ways`."""
    rng = random.Random(seed)
    hooks = [rng.random() < 0.5 for _ in range(rng.randint(0, 2))]
    inflight = InFlight(make_client(body_app(hooks)))
    cases = []
    for _ in range(12):
        how = rng.choice(ways)
        size = random_size(rng)
        if how == "json":
            payload = {"data": rng.randbytes(size // 2).hex(), "n": size}
            data = json.dumps(payload, separators=(",", ":")).encode()
        else:
            data = rng.randbytes(size)
        chunked = rng.random() < 0.5
        pieces = split(rng, data)
        read = [str(i) for i in range(len(hooks)) if rng.random() < 0.5]
        url = f"/{how}/{rng.choice(['def', 'async'])}"
        cases.append((url, data, pieces if chunked else None, read))

    def job(url: str, data: bytes, pieces: list[bytes] | None, read: list[str]) -> bytes:
        content: Any = data if pieces is None else iter(pieces)  # an iterator: sent chunked
        status, echoed = inflight.request(
            "POST",
            url,
            params={"read": read},
            content=content,
            headers={"content-type": "application/json" if "json" in url else "x/y"},
        )
        assert status == 200, (url, len(data), status, echoed[:200])
        return echoed

    jobs = [lambda c=case: job(*c) for case in cases]  # type: ignore[misc]
    labels = [
        f"{url} of {len(data)} bytes {'chunked' if pieces else 'with Content-Length'}, "
        f"hooks {hooks} reading: {read}"
        for url, data, pieces, read in cases
    ]
    results = run_concurrently(jobs, 3, inflight.abort, labels)
    for (url, data, pieces, read), echoed in zip(cases, results, strict=True):
        if "json" in url:
            assert json.loads(echoed) == json.loads(data), url
            continue
        sent = "chunked" if pieces is not None else "with Content-Length"
        assert len(echoed) == len(data), (
            f"{url} (hooks {hooks}, read by {read}): {len(data)} bytes sent {sent}, "
            f"{len(echoed)} came back"
        )
        assert echoed == data, url


@pytest.mark.parametrize("seed", range(8))
def test_random_bodies_read_by_the_handler_arrive_whole(make_client: MakeClient, seed: int) -> None:
    run_body_case(make_client, seed, READ_IN_HANDLER)


@pytest.mark.parametrize("seed", range(8))
def test_random_bodies_read_while_the_response_streams_arrive_whole(
    make_client: MakeClient, seed: int
) -> None:
    # the echo/transform endpoint: a StreamingResponse whose generator reads
    # request.stream() (sync and async generators, def and async handlers)
    run_body_case(make_client, seed, READ_IN_STREAM)


#: The app a real uvicorn serves in the next test (``uvicorn tests.test_stress:app.asgi``).
app = body_app(())


class LockstepClient:
    """An HTTP/1.1 client (h11 over a socket) that sends a chunked body piece by piece,
    each piece only once the echo of everything before it has come back: the body
    arrives in several pieces, with no sleep, and a lost piece shows as a missing echo."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.echoed = bytearray()
        self.ended = False

    def _send(self, event: Any) -> None:
        self.sock.sendall(self.conn.send(event) or b"")

    def _receive_until(self, size: int) -> None:
        """Read the response until its head and `size` bytes of body, or its end, have come."""
        while (not self.status or len(self.echoed) < size) and not self.ended:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    self.conn.receive_data(self.sock.recv(65536))
                except TimeoutError:
                    raise AssertionError(
                        f"{len(self.echoed)} bytes echoed, {size} expected: nothing more "
                        f"for {DEADLINE} s"
                    ) from None
            elif isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.echoed += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self.ended = True

    def echo(self, path: str, pieces: Sequence[bytes]) -> bytes:
        self._send(
            h11.Request(
                method="POST",
                target=path,
                headers=[("host", "stress"), ("transfer-encoding", "chunked")],
            )
        )
        sent = 0
        try:
            # microweb starts a streamed response before its generator runs: the
            # body then arrives while the response streams, the case where a
            # listener for a disconnect could take body chunks meant for the app
            self._receive_until(0)
            for piece in pieces:
                self._send(h11.Data(data=piece))
                sent += len(piece)
                self._receive_until(sent)
            self._send(h11.EndOfMessage())
            self._receive_until(sent + 1)  # to the end of the response
        finally:
            self.sock.close()
        assert self.status == 200
        return bytes(self.echoed)


@pytest.fixture(scope="module")
def uvicorn_url() -> Iterator[str]:
    with serve("uvicorn", "tests.test_stress") as server:
        yield server.url


@pytest.mark.servers
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("how", READ_IN_STREAM)
def test_a_body_streamed_back_by_uvicorn_arrives_whole(
    uvicorn_url: str, how: str, seed: int
) -> None:
    rng = random.Random(seed)
    pieces = split(rng, rng.randbytes(rng.randint(1, 200 * KIB)), largest=40 * KIB)
    path = f"/{how}/{rng.choice(['def', 'async'])}"
    echoed = LockstepClient(uvicorn_url).echo(path, pieces)
    assert echoed == b"".join(pieces), path


async def lockstep_asgi(asgi: Any, path: str, pieces: Sequence[bytes]) -> bytes:
    """`LockstepClient`, straight to an ASGI app whose ``receive`` is a queue (as in
    hypercorn or daphne, where whichever ``receive()`` came first gets the message)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    echoed = bytearray()
    changed = asyncio.Event()
    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        echoed.extend(message.get("body", b""))
        changed.set()

    async def until(size: int) -> None:
        while not status or len(echoed) < size:
            try:
                await asyncio.wait_for(changed.wait(), DEADLINE)
            except TimeoutError:
                raise AssertionError(
                    f"{len(echoed)} bytes echoed, {size} expected: nothing more for {DEADLINE} s"
                ) from None
            changed.clear()

    scope = raw.scope("POST", path, headers=[("host", "stress"), ("transfer-encoding", "chunked")])
    task = asyncio.ensure_future(asgi(scope, inbox.get, send))
    try:
        sent = 0
        await until(0)  # the response has started (see LockstepClient.echo)
        for piece in pieces:
            inbox.put_nowait({"type": "http.request", "body": piece, "more_body": True})
            sent += len(piece)
            await until(sent)
        inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        await asyncio.wait_for(asyncio.shield(task), DEADLINE)
    finally:
        inbox.put_nowait({"type": "http.disconnect"})
        if not task.done():
            task.cancel()
        await asyncio.wait({task}, timeout=DEADLINE)
    assert status == [200]
    return bytes(echoed)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("how", READ_IN_STREAM)
def test_a_body_streamed_back_through_a_queue_receive_arrives_whole(how: str, seed: int) -> None:
    # ASGI only: the same lockstep echo, with a receive() that hands each message to
    # whichever caller asked first
    rng = random.Random(seed)
    pieces = split(rng, rng.randbytes(rng.randint(1, 200 * KIB)), largest=40 * KIB)
    path = f"/{how}/{rng.choice(['def', 'async'])}"
    # in a thread of its own: an app that never ends its task would hang asyncio.run
    loop_thread = ServerThread()
    try:
        echoed = loop_thread.call(
            lambda: asyncio.run(lockstep_asgi(body_app(()).asgi, path, pieces))
        )
    finally:
        loop_thread.stop()
    assert echoed == b"".join(pieces), path


# --------------------------------------------------------------------------
# 3. A body the app reads slowly, or never, while its response streams (ASGI)
# --------------------------------------------------------------------------


def streaming_scope(path: str) -> dict[str, Any]:
    return raw.scope("POST", path, headers=[("transfer-encoding", "chunked")])


async def post_messages(app: App, path: str, messages: list[dict[str, Any]]) -> None:
    """A chunked POST to `path` that receives `messages`, then waits (the client
    stays); what the app sends is dropped. Fails if the app does not end in time."""
    messages = list(messages)

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        pass

    await asyncio.wait_for(app.asgi(streaming_scope(path), receive, send), DEADLINE)


def test_an_endless_stream_stops_when_its_client_leaves_with_its_body_unread() -> None:
    # however much body the app leaves unread, a disconnect is still heard: an
    # endless stream (SSE, a live feed) must not go on for nobody (uvicorn drops
    # what is sent after a disconnect without a word)
    app = App()
    closed: list[bool] = []
    ticks = [0]

    @app.post("/feed")
    async def feed(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    ticks[0] += 1
                    yield b"tick\n"
                    await asyncio.sleep(0)
            finally:
                closed.append(True)

        return StreamingResponse(chunks(), media_type="text/plain")

    messages = [{"type": "http.request", "body": b"x" * 64 * KIB, "more_body": True}] * 40
    messages.append({"type": "http.disconnect"})  # 2.5 MiB unread, then the client leaves
    asyncio.run(post_messages(app, "/feed", messages))
    assert closed == [True]


def test_a_slow_reader_gets_every_chunk_and_a_body_over_the_limit_is_413() -> None:
    # what the app has not read yet is kept, up to max_body_size (as request.body()
    # would keep it), in order; past that, reading raises 413, never a lost chunk
    piece = 64 * KIB
    app = App(max_body_size=1024 * KIB)
    results: list[str] = []

    @app.post("/slow")
    async def slow(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"started"
            for _ in range(200):  # a slow reader: the body arrives first
                await asyncio.sleep(0)
            n = 0
            try:
                async for chunk in request.stream():
                    assert chunk == bytes([n // piece % 251]) * len(chunk)
                    n += len(chunk)
                results.append(f"read {n}")
            except HTTPException as exc:
                results.append(f"{exc.status_code} after {n}")
            yield b"end"

        return StreamingResponse(chunks(), media_type="text/plain")

    def body(total: int) -> list[dict[str, Any]]:
        messages = [
            {"type": "http.request", "body": bytes([k % 251]) * piece, "more_body": True}
            for k in range(total // piece)
        ]
        return [*messages, {"type": "http.request", "body": b"", "more_body": False}]

    asyncio.run(post_messages(app, "/slow", body(1024 * KIB)))  # at the limit: all, in order
    asyncio.run(post_messages(app, "/slow", body(2048 * KIB)))  # over it: 413 once the rest is read
    assert results == [f"read {1024 * KIB}", f"413 after {1024 * KIB}"]
