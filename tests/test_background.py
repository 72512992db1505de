"""Background tasks: run after the response was sent, under both protocols and real servers.

A task that must run only after the client has the body waits for a
`threading.Event` that the test sets once it holds the whole body (with a
deadline: a task run too early times out and says so). Nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microweb import (
    App,
    BackgroundTask,
    BackgroundTasks,
    EventSourceResponse,
    FileResponse,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    StreamingResponse,
)
from microweb._wsgi_bodies import StreamAborted
from tests.apps.background_app import CHUNKS
from tests.conftest import MakeClient
from tests.raw import scope
from tests.servers import SERVERS, Server, serve

#: How long a task waits for the test to release it.
DEADLINE = 10.0

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
handler_note: contextvars.ContextVar[str] = contextvars.ContextVar("handler_note", default="-")


class Gate:
    """A task that waits until the test has the body, and records what happened."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()
        self.outcome = "not run"

    def wait(self) -> None:
        self.outcome = "released" if self.release.wait(DEADLINE) else "ran before the body"
        self.finished.set()

    async def wait_async(self) -> None:
        released = await asyncio.to_thread(self.release.wait, DEADLINE)
        self.outcome = "released" if released else "ran before the body"
        self.finished.set()


def _responses(tmp_path: Path) -> dict[str, Callable[[BackgroundTask], Response]]:
    """Every response class, each carrying `background`; the body each sends."""
    path = tmp_path / "file.txt"
    path.write_bytes(b"file body")

    def sync_chunks() -> Iterator[bytes]:
        yield from CHUNKS

    async def async_chunks() -> AsyncIterator[bytes]:
        for chunk in CHUNKS:
            yield chunk

    return {
        "plain": lambda bg: Response(b"body", media_type="text/plain", background=bg),
        "json": lambda bg: JSONResponse({"a": 1}, background=bg),
        "text": lambda bg: PlainTextResponse("text", background=bg),
        "redirect": lambda bg: RedirectResponse("/elsewhere", background=bg),
        "stream-sync": lambda bg: StreamingResponse(sync_chunks(), background=bg),
        "stream-async": lambda bg: StreamingResponse(async_chunks(), background=bg),
        "file": lambda bg: FileResponse(path, background=bg),
        "sse": lambda bg: EventSourceResponse(iter(["one", "two"]), ping=None, background=bg),
    }


BODIES = {
    "plain": b"body",
    "json": b'{"a":1}',
    "text": b"text",
    "redirect": b"",
    "stream-sync": b"".join(CHUNKS),
    "stream-async": b"".join(CHUNKS),
    "file": b"file body",
    "sse": b"data: one\n\ndata: two\n\n",
}


@pytest.mark.parametrize("task_kind", ["def", "async"])
@pytest.mark.parametrize("kind", sorted(BODIES))
def test_task_runs_once_the_client_has_the_whole_body(
    make_client: MakeClient, tmp_path: Path, kind: str, task_kind: str
) -> None:
    make = _responses(tmp_path)[kind]
    gate = Gate()
    app = App()

    @app.get("/")
    def index() -> Response:
        fn = gate.wait_async if task_kind == "async" else gate.wait
        return make(BackgroundTask(fn))

    client = make_client(app)
    with client.stream("GET", "/") as response:
        assert response.status_code == (307 if kind == "redirect" else 200)
        received = b""
        chunks = response.iter_bytes()
        while len(received) < len(BODIES[kind]):
            received += next(chunks)
        assert received == BODIES[kind]
        assert not gate.finished.is_set()
        gate.release.set()
    assert gate.finished.wait(DEADLINE)
    assert gate.outcome == "released"


def test_a_def_task_that_returns_a_coroutine_runs_it(make_client: MakeClient) -> None:
    # add_task(lambda: send_mail(...)) with an async send_mail: never lost silently
    ran: list[str] = []

    async def send_mail(to: str) -> None:
        await asyncio.sleep(0)
        ran.append(to)

    app = App()

    @app.get("/")
    def index() -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(lambda: send_mail("ada")))

    assert make_client(app).get("/").text == "ok"
    assert ran == ["ada"]


