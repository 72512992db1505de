"""``redis://`` (pub/sub) on redis-py's asyncio client, and what Streams share with it.

Each process holds one *listening* connection for all its subscribers (a
SUBSCRIBE connection, or one XREAD loop over every channel's stream), read by
one task, and a small pool of command connections for publishing.

redis-py's traps, and what is done about them:

- No timeout ever aborts the listener's read (an idle channel is not a dead
  one): a watchdog PINGs an idle pub/sub connection, and an XREAD must answer
  within its BLOCK time plus `timeout`. A server that does not answer loses
  its connection, which is made again with backoff.
- ``subscribe`` is confirmed: the listener resolves a future when Redis's
  ``subscribe`` reply arrives, and only then is the subscription entered.
- No retries: a command fails after `timeout`, as `BroadcastError`.
- The listener task logs whatever stops it and starts again; it never dies
  silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._subscription import BroadcastError, Event, Subscription, deliver

logger = logging.getLogger("microweb.broadcast")

T = TypeVar("T")

#: An idle pub/sub connection is PINGed after this many seconds.
PING_INTERVAL = 1.0
#: Reconnection: the first wait, and the longest (each doubles, with jitter).
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 5.0
#: Command connections for publishing, per process.
POOL_SIZE = 8


def _redis() -> Any:
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover - the extra is installed in the tests
        raise ImportError(
            "Broadcast('redis://…') needs redis-py: pip install 'microweb-framework[redis]'"
        ) from None
    return redis.asyncio


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisBackend:
    """What pub/sub and Streams share: the command pool, the listener and its restarts."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.where = _where(url)
        self.timeout = timeout
        self.channels: dict[str, set[Subscription]] = {}
        self.home: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        self.conn: Any = None  # the listening connection, while it is up
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.background: set[asyncio.Task[Any]] = set()

    def _options(self) -> dict[str, Any]:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return {
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),
            "protocol": 2,
        }

    async def start(self, home: asyncio.AbstractEventLoop) -> None:
        aioredis = _redis()
        self.home = home
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=POOL_SIZE,
            timeout=self.timeout,
            socket_timeout=self.timeout,
            **self._options(),
        )
        self.client = aioredis.Redis(connection_pool=pool)
        try:
            await self.guard(self.client.ping())
        except BaseException:
            await self._close_client()
            raise
        self._start_listener()

    def _start_listener(self) -> None:
        assert self.home is not None
        task = self.task = self.home.create_task(self._listen_forever())
        task.add_done_callback(self._listener_ended)

    def _listener_ended(self, task: asyncio.Task[None]) -> None:
        if self.stopping or task.cancelled():
            return
        # _listen_forever catches everything but BaseExceptions (e.g. SystemExit in a
        # thread's loop): whatever it was, say so, and listen again
        logger.error("the Redis listener stopped; starting it again", exc_info=task.exception())
        self._start_listener()

    async def stop(self) -> None:
        self.stopping = True
        task = self.task
        if task is not None:
            task.cancel()
            conn = self.conn
            if conn is not None:  # a read it is in ends now
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            # asyncio.wait_for (3.11) can swallow a cancellation that meets a reply: the
            # listener also stops at its next turn (`stopping`), and is not waited for long
            await asyncio.wait((task,), timeout=self.timeout)
        for pending in list(self.background):
            pending.cancel()
        await self._close_client()

    async def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.connection_pool.disconnect(), self.timeout)

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """`awaitable`'s result, or BroadcastError after at most `timeout` seconds.

        The command runs in a task of its own, waited for with `asyncio.wait`: redis-py
        (and 3.11's `wait_for`) can swallow a cancellation that meets a reply, and
        the caller's cancellation must never be lost.
        """
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait((task,), timeout=self.timeout)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()  # redis-py then closes that connection: let it, briefly
            await asyncio.wait((task,), timeout=self.timeout)
            raise BroadcastError(f"Redis at {self.where} did not answer within {self.timeout:g} s")
        try:
            return task.result()
        except BroadcastError:
            raise
        except Exception as exc:
            raise BroadcastError(f"Redis at {self.where}: {exc}") from exc

    def spawn(self, awaitable: Awaitable[Any]) -> None:
        """Run `awaitable` in the background, its failure ignored (the listener notices)."""

        async def run() -> None:
            with contextlib.suppress(Exception):
                await awaitable

        assert self.home is not None
        task = self.home.create_task(run())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- the listener -----------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = BACKOFF_FIRST
        failing = False
        while not self.stopping:
            conn = None
            try:
                conn = self.client.connection_pool.make_connection()
                conn.socket_timeout = None  # the listener's reads wait as long as they must
                await asyncio.wait_for(conn.connect(), self.timeout)
                await self.listening(conn)
                self.conn = conn
                if failing:
                    logger.warning("reconnected to Redis at %s", self.where)
                    failing = False
                delay = BACKOFF_FIRST
                await self.serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    break  # stop() closed the connection under it
                expected = isinstance(exc, (OSError, asyncio.TimeoutError, BroadcastError)) or (
                    type(exc).__module__.startswith("redis")
                )
                if not failing:
                    logger.warning(
                        "lost the Redis listener's connection to %s (%s: %s); reconnecting",
                        self.where,
                        type(exc).__name__,
                        exc,
                        exc_info=None if expected else exc,
                    )
                    failing = True
            finally:
                self.conn = None
                self.lost()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            await asyncio.sleep(delay * (0.5 + random.random()))  # backoff, with jitter
            delay = min(delay * 2, BACKOFF_MAX)

    async def send(self, conn: Any, *args: Any) -> None:
        await asyncio.wait_for(
            conn.send_packed_command(conn.pack_command(*args), check_health=False), self.timeout
        )

    async def listening(self, conn: Any) -> None:
        """A new listening connection: renew what it must hear."""

    async def serve(self, conn: Any) -> None:
        """Read `conn` until it fails (raise)."""
        raise NotImplementedError

    def lost(self) -> None:
        """The listening connection is gone."""

    def close_all(self) -> list[Subscription]:
        subs = [sub for subs in self.channels.values() for sub in subs]
        self.channels.clear()
        return subs


