"""Broadcast: live messages across processes and machines (``memory://``, Redis).

```python
broadcast = Broadcast("redis://127.0.0.1:6379/0")   # or "redis-stream://…?maxlen=N", "memory://"
app.on_startup(broadcast.connect)
app.on_shutdown(broadcast.disconnect)

async with broadcast.subscribe("room:lobby") as events:   # confirmed when entered
    async for event in events:                            # .channel, .data, .id
        ...
await broadcast.publish("room:lobby", "hello")            # def code: publish_sync(...)
```

The backend lives on one event loop per process (its *home*): the server's
loop under ASGI, microweb's shared loop under WSGI. Subscribers on another
loop get their events through it; after a fork a process makes its own
connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import weakref
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._memory import MemoryBackend
from ._subscription import BroadcastError, BroadcastOverflow, Event, Subscription

__all__ = ["Broadcast", "BroadcastError", "BroadcastOverflow", "Event", "Subscription"]

#: publish_sync's wait beyond what publish allows itself (a loop too busy to run it).
_SYNC_GRACE = 10.0

_SCHEMES = {
    "memory": "memory",
    "redis": "pubsub",
    "rediss": "pubsub",
    "unix": "pubsub",
    "redis-stream": "stream",
    "rediss-stream": "stream",
}


class Broadcast:
    """Publish to channels and subscribe to them, across processes with Redis.

    `url` names the backend: ``memory://`` (this process; ids, and replay of
    the last ``?maxlen=N`` events of a channel, default 1000),
    ``redis://host:port/db`` (Redis pub/sub: at most once, no ids) or
    ``redis-stream://host:port/db?maxlen=N`` (Redis Streams: ids, and
    replay after ``last_id`` of what the stream still holds, about N per
    channel). Each subscriber holds at most `backlog` unread events
    (`BroadcastOverflow` beyond). A backend that does not answer makes
    `publish` raise `BroadcastError` within `timeout` seconds.
    """

    def __init__(self, url: str, backlog: int = 1000, *, timeout: float = 3.0) -> None:
        parts = urlsplit(url)
        kind = _SCHEMES.get(parts.scheme)
        if kind is None:
            raise ValueError(
                f"unknown broadcast URL {url!r}: use memory://, redis://host:port/db "
                "or redis-stream://host:port/db?maxlen=N"
            )
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise ValueError(f"backlog must be a positive int, not {backlog!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        query = dict(parse_qsl(parts.query))
        maxlen_text = query.pop("maxlen", None)
        maxlen: int | None = None
        if maxlen_text is not None:
            if not maxlen_text.isdigit() or int(maxlen_text) < 1:
                raise ValueError(f"maxlen must be a positive int, not {maxlen_text!r}")
            maxlen = int(maxlen_text)
        if kind == "pubsub" and maxlen is not None:
            raise ValueError("maxlen is for redis-stream:// (pub/sub keeps nothing)")
        self.url = url
        self.backlog = backlog
        self.timeout = float(timeout)
        self._kind = kind
        self._maxlen = maxlen
        scheme = parts.scheme.removesuffix("-stream")
        self._redis_url = urlunsplit(
            (scheme, parts.netloc, parts.path, urlencode(query), parts.fragment)
        )
        self._backend: Any = None
        self._home: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future[None] | None = None
        _instances.add(self)

    def __repr__(self) -> str:
        return f"Broadcast({self.url!r}, backlog={self.backlog})"

    def _make_backend(self) -> Any:
        if self._kind == "memory":
            return MemoryBackend(self._maxlen or 1000)
        from ._redis import PubSubBackend
        from ._streams import StreamBackend

        if self._kind == "stream":
            return StreamBackend(self._redis_url, self.timeout, self._maxlen, self.backlog)
        return PubSubBackend(self._redis_url, self.timeout)

    # -- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the backend on this loop (a startup hook; done on first use anyway).

        Raises `BroadcastError` if Redis does not answer within `timeout`.
        """
        await self._ready()

    async def disconnect(self) -> None:
        """Close the backend's connections (a shutdown hook); open subscriptions end."""
        backend, home = self._backend, self._home
        self._backend = self._home = None
        if backend is None or home is None:
            return
        for sub in backend.close_all():
            _on_loop(sub._loop, sub._close)
        loop = asyncio.get_running_loop()
        if home is loop:
            await backend.stop()
        elif home.is_running():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(backend.stop(), home))

    async def _ready(self) -> Any:
        """The backend, started on this loop unless it runs on a live one already."""
        backend = self._backend
        loop = asyncio.get_running_loop()
        if backend is not None:
            home = self._home
            if home is loop or (home is not None and home.is_running()):
                return backend
            self._backend = self._home = None  # its loop is gone, and its connections with it
        starting = self._starting
        if starting is not None and self._home is loop:
            await asyncio.shield(starting)
            return self._backend
        backend = self._make_backend()
        starting = self._starting = loop.create_future()
        self._home = loop
        try:
            await backend.start(loop)
        except BaseException as exc:
            if self._starting is starting:
                self._starting = None
                self._home = None
            starting.set_exception(exc)
            starting.exception()  # retrieved: whoever waits sees it raised
            raise
        if self._starting is starting:
            self._starting = None
            self._backend = backend
        starting.set_result(None)
        return backend

    def _forget(self) -> None:
        """After a fork: the parent's connections and loop are not this process's."""
        self._backend = self._home = self._starting = None

    # -- publishing --------------------------------------------------------------

    async def publish(self, channel: str, data: str) -> str | None:
        """Send `data` to every subscriber of `channel`; returns once the backend has it.

        Returns the event's id (None with ``redis://`` pub/sub). Raises
        `BroadcastError` if the backend does not take it within `timeout`.
        """
        _check(channel, data)
        backend = self._backend
        if backend is None or self._home is not asyncio.get_running_loop():
            backend = await self._ready()
            home = self._home
            if home is not asyncio.get_running_loop():
                assert home is not None
                future = asyncio.run_coroutine_threadsafe(backend.publish(channel, data), home)
                return await asyncio.wrap_future(future)
        return await backend.publish(channel, data)  # type: ignore[no-any-return]

    def publish_sync(self, channel: str, data: str) -> str | None:
        """`publish` from ``def`` code (a WSGI request's thread, an ASGI worker thread).

        Raises RuntimeError on an event loop's thread: there, ``await
        broadcast.publish(...)``.
        """
        _check(channel, data)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "Broadcast.publish_sync() blocks, and this thread runs an event loop: "
                "in async def code, use `await broadcast.publish(channel, data)`"
            )
        home = self._home
        if home is None or not home.is_running():
            from .._shared_loop import shared_loop

            home = shared_loop.get()
        future = asyncio.run_coroutine_threadsafe(self.publish(channel, data), home)
        try:
            # publish bounds itself (`timeout`); this only guards a loop that stopped turning
            return future.result(timeout=3 * self.timeout + _SYNC_GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BroadcastError(
                f"the event loop of {self!r} did not run the publish in time"
            ) from None

    # -- subscribing -------------------------------------------------------------

    def subscribe(self, channel: str, last_id: str | None = None) -> _Subscribing:
        """``async with broadcast.subscribe(channel) as events:`` — `events` gets every
        event published after the block is entered, in order.

        With `last_id` (``memory://`` and ``redis-stream://``), the events after
        that id come first (an id that is not one is ignored: live only).
        """
        if not isinstance(channel, str) or not channel:
            raise TypeError(f"a channel is a non-empty str, not {channel!r}")
        return _Subscribing(self, channel, last_id)


class _Subscribing:
    """The ``async with`` of `Broadcast.subscribe`."""

    __slots__ = ("backend", "broadcast", "channel", "last_id", "sub")

    def __init__(self, broadcast: Broadcast, channel: str, last_id: str | None) -> None:
        self.broadcast = broadcast
        self.channel = channel
        self.last_id = last_id
        self.sub: Subscription | None = None
        self.backend: Any = None

    async def __aenter__(self) -> Subscription:
        broadcast = self.broadcast
        loop = asyncio.get_running_loop()
        backend = await broadcast._ready()
        after = None
        last_id = self.last_id.strip() if isinstance(self.last_id, str) else None
        if last_id:
            after = backend.parse_id(last_id)
        sub = Subscription(
            self.channel, last_id if after is not None else None, loop, broadcast.backlog
        )
        home = broadcast._home
        assert home is not None
        if after is not None:  # replayed as it is read, then live
            # an id past the newest (made up, or from another Redis) means "from now on":
            # what is published once the block is entered must come after it
            if home is loop:
                after = await backend.clamp(self.channel, after)
            else:
                future = asyncio.run_coroutine_threadsafe(backend.clamp(self.channel, after), home)
                after = await asyncio.wrap_future(future)
            sub._pos = after
            sub._pager = _pager(backend, sub, home)
        elif home is loop:
            await backend.add(sub)
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(backend.add(sub), home))
        self.sub, self.backend = sub, backend
        return sub

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # no await here: a cancelled task (a client that left) must still let go at once
        sub, backend = self.sub, self.backend
        self.sub = self.backend = None
        if sub is None:
            return
        sub._close()
        home = self.broadcast._home
        if backend is not self.broadcast._backend or home is None:
            return  # disconnected meanwhile: nothing holds it any more
        _on_loop(home, backend.remove, sub)


def _pager(backend: Any, sub: Subscription, home: asyncio.AbstractEventLoop) -> Any:
    if sub._loop is home:
        return lambda: backend.page(sub)
    return lambda: asyncio.wrap_future(asyncio.run_coroutine_threadsafe(backend.page(sub), home))


def _check(channel: object, data: object) -> None:
    if not isinstance(channel, str) or not channel:
        raise TypeError(f"a channel is a non-empty str, not {channel!r}")
    if not isinstance(data, str):
        raise TypeError(
            f"broadcast data is a str, not {type(data).__name__}: "
            "send json.dumps(value) and json.loads(event.data) on the other side"
        )


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Call `fn(*args)` on `loop`: now if this thread runs it, else soon."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
        return
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # that loop is closed
        pass


_instances: weakref.WeakSet[Broadcast] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for broadcast in list(_instances):
        broadcast._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
