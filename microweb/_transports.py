"""The test client's transports: how an httpx request reaches `app.wsgi` or `app.asgi`.

The WSGI one calls ``app.wsgi`` (inside ``wsgiref.validate.validator``) with an
environ built as servers build theirs (the raw target in ``RAW_URI``); the
ASGI one runs ``app.asgi`` on the client's `LoopThread` and hands the
response over as it is sent, streamed.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import io
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes
from wsgiref.validate import validator

import anyio
import httpx

from ._parsers import quote_path

if TYPE_CHECKING:
    from .testing import TestClient

__all__ = ["ASGITransport", "LoopThread", "WSGITransport"]

#: Seconds a closed response waits for the ASGI app to return (its background tasks).
APP_RETURN_TIMEOUT = 60.0

# --------------------------------------------------------------------------
# WSGI
# --------------------------------------------------------------------------


class _WSGIStream(httpx.SyncByteStream):
    def __init__(self, result: Any) -> None:
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        yield from self._result

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class WSGITransport(httpx.BaseTransport):
    """Calls a WSGI app with an environ like a server's (raw target in RAW_URI)."""

    def __init__(
        self,
        wsgi_app: Any,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 50000),
        validate: bool = True,
    ) -> None:
        self.app = validator(wsgi_app) if validate else wsgi_app
        self.root_path = root_path
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        raw_path = url.raw_path.decode("ascii")
        target, _, query = raw_path.partition("?")
        path_bytes = unquote_to_bytes(target)
        chunked = "content-length" not in request.headers and request.method not in (
            "GET",
            "HEAD",
        )
        body = request.read()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            # as a server gives them: SCRIPT_NAME decoded (Latin-1 text of its
            # UTF-8 bytes, like PATH_INFO), the raw target percent-encoded
            "SCRIPT_NAME": self.root_path.encode("utf-8").decode("latin-1"),
            "PATH_INFO": path_bytes.decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": quote_path(self.root_path) + raw_path,
            "SERVER_NAME": url.host,
            "SERVER_PORT": str(url.port or (443 if url.scheme == "https" else 80)),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.client[0],
            "REMOTE_PORT": str(self.client[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if chunked:
            environ["wsgi.input_terminated"] = True
        for name, value in request.headers.multi_items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
                continue
            key = "HTTP_" + key
            environ[key] = f"{environ[key]}, {value}" if key in environ else value
        captured: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = headers
            return lambda data: None

        result = self.app(environ, start_response)
        it = iter(result)
        first: list[bytes] = []
        if "status" not in captured:  # start_response may wait for the first chunk
            with contextlib.suppress(StopIteration):
                first.append(next(it))

        def chained() -> Iterator[bytes]:
            yield from first
            yield from it

        stream = _WSGIStream(_Closing(chained(), result))
        return httpx.Response(
            captured["status"], headers=captured["headers"], stream=stream, request=request
        )


class _Closing:
    def __init__(self, it: Iterator[bytes], result: Any) -> None:
        self._it = it
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------
# ASGI
# --------------------------------------------------------------------------


#: Seconds each step of stopping a loop may take (the app's shutdown, then the
#: cancelled tasks' cleanup) before the loop stops anyway.
STOP_TIMEOUT = 10.0

_live: set[LoopThread] = set()  # loops whose thread runs: stopped at interpreter exit


class LoopThread:
    """An asyncio event loop in a daemon thread: where a TestClient runs ``app.asgi``.

    Lifecycle rules (a test client never keeps Python from exiting):

    - The loop runs until `stop` is called. Stopping first awaits
      `before_stop` (the client sets it to end the app's lifespan while the
      app is started), then cancels every task still running, each step
      bounded by `STOP_TIMEOUT`, then the thread ends.
    - ``stop()`` (from `TestClient.close`) waits for the thread, bounded.
      ``stop(wait=False)`` never blocks: it only asks the loop to stop, so it
      is safe where blocking is not (the loop's own thread).
    - At interpreter exit, every loop still running is stopped and waited for
      (bounded): an unclosed client's shutdown hooks run then, as a server's
      would, and as the WSGI adapter runs them at exit.
    - The thread is a daemon: a loop that does not stop in time is abandoned
      at exit, never waited for forever. In a forked child the thread does
      not exist (only the parent's copy of this object does): `stop` does
      nothing there.
    """

    def __init__(self) -> None:
        self.before_stop: Callable[[], Coroutine[Any, Any, Any]] | None = None
        self._pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._stopping = self.loop.create_future()
        self._thread = threading.Thread(target=self._run, name="microweb-test-loop", daemon=True)
        _live.add(self)
        _stop_all_at_exit_once()
        self._thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            # a main task that lives as long as the loop (anyio sees a root task)
            loop.run_until_complete(self._main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            _live.discard(self)
            loop.close()

    async def _main(self) -> None:
        await self._stopping
        end, self.before_stop = self.before_stop, None
        if end is not None:
            with contextlib.suppress(Exception):  # the app logs what its shutdown raised
                await asyncio.wait_for(end(), STOP_TIMEOUT)
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)

    def start_task_soon(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any
    ) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` as a task on the loop; its result in a `Future`."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop)

    def call(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, timeout: float | None = None
    ) -> Any:
        """Run ``fn(*args)`` on the loop and wait for its result (from another thread)."""
        return self.start_task_soon(fn, *args).result(timeout)

    def forked(self) -> bool:
        """True in a forked child, where this loop's thread does not exist."""
        return os.getpid() != self._pid

    def stop(self, wait: bool = True) -> None:
        """Stop the loop (see the class docstring); `wait` for its thread, bounded."""
        if os.getpid() != self._pid:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self.loop.call_soon_threadsafe(_resolve, self._stopping)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(3 * STOP_TIMEOUT)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _stop_all() -> None:
    loops = list(_live)
    for loop in loops:  # all at once, then wait for each
        loop.stop(wait=False)
    for loop in loops:
        loop.stop()


@functools.cache
def _stop_all_at_exit_once() -> None:
    atexit.register(_stop_all)


class _ASGIStream(httpx.SyncByteStream):
    def __init__(self, messages: queue.Queue[Any], done: threading.Event) -> None:
        self._messages = messages
        self._done = done
        self._complete = False  # the app sent the body's end
        self._returned = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            message = self._messages.get()
            if isinstance(message, BaseException):
                raise message
            if message is None:  # the app returned: a cut-short body, as a server shows it
                self._returned = True
                raise httpx.RemoteProtocolError("the app ended the response before its body")
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    self._complete = True
                    return

    def close(self) -> None:
        self._done.set()  # a client that leaves early: the app hears http.disconnect
        if self._complete:
            self._wait_for_return()

    def _wait_for_return(self) -> None:
        """Wait for the app to return after a whole response, as under WSGI (where
        close() runs them): the response's background tasks have run when the
        call that sent the request returns. (A client that left early does not
        wait: a stream may take a while to notice.)"""
        deadline = time.monotonic() + APP_RETURN_TIMEOUT
        while not self._returned:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"the app had not returned {APP_RETURN_TIMEOUT:g} s after sending its "
                    "response (a background task that does not end?)"
                ) from None
            self._returned = message is None


def _rechunk(stream: Any, size: int = 65536) -> Iterator[bytes]:  # a SyncByteStream
    """The request body in messages of at most `size` bytes, as a server sends them."""
    for chunk in stream:
        for i in range(0, len(chunk), size):
            yield chunk[i : i + size]


class ASGITransport(httpx.BaseTransport):
    """Runs an ASGI app on a loop in a background thread, streaming its answers."""

    def __init__(
        self,
        client: TestClient,
        root_path: str = "",
        addr: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> None:
        self._client = client
        self.root_path = root_path
        self.addr = addr

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        portal = self._client._portal()
        url = request.url
        raw_path = url.raw_path
        target, _, query = raw_path.partition(b"?")
        path = unquote_to_bytes(target).decode("utf-8", "replace")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": self.root_path + path,
            "raw_path": quote_path(self.root_path).encode("ascii") + target,
            "root_path": self.root_path,
            "query_string": query,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": self.addr,
            "server": (url.host, url.port or (443 if url.scheme == "https" else 80)),
            "state": {},
            "extensions": {},
        }
        messages: queue.Queue[Any] = queue.Queue()
        done = threading.Event()
        body_iter = _rechunk(request.stream)
        asgi = self._client.app.asgi

        async def receive() -> dict[str, Any]:
            chunk = next(body_iter, None)
            while chunk is not None and not chunk:
                chunk = next(body_iter, None)
            if chunk is not None:
                return {"type": "http.request", "body": chunk, "more_body": True}
            if not getattr(receive, "ended", False):
                receive.ended = True  # type: ignore[attr-defined]
                return {"type": "http.request", "body": b"", "more_body": False}
            while not done.is_set():
                await anyio.sleep(0.01)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.put(message)

        async def run() -> None:
            try:
                await asgi(scope, receive, send)
            except BaseException as exc:
                messages.put(exc)
                raise
            finally:
                messages.put(None)

        portal.start_task_soon(run)
        start = messages.get()
        if isinstance(start, BaseException):
            raise start
        if start is None or start["type"] != "http.response.start":
            raise RuntimeError(f"the app sent no response start (got {start!r})")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
        return httpx.Response(
            start["status"], headers=headers, stream=_ASGIStream(messages, done), request=request
        )