class PubSubBackend(RedisBackend):
    """``redis://``: SUBSCRIBE on one connection; at most once, no ids."""

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(url, timeout)
        self.confirmed: set[str] = set()
        self.requested: set[str] = set()
        self.waiting: dict[str, list[asyncio.Future[None]]] = {}
        self.last_heard = 0.0

    async def publish(self, channel: str, data: str) -> str | None:
        await self.guard(self.client.publish(channel, data))
        return None

    @staticmethod
    def parse_id(text: str) -> None:
        return None  # pub/sub has no ids: a subscription is live only

    async def add(self, sub: Subscription) -> None:
        channel = sub.channel
        subs = self.channels.get(channel)
        if subs is None:
            subs = self.channels[channel] = set()
        subs.add(sub)
        if channel in self.confirmed:
            return
        assert self.home is not None
        future: asyncio.Future[None] = self.home.create_future()
        self.waiting.setdefault(channel, []).append(future)
        conn = self.conn
        if conn is not None and channel not in self.requested:
            self.requested.add(channel)
            self.spawn(self.send(conn, "SUBSCRIBE", channel))
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            self.remove(sub)
            raise BroadcastError(
                f"Redis at {self.where} did not confirm the subscription to {channel!r} "
                f"within {self.timeout:g} s"
            ) from None
        except BaseException:
            self.remove(sub)
            raise

    def remove(self, sub: Subscription) -> None:
        channel = sub.channel
        subs = self.channels.get(channel)
        if subs is None:
            return
        subs.discard(sub)
        if subs:
            return
        del self.channels[channel]
        self.waiting.pop(channel, None)
        self.confirmed.discard(channel)
        if channel in self.requested:
            self.requested.discard(channel)
            conn = self.conn
            if conn is not None:
                self.spawn(self.send(conn, "UNSUBSCRIBE", channel))

    async def listening(self, conn: Any) -> None:
        channels = list(self.channels)
        self.requested = set(channels)
        if channels:
            await self.send(conn, "SUBSCRIBE", *channels)

    def lost(self) -> None:
        self.confirmed.clear()
        self.requested.clear()

    async def serve(self, conn: Any) -> None:
        assert self.home is not None
        loop = self.home
        self.last_heard = loop.time()
        reader = loop.create_task(self._read(conn))
        pinged: float | None = None
        try:
            while not self.stopping:
                await asyncio.wait((reader,), timeout=PING_INTERVAL)
                if reader.done():
                    reader.result()
                    raise ConnectionError("the listener's connection ended")
                now = loop.time()
                if pinged is not None and self.last_heard >= pinged:
                    pinged = None
                if pinged is None:
                    if now - self.last_heard >= PING_INTERVAL:
                        pinged = now
                        await self.send(conn, "PING")
                elif now - pinged > self.timeout:
                    raise BroadcastError(
                        f"Redis at {self.where} did not answer a PING within {self.timeout:g} s"
                    )
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _read(self, conn: Any) -> None:
        assert self.home is not None
        home = self.home
        clock = home.time
        channels = self.channels
        while True:
            message = await conn.read_response(disable_decoding=True)
            self.last_heard = clock()
            kind = message[0]
            if kind == b"message":
                channel = _text(message[1])
                subs = channels.get(channel)
                if subs:
                    deliver(subs, Event(channel, _text(message[2]), None), home)
            elif kind == b"subscribe":
                channel = _text(message[1])
                if channel in channels:
                    self.confirmed.add(channel)
                    for future in self.waiting.pop(channel, ()):
                        if not future.done():
                            future.set_result(None)
