"""``memory://``: one process; ids and replay as with Redis Streams."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

from ._subscription import Event, Subscription, deliver

#: Channels whose recent events are kept for replay (the least recently published go first).
MAX_CHANNELS = 10_000
#: The most events a replay brings into a subscriber's buffer at once.
PAGE = 1000


class MemoryBackend:
    """Every subscriber of the process in one dict; each channel's last `maxlen` events kept."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self.channels: dict[str, set[Subscription]] = {}
        self.history: OrderedDict[str, deque[Event]] = OrderedDict()
        self.counter = 0
        self.home: asyncio.AbstractEventLoop | None = None

    async def start(self, home: asyncio.AbstractEventLoop) -> None:
        self.home = home

    async def stop(self) -> None:
        pass

    async def publish(self, channel: str, data: str) -> str:
        self.counter = key = self.counter + 1
        event = Event(channel, data, str(key), key)
        history = self.history.get(channel)
        if history is None:
            history = self.history[channel] = deque(maxlen=self.maxlen)
            if len(self.history) > MAX_CHANNELS:
                self.history.popitem(last=False)
        else:
            self.history.move_to_end(channel)
        history.append(event)
        subscribers = self.channels.get(channel)
        if subscribers:
            assert self.home is not None
            deliver(subscribers, event, self.home)
        return event.id  # type: ignore[return-value]

    async def add(self, sub: Subscription) -> None:
        self.channels.setdefault(sub.channel, set()).add(sub)

    async def page(self, sub: Subscription) -> None:
        """The next page of a replay, or (caught up) the live events from now on."""
        count = min(PAGE, sub._backlog)
        after = sub._pos
        events = [event for event in self.history.get(sub.channel, ()) if event._key > after]
        sub._load(events[:count])
        if len(events) <= count:  # no await from the read to here: nothing slips between
            sub._pager = None
            self.channels.setdefault(sub.channel, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        subscribers = self.channels.get(sub.channel)
        if subscribers is not None:
            subscribers.discard(sub)
            if not subscribers:
                del self.channels[sub.channel]

    def close_all(self) -> list[Subscription]:
        subs = [sub for subs in self.channels.values() for sub in subs]
        self.channels.clear()
        return subs

    @staticmethod
    def parse_id(text: str) -> int | None:
        text = text.strip()
        if not text.isdigit() or len(text) > 20:
            return None
        return int(text)
