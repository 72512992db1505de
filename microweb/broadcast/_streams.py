"""``redis-stream://``: Redis Streams, one XREAD loop over every subscribed channel.

The connection handling, timeouts and restarts are `RedisBackend`'s (see
`_redis`); here are the ids, the cursors, the replay and the XREAD loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._redis import RedisBackend, _text
from ._subscription import Event, Subscription, deliver

#: How long an XREAD blocks in Redis before it answers with nothing.
BLOCK_SECONDS = 1.0
#: The most entries one XREAD (or one replay page) brings.
BATCH = 1000


#: Redis stream ids are two unsigned 64-bit numbers.
_ID_MAX = 2**64 - 1


def parse_stream_id(text: str) -> tuple[int, int] | None:
    """A stream id ("1733600000000-0", or "1733600000000") as (ms, seq); None if it is not one
    (the greatest id is not one either: nothing can come after it)."""
    ms, _, seq = text.strip().partition("-")
    seq = seq or "0"
    if not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        return None
    key = int(ms), int(seq)
    if key[0] > _ID_MAX or key[1] > _ID_MAX or key == (_ID_MAX, _ID_MAX):
        return None
    return key


def _id_text(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


class StreamBackend(RedisBackend):
    """``redis-stream://``: XADD, and one XREAD loop over every subscribed channel."""

    def __init__(self, url: str, timeout: float, maxlen: int | None, backlog: int) -> None:
        super().__init__(url, timeout)
        self.maxlen = maxlen
        # one XREAD never brings a subscriber more than its backlog at once
        self.batch = min(BATCH, backlog)
        self.cursors: dict[str, tuple[int, int]] = {}  # channel -> last id read
        self.waker: asyncio.Future[None] | None = None  # the idle listener waits on it
        self.listener_id: int | None = None
        self.blocked = False  # an XREAD is sent and not answered yet
        self.generation = 0  # XREADs sent so far

    parse_id = staticmethod(parse_stream_id)

    async def publish(self, channel: str, data: str) -> str | None:
        ident = await self.guard(
            self.client.xadd(channel, {"data": data}, maxlen=self.maxlen, approximate=True)
        )
        return _text(ident)

    async def add(self, sub: Subscription) -> None:
        self._join(sub, await self._newest(sub.channel), live=True)

    async def _newest(self, channel: str) -> tuple[int, int]:
        newest = await self.guard(self.client.xrevrange(channel, count=1))
        key = parse_stream_id(_text(newest[0][0])) if newest else None
        return key or (0, 0)

    async def clamp(self, channel: str, after: tuple[int, int]) -> tuple[int, int]:
        return min(after, await self._newest(channel))

    async def page(self, sub: Subscription) -> None:
        """The next page of a replay, or (caught up) the live events from now on."""
        count = min(BATCH, sub._backlog)
        low = f"({_id_text(sub._pos)}"
        page = await self.guard(self.client.xrange(sub.channel, min=low, count=count))
        sub._load([self._event(sub.channel, ident, fields) for ident, fields in page])
        if len(page) < count:
            # caught up; an id past the stream's newest (a Last-Event-ID from elsewhere)
            # counts as the newest, or the listener would read from the future
            newest = await self._newest(sub.channel)
            if sub._pos > newest:
                sub._pos = newest
            sub._pager = None
            self._join(sub, sub._pos, live=False)
            if sub._side is not None:  # the listener is ahead: fetch what lies between
                try:
                    sub._replayed(await self._range(sub.channel, sub._pos, sub._backlog))
                except BaseException:
                    self.remove(sub)
                    raise

    def _join(self, sub: Subscription, after: tuple[int, int], *, live: bool) -> None:
        """`sub` gets the live events after `after`: all of them for a replay (those
        the listener is past are fetched, `_side` holding the live ones meanwhile);
        for a live subscription, those the listener has not read yet."""
        channel = sub.channel
        cursor = self.cursors.get(channel)
        if cursor is None:
            self.cursors[channel] = after
            self._poke()
            sub._floor = after
        elif cursor > after and not live:
            sub._side = []
        else:
            sub._floor = max(after, cursor)  # (after, cursor] came while subscribing
        subs = self.channels.get(channel)
        if subs is None:
            subs = self.channels[channel] = set()
        subs.add(sub)

    async def _range(self, channel: str, after: tuple[int, int], most: int) -> list[Event]:
        """Up to the channel's listener cursor, what came after `after`."""
        events: list[Event] = []
        start = after
        while len(events) <= most:
            until = self.cursors.get(channel)
            if until is None or until <= start:
                break
            low, high = f"({_id_text(start)}", _id_text(until)
            page = await self.guard(self.client.xrange(channel, min=low, max=high, count=BATCH))
            events.extend(self._event(channel, ident, fields) for ident, fields in page)
            if len(page) < BATCH:
                break
            start = events[-1]._key
        return events

    @staticmethod
    def _event(channel: str, ident: bytes, fields: Any) -> Event:
        text = _text(ident)
        if isinstance(fields, dict):
            data = fields.get(b"data", b"")
        else:  # the raw reply: [field, value, field, value, ...]
            data = b""
            for i in range(0, len(fields) - 1, 2):
                if fields[i] == b"data":
                    data = fields[i + 1]
                    break
        return Event(channel, _text(data), text, parse_stream_id(text))

    def remove(self, sub: Subscription) -> None:
        channel = sub.channel
        subs = self.channels.get(channel)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.channels[channel]
            self.cursors.pop(channel, None)

    def _poke(self) -> None:
        """A new channel: the listener's XREAD must include it now, not after its BLOCK."""
        waker = self.waker
        if waker is not None and not waker.done():
            waker.set_result(None)
        if self.blocked and self.listener_id is not None and self.client is not None:
            self.spawn(self._unblock(self.generation))

    async def _unblock(self, generation: int) -> None:
        # CLIENT UNBLOCK may reach Redis before the XREAD it is for (two connections):
        # then it answers 0, and is sent again until that XREAD has answered
        assert self.home is not None
        deadline = self.home.time() + BLOCK_SECONDS
        while self.blocked and self.generation == generation and self.home.time() < deadline:
            if await self.client.execute_command("CLIENT", "UNBLOCK", self.listener_id):
                return
            await asyncio.sleep(0.002)

    async def listening(self, conn: Any) -> None:
        await self.send(conn, "CLIENT", "ID")
        self.listener_id = await asyncio.wait_for(conn.read_response(), self.timeout)

    def lost(self) -> None:
        self.listener_id = None
        self.blocked = False

    async def serve(self, conn: Any) -> None:
        assert self.home is not None
        home = self.home
        block_ms = int(BLOCK_SECONDS * 1000)
        while not self.stopping:
            if not self.cursors:
                waker = self.waker = home.create_future()
                try:
                    await asyncio.wait((waker,), timeout=10 * BLOCK_SECONDS)
                finally:
                    self.waker = None
                if not waker.done():  # idle: is the connection still alive?
                    await self.send(conn, "PING")
                    await asyncio.wait_for(conn.read_response(), self.timeout)
                continue
            sent = dict(self.cursors)
            self.blocked = True
            self.generation += 1
            await self.send(
                conn,
                "XREAD", "COUNT", self.batch, "BLOCK", block_ms, "STREAMS",
                *sent, *(_id_text(key) for key in sent.values()),
            )  # fmt: skip
            try:
                reply = await asyncio.wait_for(
                    conn.read_response(disable_decoding=True), BLOCK_SECONDS + self.timeout
                )
            finally:
                self.blocked = False
            if not reply:
                continue
            for name, entries in reply:
                channel = _text(name)
                if self.cursors.get(channel) != sent[channel]:
                    continue  # left, or came back with another cursor: read again from that
                event = None
                subs = self.channels.get(channel)
                for ident, fields in entries:
                    event = self._event(channel, ident, fields)
                    if subs:
                        deliver(subs, event, home)
                if event is not None:
                    self.cursors[channel] = event._key
