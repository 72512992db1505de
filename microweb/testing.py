"""`TestClient`: call an app in-process through its real WSGI or ASGI entry point.

It is an ``httpx.Client`` with transports of its own (in `_transports`): the
WSGI one calls ``app.wsgi`` (inside ``wsgiref.validate.validator``) with an
environ built as servers build theirs; the ASGI one runs ``app.asgi`` on an
event loop in a background thread, with lifespan, streamed responses and
WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import anyio
import httpx

from ._parsers import quote_path
from ._transports import ASGITransport, LoopThread, WSGITransport
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
        """The app's next raw ASGI message; its close raises `WebSocketDisconnect`."""
        message = self._next(timeout)
        if message["type"] == "websocket.close":
            self._closed = True
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        return message

    def receive_text(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The app's next message, which must be text."""
        message = self.receive(timeout)
        if message.get("text") is None:
            raise TypeError("expected a text message")
        return message["text"]  # type: ignore[no-any-return]

    def receive_bytes(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The app's next message, which must be binary."""
        message = self.receive(timeout)
        if message.get("bytes") is None:
            raise TypeError("expected a binary message")
        return message["bytes"]  # type: ignore[no-any-return]

    def receive_json(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The app's next message parsed as JSON."""
        message = self.receive(timeout)
        text = message.get("text")
        return json.loads(text if text is not None else message["bytes"])

    def send(self, message: dict[str, Any]) -> None:
        """Send a raw ASGI message to the app."""
        self._to_app.put(message)

    def send_text(self, data: str) -> None:
        """Send `data` to the app as a text message."""
        self.send({"type": "websocket.receive", "text": data})

    def send_bytes(self, data: bytes) -> None:
        """Send `data` to the app as a binary message."""
        self.send({"type": "websocket.receive", "bytes": data})

    def send_json(self, data: Any) -> None:
        """Send `data` to the app as JSON in a text message."""
        self.send_text(json.dumps(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Disconnect with `code`, then wait for the app's handler to end (``with`` does this)."""
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
    `close()` or when the ``with`` block ends. A startup that fails raises
    `RuntimeError` (and, on ``with``, closes the client first). A client that
    is never closed never keeps Python from exiting: its shutdown runs at
    interpreter exit (under ASGI its event loop runs until then, even when the
    client is garbage-collected); see `LoopThread`. In a forked child, a copy
    of a client made in the parent cannot send requests (RuntimeError).

    Redirects are not followed unless ``follow_redirects=True``, as in httpx.
    With `root_path`, the app is served as if mounted there by a proxy that
    strips the prefix (as ``uvicorn --root-path``): request paths without it,
    the app sees ``root_path`` (``SCRIPT_NAME`` under WSGI).
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
        self._loop: LoopThread | None = None
        self._started = False
        self._lock = threading.RLock()
        transport: httpx.BaseTransport
        if protocol == "wsgi":
            transport = WSGITransport(app.wsgi, root_path, client, validate)
        else:
            transport = ASGITransport(self, root_path, client)
        super().__init__(transport=transport, base_url=base_url, **kwargs)

    # ---------------------------------------------------------------- loop
    def _portal(self) -> LoopThread:
        """The client's event loop (ASGI), started on first use; see `LoopThread`.

        A client dropped unclosed leaves its loop running until interpreter exit,
        where the app's shutdown runs: not when the collector happens to run,
        which could be in the middle of another client's test of the same app.
        """
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
            elif self._loop.forked():
                raise RuntimeError(
                    "this TestClient was made in the parent process, and its event loop "
                    "does not exist in a forked child: make a new TestClient in the child"
                )
            return self._loop

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
        loop = self._portal()
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
        future = loop.start_task_soon(asgi, scope, receive, send)
        inbox.put({"type": "lifespan.startup"})
        message = outbox.get(timeout=60)
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application startup failed: {message.get('message', '')}")

        async def end_lifespan() -> Any:  # on the loop; refers to no client (see _portal)
            inbox.put({"type": "lifespan.shutdown"})
            await asyncio.wrap_future(future)
            return outbox.get_nowait()

        loop.before_stop = end_lifespan

    def shutdown(self) -> None:
        """Run the app's shutdown (done by `close()`)."""
        if not self._started:
            return
        self._started = False
        if self.protocol == "wsgi":
            self.app.wsgi.shutdown()
            return
        loop = self._loop
        if loop is not None and loop.forked():
            return  # the parent's lifespan, not this process's to end
        end = loop.before_stop if loop is not None else None
        if loop is not None and end is not None:
            loop.before_stop = None
            message = loop.call(end, timeout=60)
            if message["type"] != "lifespan.shutdown.complete":
                raise RuntimeError(f"application shutdown failed: {message.get('message', '')}")

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        """Send a request, as `httpx.Client.request` does, after running startup if needed."""
        self.startup()
        return super().request(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> httpx.Response:
        """Send a built request, as `httpx.Client.send` does, after running startup if needed."""
        self.startup()
        return super().send(*args, **kwargs)

    def __enter__(self) -> TestClient:
        super().__enter__()
        try:
            self.startup()
        except BaseException:
            self.close()  # no __exit__ follows a failed __enter__
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Run the app's shutdown, then stop the client's event loop (ASGI); done
        on ``with`` exit."""
        try:
            self.shutdown()
        finally:
            loop, self._loop = self._loop, None
            if loop is not None:
                loop.stop()
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
            "raw_path": quote_path(self.root_path).encode("ascii") + target,
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