def test_tasks_run_in_order_with_their_arguments(make_client: MakeClient) -> None:
    ran: list[Any] = []

    def record(*args: Any, **kwargs: Any) -> None:
        ran.append(("def", args, kwargs))

    async def record_async(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        ran.append(("async", args, kwargs))

    app = App()

    @app.get("/")
    async def index() -> Response:
        tasks = BackgroundTasks([BackgroundTask(record, 0)])
        tasks.add_task(record, 1, key="a")
        tasks.add_task(record_async, 2, key="b")
        tasks.add_task(record, 3)
        tasks.add_task(record_async, func="named func")  # not taken for BackgroundTask's own
        return PlainTextResponse("ok", background=tasks)

    response = make_client(app).get("/")
    assert response.text == "ok"
    assert ran == [
        ("def", (0,), {}),
        ("def", (1,), {"key": "a"}),
        ("async", (2,), {"key": "b"}),
        ("def", (3,), {}),
        ("async", (), {"func": "named func"}),
    ]


def test_def_tasks_run_off_the_loop_and_async_ones_on_it(make_client: MakeClient) -> None:
    seen: dict[str, bool] = {}

    def where_sync() -> None:
        try:
            asyncio.get_running_loop()
            seen["def on a loop"] = True
        except RuntimeError:
            seen["def on a loop"] = False

    async def where_async() -> None:
        seen["async on a loop"] = asyncio.get_running_loop().is_running()

    app = App()

    @app.get("/")
    async def index() -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(where_sync)
        tasks.add_task(where_async)
        return Response(b"", background=tasks)

    make_client(app).get("/")
    assert seen == {"def on a loop": False, "async on a loop": True}


@pytest.mark.parametrize("failing", ["def", "async"])
def test_a_failing_task_is_logged_and_the_next_one_still_runs(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, failing: str
) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise ValueError("boom in the background")

    async def boom_async() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom in the background")

    app = App()

    @app.get("/")
    def index() -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(boom_async if failing == "async" else boom)
        tasks.add_task(ran.append, "after")
        return JSONResponse({"sent": True}, background=tasks)

    with caplog.at_level(logging.ERROR, logger="microweb"):
        response = make_client(app).get("/")
    assert response.status_code == 200
    assert response.json() == {"sent": True}
    assert ran == ["after"]
    records = [r for r in caplog.records if r.name == "microweb" and r.exc_info]
    assert len(records) == 1
    assert "background task" in records[0].getMessage()
    assert "boom" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


@pytest.mark.parametrize("handler_kind", ["def", "async"])
def test_tasks_see_the_request_context(make_client: MakeClient, handler_kind: str) -> None:
    seen: list[tuple[str, str, str]] = []

    def look(kind: str) -> None:
        seen.append((kind, request_id.get(), handler_note.get()))

    async def look_async(kind: str) -> None:
        seen.append((kind, request_id.get(), handler_note.get()))

    app = App()

    @app.before_request
    def set_id(request: Request) -> None:
        request_id.set(request.headers["x-id"])

    def respond() -> Response:
        handler_note.set("set by the handler")
        tasks = BackgroundTasks()
        tasks.add_task(look, "def")
        tasks.add_task(look_async, "async")
        return Response(b"", background=tasks)

    if handler_kind == "async":

        async def index_async() -> Response:
            return respond()

        app.get("/")(index_async)
    else:
        app.get("/")(respond)

    client = make_client(app)
    client.get("/", headers={"x-id": "first"})
    client.get("/", headers={"x-id": "second"})
    assert seen == [
        ("def", "first", "set by the handler"),
        ("async", "first", "set by the handler"),
        ("def", "second", "set by the handler"),
        ("async", "second", "set by the handler"),
    ]
    assert request_id.get() == "-"  # nothing leaks into the test's own context


def test_background_set_after_construction(make_client: MakeClient) -> None:
    ran: list[str] = []
    app = App()

    @app.after_request
    def audit(request: Request, response: Response) -> None:
        response.background = BackgroundTask(ran.append, f"{request.path} {response.status}")

    @app.get("/")
    def index() -> str:
        return "hello"

    client = make_client(app)
    assert client.get("/").text == "hello"
    assert client.get("/missing").status_code == 404  # an error response, too
    assert ran == ["/ 200", "/missing 404"]


def test_head_204_304_and_error_responses_run_their_tasks(
    make_client: MakeClient, tmp_path: Path
) -> None:
    ran: list[str] = []
    path = tmp_path / "f.txt"
    path.write_text("x")
    app = App()

    @app.get("/file")
    def file() -> FileResponse:
        return FileResponse(path, background=BackgroundTask(ran.append, "file"))

    @app.delete("/item")
    def delete() -> Response:
        return Response(status=204, background=BackgroundTask(ran.append, "204"))

    @app.exception_handler(HTTPException)
    def handled(request: Request, exc: HTTPException) -> Response:
        return JSONResponse(
            {"error": exc.status}, exc.status, background=BackgroundTask(ran.append, "error")
        )

    @app.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418)

    client = make_client(app)
    assert client.head("/file").content == b""
    etag = client.get("/file").headers["etag"]
    assert client.get("/file", headers={"if-none-match": etag}).status_code == 304
    assert client.delete("/item").status_code == 204
    assert client.get("/teapot").json() == {"error": 418}
    assert ran == ["file", "file", "file", "204", "error"]


