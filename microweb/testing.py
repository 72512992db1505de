"""`TestClient`: call an app in-process through its real WSGI or ASGI entry point.

It is an ``httpx.Client`` with transports of its own: the WSGI one calls
``app.wsgi`` (inside ``wsgiref.validate.validator``) with an environ built as
servers build theirs; the ASGI one runs ``app.asgi`` on an event loop in a
background thread, with lifespan, streamed responses and WebSockets.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes
from wsgiref.validate import validator

import anyio
import anyio.from_thread
import httpx

from .exceptions import WebSocketDisconnect

if TYPE_CHECKING:
    from .applications import App

__all__ = ["TestClient", "WebSocketDenied", "WebSocketTestSession"]

#: Seconds a WebSocket receive waits before failing the test.
DEFAULT_TIMEOUT = 10.0


class WebSocketDenied(Exception):
    """The app refused a WebSocket handshake (`status` is what a client sees)."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        self.status = status
        self.body = body
        super().__init__(f"WebSocket handshake refused with {status}")


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
            "SCRIPT_NAME": self.root_path,
            "PATH_INFO": path_bytes.decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": self.root_path + raw_path,
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


class _ASGIStream(httpx.SyncByteStream):
    def __init__(self, messages: queue.Queue[Any], done: threading.Event) -> None:
        self._messages = messages
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        while True:
            message = self._messages.get()
            if isinstance(message, BaseException):
                raise message
            if message is None:  # the app returned: a cut-short body, as a server shows it
                raise httpx.RemoteProtocolError("the app ended the response before its body")
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    return

    def close(self) -> None:
        self._done.set()


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
            "raw_path": self.root_path.encode() + target,
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


# --------------------------------------------------------------------------
# WebSockets
# --------------------------------------------------------------------------


