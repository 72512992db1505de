"""`WebSocket.while_connected`: the block, its reader task and the client's messages.

Strategy: while the block runs, a reader task is the only caller of the
server's ``receive``; it appends each message to the socket's `Inbox`, and
the socket's own receives take them from there, in order. Invariants:

- Only the reader appends to ``inbox.messages`` and only receives take from
  it; one receive at a time waits on ``inbox.waiter``. It holds at most
  `_INBOX_SIZE` messages (so a client cannot grow the server's memory):
  once it is full, the reader waits (``inbox.room``) if the block reads
  (``inbox.read``), or drops what comes if it never has: a block that
  reads nothing must still see the client leave, which a waiting reader
  would not (a client that sends heartbeats to a pure subscriber).
- The block's cancel scope is cancelled when the client's disconnect is
  *taken* by a receive (so an ``iter_*()`` loop gets every message sent
  before it), or at once when the reader gets the disconnect while no
  ``iter_*()`` loop reads (``WebSocket._iterating == 0``): nothing would
  ever take it. An open ``iter_*()`` generator that no receive waits in
  (a loop busy with a message, or one held and never resumed) has `_GRACE`
  seconds to take it before the block is cancelled all the same.
- The reader is cancelled and awaited when the block ends; messages it
  received that the block did not read stay in the inbox for the receives
  after the block, then the socket receives from the server again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from .exceptions import WebSocketDisconnect

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from .websockets import WebSocket

logger = logging.getLogger("microweb")

#: A WebSocket's side states (the client's, the app's): set by websockets.py and here.
_CONNECTING, _CONNECTED, _CLOSED = range(3)

#: Client messages a `while_connected` block keeps unread before its reader waits.
_INBOX_SIZE = 16
#: Seconds an open iter_*() loop that receives nothing has to take a disconnect.
_GRACE = 2.0


if sys.version_info >= (3, 11):

    class _Scope:
        """The block's cancellation: `asyncio.timeout`, expired on demand (what a
        client that left does). Lighter than an anyio CancelScope (an idle
        subscriber's memory counts), and as careful with a cancellation of the
        task that is not its own (`Task.uncancel`)."""

        __slots__ = ("timeout",)

        def __init__(self) -> None:
            self.timeout = asyncio.timeout(None)

        async def enter(self) -> None:
            await self.timeout.__aenter__()

        def cancel(self) -> None:
            timeout = self.timeout
            if not timeout.expired():
                timeout.reschedule(-1.0)  # in the past: the task is cancelled at once

        async def exit(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> bool:
            try:
                await self.timeout.__aexit__(exc_type, exc, tb)
            except TimeoutError:
                if self.timeout.expired():
                    return True
                raise
            return False

else:  # pragma: no cover - Python 3.10: no Task.uncancel, an anyio scope does it

    class _Scope:
        __slots__ = ("scope",)

        def __init__(self) -> None:
            self.scope = anyio.CancelScope()

        async def enter(self) -> None:
            self.scope.__enter__()

        def cancel(self) -> None:
            self.scope.cancel()

        async def exit(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> bool:
            return bool(self.scope.__exit__(exc_type, exc, tb))


class Inbox:
    """A `while_connected` block: its cancel scope, its reader task, and the client's
    messages that the reader received, for the socket's receives."""

    __slots__ = ("messages", "read", "reader", "room", "scope", "waiter", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.read = False  # whether a receive took from it (then the reader waits when full)
        self.scope: _Scope | None = None  # while the block runs
        self.reader: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None  # a receive waiting for a message
        self.room: asyncio.Future[None] | None = None  # the reader waiting for room

    async def __aenter__(self) -> None:
        ws = self.ws
        previous = ws._inbox
        if previous is not None:
            if previous.scope is not None:
                raise RuntimeError("this WebSocket is already in a while_connected() block")
            self.messages = previous.messages  # kept from an earlier block, not read yet
        scope = self.scope = _Scope()
        ws._inbox = self
        await scope.enter()
        if ws._client_state == _CLOSED:
            scope.cancel()  # it left already: the block ends at its first wait
        else:
            self.reader = asyncio.get_running_loop().create_task(self._read())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope, self.scope = self.scope, None
        assert scope is not None
        try:
            if await scope.exit(exc_type, exc, tb):
                return True  # cancelled because the client left
        except BaseException as raised:  # what the scope left of a group
            if _client_left(raised):
                return True
            raise
        finally:
            _wake(self.waiter)  # a receive elsewhere goes back to the server
            if not self.messages and self.ws._inbox is self:
                self.ws._inbox = None
            reader = self.reader
            if reader is not None and not reader.done():
                reader.cancel()  # the servers' receive is safe to cancel
                await asyncio.wait((reader,))
        return _client_left(exc)

    async def _read(self) -> None:
        """The reader task: the client's messages into the inbox, until it leaves."""
        ws = self.ws
        receive = ws._receive
        messages = self.messages
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await receive()
            except Exception as exc:  # the server's bug: end the block, and say why
                logger.error("The server's receive failed for WebSocket %r", ws.path, exc_info=exc)
                message = {"type": "websocket.disconnect", "code": 1006}
            if message["type"] == "websocket.disconnect":
                messages.append(message)
                _wake(self.waiter)
                ws._client_state = _CLOSED
                scope = self.scope
                if scope is not None:
                    if not ws._iterating or self.waiter is not None:
                        if not ws._iterating:
                            scope.cancel()  # no iter_*() loop will take it: end the block now
                    else:
                        # an iter_*() generator is open but nobody receives now: a loop busy
                        # with the last message, or one held and never resumed (a handshake
                        # read with anext()); the loop gets _GRACE seconds to take it
                        loop.call_later(_GRACE, self._cancel, scope)
                return
            if len(messages) >= _INBOX_SIZE and not self.read:
                await asyncio.sleep(0)  # a task the block just started may be about to read
            if self.read or len(messages) < _INBOX_SIZE:
                messages.append(message)
                _wake(self.waiter)
            # else dropped: the block reads none, and the reader must go on to see the client leave
            while len(messages) >= _INBOX_SIZE and self.read:
                room = self.room = loop.create_future()
                try:
                    await room
                finally:
                    self.room = None

    def _cancel(self, scope: _Scope) -> None:
        if self.scope is scope:  # the same block, still running
            scope.cancel()

    async def take(self) -> dict[str, Any]:
        """The next message: from the inbox, or (once it ended and is empty) the server."""
        ws = self.ws
        self.read = True
        messages = self.messages
        while not messages:
            if self.scope is None:  # the block ended: receive directly again
                ws._inbox = None
                if ws._client_state == _CLOSED:
                    raise WebSocketDisconnect(1006)
                return await ws._receive()  # type: ignore[no-any-return]
            if ws._client_state == _CLOSED:
                raise WebSocketDisconnect(1006)  # the disconnect was taken already
            if self.waiter is not None:
                raise RuntimeError("another task is already receiving from this WebSocket")
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        message = messages.pop(0)
        _wake(self.room)
        if not messages and self.scope is None:
            ws._inbox = None
        return message


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _client_left(exc: BaseException | None) -> bool:
    """True for a `WebSocketDisconnect`, or a group of nothing else (from a task group)."""
    if isinstance(exc, WebSocketDisconnect):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_left(inner) for inner in exc.exceptions)
    return False