def test_tasks_run_when_the_client_leaves_mid_stream(make_client: MakeClient) -> None:
    cleaned = threading.Event()
    app = App()

    @app.get("/endless")
    def endless() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            while True:
                yield b"x" * 1024

        return StreamingResponse(chunks(), background=BackgroundTask(cleaned.set))

    client = make_client(app)
    with client.stream("GET", "/endless") as response:
        assert next(response.iter_bytes())
    # (the client does not wait for an app whose response it left half-way)
    assert cleaned.wait(DEADLINE)


def test_tasks_run_when_the_stream_fails(
    make_client: MakeClient, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    app = App()

    @app.get("/broken")
    def broken() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield b"a"
            raise RuntimeError("the stream broke")

        return StreamingResponse(chunks(), background=BackgroundTask(ran.append, "cleanup"))

    client = make_client(app)
    # cut short, as a server shows it (a WSGI server gets StreamAborted)
    expected = StreamAborted if protocol == "wsgi" else httpx.RemoteProtocolError
    with (
        caplog.at_level(logging.ERROR, logger="microweb"),
        pytest.raises(expected),
        client.stream("GET", "/broken") as response,
    ):
        response.read()
    assert ran == ["cleanup"]
    assert any("the stream broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_wrong_background_is_refused_when_given(make_client: MakeClient) -> None:
    def send_mail(to: str) -> None: ...

    with pytest.raises(TypeError, match=r"BackgroundTask\(fn, \*args\)"):
        BackgroundTask(send_mail("a@example.com"))  # type: ignore[func-returns-value]
    with pytest.raises(TypeError, match="background=BackgroundTask"):
        Response(b"", background=send_mail)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_task"):
        BackgroundTasks([send_mail])  # type: ignore[list-item]


def test_a_wrong_background_set_later_is_logged(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.get("/")
    def index() -> Response:
        response = PlainTextResponse("still sent")
        response.background = print  # type: ignore[assignment]
        return response

    with caplog.at_level(logging.ERROR, logger="microweb"):
        response = make_client(app).get("/")
    assert response.text == "still sent"
    assert any(
        "BackgroundTask(fn, *args, **kwargs)" in r.getMessage()
        for r in caplog.records
        if r.name == "microweb"
    )


def test_a_response_without_tasks_is_still_a_plain_list_under_wsgi() -> None:
    """The zero-cost path: nothing wraps a body that has no background work."""
    app = App()

    @app.get("/")
    def index() -> str:
        return "hi"

    @app.get("/bg")
    def bg() -> Response:
        return Response(b"hi", background=BackgroundTask(print, end=""))

    def call(path: str) -> Any:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "x"}
        environ.update({"SERVER_PORT": "80", "wsgi.url_scheme": "http"})
        return app.wsgi(environ, lambda status, headers, exc_info=None: None)

    assert type(call("/")) is list
    body = call("/bg")
    assert list(body) == [b"hi"]
    body.close()


# --------------------------------------------------------------------------
# ASGI: a send that fails, a request the server cancels
# --------------------------------------------------------------------------


def test_asgi_tasks_run_when_sending_fails() -> None:
    # (uvicorn's send after a disconnect returns quietly; another server may raise)
    ran: list[str] = []
    app = App()

    @app.get("/")
    def index() -> Response:
        return PlainTextResponse("lost", background=BackgroundTask(ran.append, "cleanup"))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("the connection is gone")

    async def main() -> None:
        with pytest.raises(OSError, match="the connection is gone"):
            await app.asgi(scope(), receive, send)

    asyncio.run(main())
    assert ran == ["cleanup"]


def test_asgi_tasks_of_a_cancelled_request_are_reported_not_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []
    app = App()

    @app.get("/")
    async def index() -> Response:
        async def never_ends() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.Event().wait()

        return StreamingResponse(never_ends(), background=BackgroundTask(ran.append, "task"))

    async def main() -> None:
        sent = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()  # the client neither sends nor leaves
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message.get("body"):
                sent.set()

        request = asyncio.ensure_future(app.asgi(scope(), receive, send))
        await asyncio.wait_for(sent.wait(), DEADLINE)
        request.cancel()  # as a server that shuts down does
        with pytest.raises(asyncio.CancelledError):
            await request

    with caplog.at_level(logging.WARNING, logger="microweb"):
        asyncio.run(main())
    assert ran == []
    assert any("not run" in r.getMessage() for r in caplog.records if r.name == "microweb")


# --------------------------------------------------------------------------
# Real servers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(str(request.param), "tests.apps.background_app") as srv:
        # gunicorn listens before its worker has booted: wait for a first answer
        assert httpx.get(f"{srv.url}/ping", timeout=30).status_code == 200
        yield srv


def _state(server: Server, token: str, until: str) -> dict[str, Any]:
    # a new connection each time: under a WSGI server the connection that
    # carried a response is busy until that response's tasks are done
    response = httpx.get(f"{server.url}/state/{token}?until={until}", timeout=30)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.servers
@pytest.mark.parametrize(
    ("method", "body", "task"),
    [
        ("GET", "plain", "def"),
        ("GET", "plain", "async"),
        ("GET", "stream", "def"),
        ("GET", "stream", "async"),
        # no body to write: waitress sends even the headers only after close()
        ("HEAD", "plain", "def"),
        ("GET", "empty", "def"),
        ("GET", "redirect", "async"),
    ],
)
def test_real_server_sends_the_response_before_the_task_runs(
    server: Server, method: str, body: str, task: str
) -> None:
    token = uuid.uuid4().hex
    # the whole response (a chunked one to its end) arrives while the task waits
    # for the release that only this test sends, once it has the response
    url = f"{server.url}/work/{token}?body={body}&task={task}"
    response = httpx.request(method, url, timeout=10)
    expected = {"plain": 200, "stream": 200, "empty": 204, "redirect": 303}[body]
    assert response.status_code == expected
    if method == "GET" and expected == 200:
        assert response.content == b"".join(CHUNKS)
    else:
        assert response.content == b""
    assert _state(server, token, "started") == {"reached": True, "state": "waiting"}
    assert httpx.post(f"{server.url}/release/{token}", timeout=10).status_code == 200
    assert _state(server, token, "finished") == {"reached": True, "state": "released"}


@pytest.mark.servers
def test_real_server_runs_tasks_when_the_client_leaves(server: Server) -> None:
    token = uuid.uuid4().hex
    with httpx.stream("GET", f"{server.url}/endless/{token}", timeout=10) as response:
        assert response.status_code == 200
        assert next(response.iter_raw())
    # the connection is closed: the server stops the stream and runs the task
    assert _state(server, token, "finished") == {"reached": True, "state": "ran"}


@pytest.mark.servers
def test_real_server_logs_a_failing_task_and_runs_the_next(server: Server) -> None:
    token = uuid.uuid4().hex
    response = httpx.get(f"{server.url}/failing/{token}", timeout=10)
    assert response.status_code == 200
    assert response.text == "sent"
    assert _state(server, token, "finished") == {"reached": True, "state": "ran"}
    log = server.log()
    assert "ERROR:microweb:Exception in background task" in log
    assert f"RuntimeError: background task {token} failed on purpose" in log