class WebSocketTestSession:
    """A WebSocket connection to the app, used from a (sync) test."""

    def __init__(self, client: TestClient, scope: dict[str, Any]) -> None:
        self._asgi = client.app.asgi
        self._portal = client._portal()
        self._scope = scope
        self._to_app: queue.Queue[dict[str, Any]] = queue.Queue()
        self._from_app: queue.Queue[Any] = queue.Queue()
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self._closed = False

    def __enter__(self) -> WebSocketTestSession:
        asgi = self._asgi
        to_app, from_app = self._to_app, self._from_app

        async def receive() -> dict[str, Any]:
            while True:
                try:
                    return to_app.get_nowait()
                except queue.Empty:
                    await anyio.sleep(0.005)

        async def send(message: dict[str, Any]) -> None:
            from_app.put(message)

        async def run() -> None:
            try:
                await asgi(self._scope, receive, send)
            except BaseException as exc:
                from_app.put(exc)
            finally:
                from_app.put(None)

        self._future = self._portal.start_task_soon(run)
        to_app.put({"type": "websocket.connect"})
        message = self._next(DEFAULT_TIMEOUT)
        if message["type"] == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.extra_headers = list(message.get("headers") or [])
            return self
        if message["type"] == "websocket.close":
            raise WebSocketDenied(403)
        if message["type"] == "websocket.http.response.start":
            body = b""
            while True:
                more = self._next(DEFAULT_TIMEOUT)
                body += more.get("body", b"")
                if not more.get("more_body", False):
                    break
            raise WebSocketDenied(message["status"], body)
        raise RuntimeError(f"unexpected message {message!r}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            message = self._from_app.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the app sent nothing within {timeout} s") from None
        if isinstance(message, BaseException):
            raise message
        if message is None:
            raise WebSocketDisconnect(1006)
        return message  # type: ignore[no-any-return]

    def receive(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        message = self._next(timeout)
        if message["type"] == "websocket.close":
            self._closed = True
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        return message

    def receive_text(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        message = self.receive(timeout)
        if message.get("text") is None:
            raise TypeError("expected a text message")
        return message["text"]  # type: ignore[no-any-return]

    def receive_bytes(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        message = self.receive(timeout)
        if message.get("bytes") is None:
            raise TypeError("expected a binary message")
        return message["bytes"]  # type: ignore[no-any-return]

    def receive_json(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        message = self.receive(timeout)
        text = message.get("text")
        return json.loads(text if text is not None else message["bytes"])

    def send(self, message: dict[str, Any]) -> None:
        self._to_app.put(message)

    def send_text(self, data: str) -> None:
        self.send({"type": "websocket.receive", "text": data})

    def send_bytes(self, data: bytes) -> None:
        self.send({"type": "websocket.receive", "bytes": data})

    def send_json(self, data: Any) -> None:
        self.send_text(json.dumps(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._closed:
            self._closed = True
            self._to_app.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        with contextlib.suppress(Exception):
            self._future.result(timeout=DEFAULT_TIMEOUT)


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


class TestClient(httpx.Client):
    """An httpx client bound to `app` through ``app.wsgi`` or ``app.asgi``.

    Startup runs before the first request (or on ``with``); shutdown on
    `close()` or when the ``with`` block ends. Redirects are not followed
    unless ``follow_redirects=True``, as in httpx. With `root_path`, the app
    is served as if mounted there by a proxy that strips the prefix (as
    ``uvicorn --root-path``): request paths without it, the app sees
    ``root_path`` (``SCRIPT_NAME`` under WSGI).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        protocol: str = "asgi",
        *,
        base_url: str = "http://testserver",
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 50000),
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        if protocol not in ("wsgi", "asgi"):
            raise ValueError('protocol must be "wsgi" or "asgi"')
        self.app = app
        self.protocol = protocol
        self.root_path = root_path
        self._portal_cm: Any = None
        self._portal_obj: anyio.from_thread.BlockingPortal | None = None
        self._lifespan: dict[str, Any] | None = None
        self._started = False
        self._lock = threading.RLock()
        transport: httpx.BaseTransport
        if protocol == "wsgi":
            transport = WSGITransport(app.wsgi, root_path, client, validate)
        else:
            transport = ASGITransport(self, root_path, client)
        super().__init__(transport=transport, base_url=base_url, **kwargs)

    # ---------------------------------------------------------------- loop
    def _portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal_obj is None:
                self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
                self._portal_obj = self._portal_cm.__enter__()
            return self._portal_obj

    # ----------------------------------------------------------- lifespan
    def startup(self) -> None:
        """Run the app's startup now (it runs by itself before the first request).

        Thread-safe: requests sent from several threads at once wait for it.
        """
        if self._started:
            return
        with self._lock:
            if not self._started:
                self._startup()
                self._started = True

    def _startup(self) -> None:
        if self.protocol == "wsgi":
            failure = self.app.wsgi.startup()
            if failure is not None:
                raise RuntimeError("application startup failed (see the 'microweb' log)")
            return
        portal = self._portal()
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        outbox: queue.Queue[Any] = queue.Queue()
        asgi = self.app.asgi

        async def receive() -> dict[str, Any]:
            while True:
                try:
                    return inbox.get_nowait()
                except queue.Empty:
                    await anyio.sleep(0.005)

        async def send(message: dict[str, Any]) -> None:
            outbox.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        future = portal.start_task_soon(asgi, scope, receive, send)
        inbox.put({"type": "lifespan.startup"})
        message = outbox.get(timeout=60)
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application startup failed: {message.get('message', '')}")
        self._lifespan = {"inbox": inbox, "outbox": outbox, "future": future}

    def shutdown(self) -> None:
        """Run the app's shutdown (done by `close()`)."""
        if not self._started:
            return
        self._started = False
        if self.protocol == "wsgi":
            self.app.wsgi.shutdown()
            return
        if self._lifespan is not None:
            self._lifespan["inbox"].put({"type": "lifespan.shutdown"})
            message = self._lifespan["outbox"].get(timeout=60)
            self._lifespan["future"].result(timeout=60)
            self._lifespan = None
            if message["type"] != "lifespan.shutdown.complete":
                raise RuntimeError(f"application shutdown failed: {message.get('message', '')}")

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        self.startup()
        return super().request(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> httpx.Response:
        self.startup()
        return super().send(*args, **kwargs)

    def __enter__(self) -> TestClient:
        super().__enter__()
        self.startup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.shutdown()
        finally:
            if self._portal_cm is not None:
                cm, self._portal_cm, self._portal_obj = self._portal_cm, None, None
                cm.__exit__(None, None, None)
            super().close()

    # ---------------------------------------------------------- websockets
    def websocket_connect(
        self,
        path: str,
        subprotocols: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> WebSocketTestSession:
        """Open a WebSocket to `path` (ASGI only); use it as a context manager."""
        if self.protocol != "asgi":
            raise RuntimeError(
                "WebSockets need the ASGI entry point: use TestClient(app, protocol='asgi')"
            )
        self.startup()
        url = self.base_url.join(path)
        raw = url.raw_path
        target, _, query = raw.partition(b"?")
        hdrs = [(b"host", (url.host or "testserver").encode())]
        for k, v in (headers or {}).items():
            hdrs.append((k.lower().encode("latin-1"), v.encode("latin-1")))
        if subprotocols:
            hdrs.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": self.root_path + unquote_to_bytes(target).decode("utf-8", "replace"),
            "raw_path": self.root_path.encode() + target,
            "root_path": self.root_path,
            "query_string": query,
            "headers": hdrs,
            "client": ("127.0.0.1", 50000),
            "server": (url.host, url.port or 80),
            "subprotocols": list(subprotocols or []),
            "state": {},
            "extensions": {"websocket.http.response": {}},
        }
        return WebSocketTestSession(self, scope)
