"""What a subscriber holds: `Event`, `Subscription` (a bounded buffer), the errors."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import MicrowebError

__all__ = ["BroadcastError", "BroadcastOverflow", "Event", "Subscription"]


class BroadcastError(MicrowebError):
    """The broadcast backend is gone or does not answer (raised within a few seconds)."""


class BroadcastOverflow(BroadcastError):
    """A subscriber fell more than `backlog` messages behind: its subscription ended.

    With ``redis-stream://`` (or ``memory://``), subscribe again with
    ``last_id=subscription.last_id`` to resume from the last event handled.
    """


class Event:
    """One message: its `channel`, its `data` (a str) and its `id`.

    `id` is a non-empty str with ``memory://`` and ``redis-stream://`` (the same
    for every subscriber in every process), None with ``redis://`` pub/sub.
    """

    __slots__ = ("_key", "channel", "data", "id")

    def __init__(self, channel: str, data: str, id: str | None, key: Any = None) -> None:
        self.channel = channel
        self.data = data
        self.id = id
        self._key = key  # the id as something ordered (int or (ms, seq)), for replay

    def __repr__(self) -> str:
        return f"Event(channel={self.channel!r}, data={self.data!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.channel, self.data, self.id) == (other.channel, other.data, other.id)

    __hash__ = None  # type: ignore[assignment]


_OPEN, _CLOSED, _OVERFLOW = 0, 1, 2


class Subscription:
    """The events of one channel, in publish order; iterate with ``async for``.

    Made by `Broadcast.subscribe`, whose ``async with`` block it lives in. It
    holds at most `backlog` unread events: one more ends it, and the next read
    raises `BroadcastOverflow`. `last_id` is the id of the last event read (or
    the ``last_id`` it was made with).
    """

    __slots__ = (
        "__weakref__",
        "_backlog",
        "_buffer",
        "_floor",
        "_loop",
        "_pager",
        "_pos",
        "_side",
        "_state",
        "_waiter",
        "channel",
        "last_id",
    )

    def __init__(
        self,
        channel: str,
        last_id: str | None,
        loop: asyncio.AbstractEventLoop,
        backlog: int,
    ) -> None:
        self.channel = channel
        self.last_id = last_id
        self._loop = loop
        self._backlog = backlog
        self._buffer: deque[Event] | None = None  # made at the first event: idle costs less
        self._waiter: asyncio.Future[None] | None = None
        self._state = _OPEN
        self._floor: Any = None  # events with a key <= floor are not for this subscriber
        self._side: list[Event] | None = None  # live events held while a replay is fetched
        # replaying: fetches the next page of what came after `_pos`, or joins the live
        # events once it has caught up (a replay is read as it is consumed, never at once)
        self._pager: Callable[[], Awaitable[None]] | None = None
        self._pos: Any = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._pager is not None and not self._state:
                await self._pager()
                continue
            if self._state == _OVERFLOW:
                raise BroadcastOverflow(
                    f"the subscriber of {self.channel!r} fell more than {self._backlog} "
                    "messages behind: its subscription ended"
                )
            if self._state == _CLOSED:
                raise StopAsyncIteration
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        event = self._buffer.popleft()
        self.last_id = event.id
        return event

    # -- fed by the backend, on this subscription's loop -------------------

    def _push(self, event: Event) -> None:
        if self._state:
            return
        floor = self._floor
        if floor is not None:
            if event._key <= floor:
                return
            self._floor = None  # ids only grow on a channel
        side = self._side
        if side is not None:
            side.append(event)
            if len(side) > self._backlog:
                self._overflow()
            return
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque()
        elif len(buffer) >= self._backlog:
            self._overflow()
            return
        buffer.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _load(self, events: list[Event]) -> None:
        """A page of a replay (never more than `backlog`)."""
        if events:
            if self._buffer is None:
                self._buffer = deque()
            self._buffer.extend(events)
            self._pos = events[-1]._key

    def _replayed(self, events: list[Event]) -> None:
        """Events fetched by a replay, then the live events held meanwhile."""
        side, self._side = self._side or [], None
        last = None
        for event in events:
            self._push(event)
            last = event._key
        for event in side:
            if last is None or event._key > last:
                self._push(event)

    def _overflow(self) -> None:
        self._state = _OVERFLOW
        self._buffer = None  # the memory goes now, not when the reader comes back
        self._side = None
        self._wake()

    def _close(self) -> None:
        if self._state == _OPEN:
            self._state = _CLOSED
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def ended(self) -> bool:
        """True once the subscription ended (its block left, an overflow, a disconnect)."""
        return self._state != _OPEN


def deliver(subscribers: Any, event: Event, home: asyncio.AbstractEventLoop) -> None:
    """Give `event` to each subscriber, on its own loop."""
    for sub in subscribers:  # pushing never changes the set (only the home loop does)
        if sub._loop is home:
            sub._push(event)
        else:
            _threadsafe(sub._loop, sub._push, event)


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # that loop is closed: its subscriber is gone with it
        pass
