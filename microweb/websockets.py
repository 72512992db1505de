"""`WebSocket` connections (ASGI only) and the adapter code that serves them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from ._concurrency import running_loop
from ._connected import _CLOSED, _CONNECTED, _CONNECTING, Inbox
from ._parsers import decode_path, encode_path, origin_form, quote_path, strip_root_path
from ._pipeline import NotOriginForm, Step, drive_async
from .datastructures import Headers
from .exceptions import HTTPException, WebSocketDisconnect
from .requests import HTTPConnection
from .responses import Response, error_response, to_response

if TYPE_CHECKING:
    from .asgi import ASGIAdapter, Receive, Scope, Send

__all__ = ["WebSocket", "WebSocketDisconnect"]

logger = logging.getLogger("microweb")
_NOKW: dict[str, Any] = {}
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


class _Channel:
    """The `Channel` of a WebSocket: headers and peers come from the scope."""

    __slots__ = ("scope",)
    protocol = "asgi"
    environ = None
    native_async = True

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def headers(self) -> Headers:
        from .asgi import scope_headers

        return scope_headers(self.scope)

    def content_length(self) -> int | None:
        return None

    def server(self) -> str:
        server = self.scope.get("server")
        if not server:
            return ""
        return f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])

    def client(self) -> tuple[str, int] | None:
        client = self.scope.get("client")
        return (client[0], client[1]) if client else None

    def on_loop(self) -> bool:
        return True

    def read_sync(self, size: int) -> bytes:  # pragma: no cover - WebSockets have no body
        return b""

    async def read_async(self, size: int) -> bytes:  # pragma: no cover
        return b""

    async def offload(self, fn: Any, *args: Any) -> Any:  # pragma: no cover
        return fn(*args)

    def call_async(self, fn: Any, args: Any, kw: Any) -> Any:  # pragma: no cover
        raise RuntimeError("a WebSocket has no body to read")


class WebSocket(HTTPConnection):
    """A WebSocket connection: accept it, then send and receive text, bytes or JSON.

    It has the request's cheap attributes (`path_params`, `headers`,
    `query_params`, `cookies`, `client`, `url`, ...) plus `subprotocols`, the
    ones the client offered. Receiving after the client left raises
    `WebSocketDisconnect`; the `iter_*` methods just end.
    """

    __slots__ = ("_app_state", "_client_state", "_inbox", "_iterating", "_receive", "_send")

    def __init__(self, adapter: ASGIAdapter, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        root_path = scope.get("root_path", "")
        if raw is not None:
            target = raw.decode("latin-1").partition("?")[0]
            found = origin_form(target)
            if found is None:  # (see asgi._paths)
                raise NotOriginForm(target)
            raw_s = found
            if root_path:  # (compared decoded: see asgi._paths)
                raw_s = strip_root_path(raw_s, root_path) or raw_s
            path, _ = decode_path(raw_s)
            raw_s = encode_path(raw_s, keep_escapes=True)
        else:
            path = scope["path"]
            if not path.startswith("/"):
                raise NotOriginForm(path)
            if root_path and (path == root_path or path.startswith(root_path + "/")):
                path = path[len(root_path) :] or "/"
            raw_s = quote_path(path)
        qs: bytes = scope.get("query_string", b"")
        scheme = _SCHEMES.get(scope.get("scheme", "ws"), "ws")
        super().__init__(
            adapter.app,
            _Channel(scope),
            "GET",
            path,
            raw_s,
            qs.decode("latin-1"),
            root_path,
            scheme,
        )
        self._receive = receive
        self._send = send
        self._client_state = _CONNECTING
        self._app_state = _CONNECTING
        self._inbox: Inbox | None = None
        self._iterating = 0  # iter_*() loops reading now (see _connected.py)

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return list(self._channel.scope.get("subprotocols", []))  # type: ignore[union-attr]

    @property
    def accepted(self) -> bool:
        """True once `accept` (or `close`) was called."""
        return self._app_state != _CONNECTING

    # --------------------------------------------------------------- control
    async def accept(
        self, subprotocol: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Accept the handshake, optionally choosing a subprotocol and adding headers."""
        if self._app_state != _CONNECTING:
            raise RuntimeError("the WebSocket was already accepted or closed")
        if self._client_state == _CONNECTING:
            message = await self._receive()
            if message["type"] != "websocket.connect":  # pragma: no cover - server bug
                raise RuntimeError(f"expected websocket.connect, got {message['type']!r}")
            self._client_state = _CONNECTED
        raw_headers: list[tuple[bytes, bytes]] = []
        if headers:
            from .datastructures import MutableHeaders

            raw_headers = [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in MutableHeaders(headers).raw
            ]
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"the client did not offer the subprotocol {subprotocol!r}")
        try:
            await self._send(
                {"type": "websocket.accept", "subprotocol": subprotocol, "headers": raw_headers}
            )
        except OSError as exc:  # it left during the handshake (say, while a handler subscribed)
            self._client_state = _CLOSED
            raise WebSocketDisconnect(1006) from exc
        self._app_state = _CONNECTED

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (before `accept`, this refuses the handshake: 403)."""
        if self._app_state == _CLOSED:
            return
        self._app_state = _CLOSED
        if self._client_state == _CLOSED:
            return  # the client left: there is no one to tell
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason or ""})
        except OSError:  # it left while we were closing
            self._client_state = _CLOSED

    # --------------------------------------------------------------- receive
    # Each receive awaits the server's (or the inbox's) awaitable itself, with
    # `_next` and `_received` around it as plain calls: an idle connection
    # waits in one coroutine frame of microweb's, not three.
    async def receive(self) -> dict[str, Any]:
        """The next raw ASGI message (``websocket.receive`` or ``websocket.disconnect``)."""
        inbox = self._inbox
        return self._received(await self._next(inbox), inbox)

    def _next(self, inbox: Inbox | None) -> Awaitable[dict[str, Any]]:
        """What to await for the next message (`inbox`: the socket's, read just before)."""
        if self._app_state == _CONNECTING:
            raise RuntimeError("accept the WebSocket before receiving")
        if inbox is not None:
            return inbox.take()
        if self._client_state == _CLOSED:
            raise WebSocketDisconnect(1006)
        return self._receive()  # type: ignore[no-any-return]

    def _received(self, message: dict[str, Any], inbox: Inbox | None) -> dict[str, Any]:
        """`message`, unless it is the client's disconnect (then WebSocketDisconnect)."""
        if message["type"] == "websocket.disconnect":
            self._client_state = _CLOSED
            self._app_state = _CLOSED
            if inbox is not None and inbox.scope is not None:
                inbox.scope.cancel()  # the block saw the client leave: it ends
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        return message

    async def receive_text(self) -> str:
        """The next message, which must be text (TypeError for a binary one)."""
        inbox = self._inbox
        return _text(self._received(await self._next(inbox), inbox))

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary (TypeError for a text one)."""
        inbox = self._inbox
        return _bytes(self._received(await self._next(inbox), inbox))

    async def receive_json(self) -> Any:
        """The next message (text, or UTF-8 bytes) parsed as JSON."""
        inbox = self._inbox
        return _json(self._received(await self._next(inbox), inbox))

    async def iter_text(self) -> AsyncIterator[str]:
        """Each text message, until the client disconnects: ``async for text in ws.iter_text()``."""
        self._iterating += 1
        try:
            while True:
                inbox = self._inbox
                yield _text(self._received(await self._next(inbox), inbox))
        except WebSocketDisconnect:
            return
        finally:
            self._iterating -= 1

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Each binary message, until the client disconnects."""
        self._iterating += 1
        try:
            while True:
                inbox = self._inbox
                yield _bytes(self._received(await self._next(inbox), inbox))
        except WebSocketDisconnect:
            return
        finally:
            self._iterating -= 1

    async def iter_json(self) -> AsyncIterator[Any]:
        """Each message parsed as JSON, until the client disconnects."""
        self._iterating += 1
        try:
            while True:
                inbox = self._inbox
                yield _json(self._received(await self._next(inbox), inbox))
        except WebSocketDisconnect:
            return
        finally:
            self._iterating -= 1

    def while_connected(self) -> AbstractAsyncContextManager[None]:
        """An ``async with`` block that ends as soon as the client leaves.

        ```python
        await websocket.accept()
        async with broadcast.subscribe(f"room:{room}") as events, websocket.while_connected():
            async for event in events:
                await websocket.send_text(event.data)
        # the client left (or the subscription ended): the handler goes on here
        ```

        While the block runs, a task reads what the client sends, so its
        leaving is noticed even while the block waits for something else:
        the block is then cancelled and the ``async with`` ends quietly
        (``finally`` clauses run; so does the code after it). A
        `WebSocketDisconnect` raised inside (a send to a client that has gone)
        ends it the same way; any other exception propagates unchanged.

        The client's messages are kept, in order, for ``receive_*()`` and
        ``iter_*()`` inside the block, 16 at most: then the reading waits
        for the block to take one (the server stops reading the socket, so a
        fast client cannot grow memory) — or, in a block that has read none,
        further messages are dropped, so that the client leaving is still
        seen. An ``iter_*()`` loop gets every message sent before the client
        left, then ends, and the block ends with it; otherwise the block is
        cancelled at once. Messages kept and not read are received after the
        block. The socket must be accepted first (`RuntimeError` otherwise).
        """
        if self._app_state != _CONNECTED:
            raise RuntimeError(
                "while_connected() needs an open WebSocket: call `await websocket.accept()` "
                "before the block (and do not close the WebSocket first)"
            )
        return Inbox(self)

    # ------------------------------------------------------------------ send
    # (each awaits the server's send itself: one coroutine frame per message, not two)
    async def send_text(self, data: str) -> None:
        """Send `data` as a text message."""
        if self._app_state != _CONNECTED:
            raise _not_open()
        try:
            await self._send({"type": "websocket.send", "text": data})
        except OSError as exc:  # the server reports a gone client
            raise self._gone() from exc

    async def send_bytes(self, data: bytes) -> None:
        """Send `data` as a binary message."""
        message = {"type": "websocket.send", "bytes": bytes(data)}
        if self._app_state != _CONNECTED:
            raise _not_open()
        try:
            await self._send(message)
        except OSError as exc:
            raise self._gone() from exc

    async def send_json(self, data: Any) -> None:
        """Send `data` as compact JSON in a text message."""
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if self._app_state != _CONNECTED:
            raise _not_open()
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError as exc:
            raise self._gone() from exc

    def _gone(self) -> WebSocketDisconnect:
        """The error of a send to a client that has gone (the server raised OSError)."""
        self._client_state = _CLOSED
        return WebSocketDisconnect(1006)


def _not_open() -> RuntimeError:
    return RuntimeError("the WebSocket is not open (accept it first; or it was closed)")


def _text(message: dict[str, Any]) -> str:
    text = message.get("text")
    if text is None:
        raise TypeError("expected a text message, got bytes")
    return text  # type: ignore[no-any-return]


def _bytes(message: dict[str, Any]) -> bytes:
    data = message.get("bytes")
    if data is None:
        raise TypeError("expected a binary message, got text")
    return data  # type: ignore[no-any-return]


def _json(message: dict[str, Any]) -> Any:
    text = message.get("text")
    if text is None:
        text = message.get("bytes", b"").decode("utf-8")
    return json.loads(text)


# --------------------------------------------------------------------------
# Serving (called by the ASGI adapter)
# --------------------------------------------------------------------------


def _hooks_flow(ws: WebSocket) -> Generator[Step, Any, Response | None]:
    for hook in ws.app._before + (ws.route.before if ws.route else ()):
        rv = yield (hook.fn, (ws,), _NOKW, hook.kind)
        if rv is not None:
            return to_response(rv)
    return None


async def _reject(ws: WebSocket, scope: Scope, send: Send, response: Response) -> None:
    """Refuse the handshake with `response` when the server can send one, else close (403)."""
    if "websocket.http.response" in scope.get("extensions", {}) or {}:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.raw]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send(
            {"type": "websocket.http.response.start", "status": response.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
        ws._app_state = _CLOSED
        return
    await ws.close(1008 if response.status < 500 else 1011)


async def serve_websocket(adapter: ASGIAdapter, scope: Scope, receive: Receive, send: Send) -> None:
    # What is set up for the handler is made in `_open`, whose frame is gone by
    # the time the handler runs: an idle connection holds only this small one.
    opened = await _open(adapter, scope, receive, send)
    if opened is None:
        return
    ws, handler = opened
    del opened
    try:
        await handler
    except WebSocketDisconnect:
        pass
    except Exception as exc:
        await _failed(ws, scope, send, exc)
        return
    if ws._app_state == _CONNECTING:
        await ws.close()
    elif ws._app_state == _CONNECTED:
        await ws.close(1000)


async def _failed(ws: WebSocket, scope: Scope, send: Send, exc: Exception) -> None:
    """The handler raised `exc`: log it, and refuse the handshake or close (1011)."""
    logger.error("Exception in WebSocket handler for %r", ws.path, exc_info=exc)
    if ws._app_state == _CONNECTING:
        await _reject(ws, scope, send, error_response(HTTPException(500)))
    elif ws._app_state == _CONNECTED:
        await ws.close(1011)


async def _open(
    adapter: ASGIAdapter, scope: Scope, receive: Receive, send: Send
) -> tuple[WebSocket, Coroutine[Any, Any, Any]] | None:
    """The socket and its handler's coroutine (not started), or None when the
    connection was answered already (refused, no route, a failed startup)."""
    app = adapter.app
    loop = running_loop()  # a clear error under trio
    if not app._started:
        failure = await adapter._lazy_startup()
        if failure is not None:
            await send({"type": "websocket.close", "code": 1011})
            return None
    try:
        ws = WebSocket(adapter, scope, receive, send)
    except NotOriginForm:  # not a path: refused (403), never routed nor in a URL
        await send({"type": "websocket.close", "code": 1008})
        return None
    route, params, _ = app._matcher.match(None, ws.path)
    if route is None:
        await ws.close()
        return None
    ws.route = route
    ws.path_params = params
    from .asgi import LoopRunner

    runner = LoopRunner(adapter.pool, loop)
    try:
        refusal = await drive_async(_hooks_flow(ws), runner)
    except HTTPException as exc:
        refusal = error_response(exc)
    except Exception as exc:
        logger.error("Exception in a hook for WebSocket %r", ws.path, exc_info=exc)
        refusal = error_response(HTTPException(500))
    if refusal is not None:
        await _reject(ws, scope, send, refusal)
        return None
    args, kwargs = route.arguments(ws, params)
    return ws, route.endpoint(*args, **kwargs)
