"""Broadcast through real servers on a real Redis (issue 11).

The app is tests/apps/broadcast_app.py: ``POST /publish/{channel}`` (``def``,
`publish_sync`) and ``POST /apublish/{channel}`` (``async def``), an SSE
route under every server and a WebSocket route under uvicorn. Each client
knows its subscription is confirmed when the app's first frame
(``subscribed``) or comment (``subscribed pid=N``) arrives: the app sends it
only once `subscribe` has been entered, so a message posted after that must
reach it — no probe messages needed, except after a Redis restart under
pub/sub, which keeps nothing published before the subscription is renewed.

Every wait has a deadline, each test runs under an overall timeout, and the
servers and Redis are stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx
import pytest
import redis as redis_py
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .eventstream import ablocks
from .redisserver import Redis, redis_server
from .servers import Server, serve

pytestmark = pytest.mark.servers

APP = "tests.apps.broadcast_app"
KINDS = ["redis", "redis-stream"]
#: The longest one wait for something that should happen may take (seconds).
WAIT = 20.0
#: The longest a whole test may take.
TEST_TIMEOUT = 120.0

T = TypeVar("T")


def backend(redis: Redis, kind: str) -> dict[str, str]:
    return {"MICROWEB_BROADCAST_URL": redis.url if kind == "redis" else redis.stream_url}


def new_channel() -> str:
    return f"room:{uuid.uuid4().hex[:12]}"


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


# ------------------------------------------------------------------ clients


class Feed:
    """What one client received on a channel, in order (`data`, and the SSE `ids`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: list[str] = []
        self.ids: list[str | None] = []
        self.pid: int | None = None  # the process that serves it (SSE: from its first comment)
        self.ready = False  # the subscription is confirmed
        self.close_code: int | None = None  # WebSocket: the server's close code
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self.data)} messages, last {self.data[-3:]}>"

    def add(self, data: str, ident: str | None = None) -> None:
        self.data.append(data)
        self.ids.append(ident)
        self.changed()

    def changed(self) -> None:
        self._changed.set()

    @property
    def open(self) -> bool:
        return self.task is not None and not self.task.done()

    async def wait(
        self, condition: Callable[[Feed], bool], what: str, timeout: float = WAIT
    ) -> bool:
        """Wait until `condition(self)`; False after `timeout` seconds. A client that
        failed raises its error; one that ended without `condition` fails the test."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition(self):
            if self.task is not None and self.task.done():
                self.task.result()  # its error, if it had one
                raise AssertionError(f"{self!r} ended before {what}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def expect(self, condition: Callable[[Feed], bool], what: str) -> None:
        assert await self.wait(condition, what), f"{self!r}: no {what} within {WAIT:g} s"


async def expect_all(feeds: list[Feed], condition: Callable[[Feed], bool], what: str) -> None:
    for feed in feeds:
        await feed.expect(condition, what)


def ends_with(last: str) -> Callable[[Feed], bool]:
    return lambda feed: last in feed.data


class Clients:
    """SSE and WebSocket clients of one test, each read by a task; all closed on exit."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.feeds: list[Feed] = []

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for feed in self.feeds:
            await self.close(feed)

    async def close(self, feed: Feed) -> None:
        assert feed.task is not None
        feed.task.cancel()
        await asyncio.gather(feed.task, return_exceptions=True)

    async def _start(self, feed: Feed, reader: Awaitable[None]) -> Feed:
        async def read() -> None:
            try:
                await reader
            finally:
                feed.changed()

        feed.task = asyncio.create_task(read())
        self.feeds.append(feed)
        await feed.expect(lambda f: f.ready, "confirmed subscription")
        return feed

    async def sse(self, server: Server, channel: str, last_id: str | None = None) -> Feed:
        """An SSE client of `channel`, once its subscription is confirmed."""
        feed = Feed(f"sse@{server.kind}:{port(server)}" + (f" from {last_id}" if last_id else ""))
        headers = {"last-event-id": last_id} if last_id else {}

        async def reader() -> None:
            url = f"{server.url}/sse/{channel}"
            async with self.http.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200, await response.aread()
                async for block in ablocks(response.aiter_raw()):
                    if block.is_comment:
                        for comment in block.comments:
                            if comment.startswith("subscribed pid="):
                                feed.pid = int(comment.removeprefix("subscribed pid="))
                                feed.ready = True
                                feed.changed()
                    else:
                        assert block.data is not None
                        feed.add(block.data, block.id)

        return await self._start(feed, reader())

    async def ws(self, server: Server, channel: str) -> Feed:
        """A WebSocket client of `channel`, once its subscription is confirmed."""
        feed = Feed(f"ws@{server.kind}:{port(server)}")

        async def reader() -> None:
            url = f"{server.url.replace('http://', 'ws://')}/ws/{channel}"
            async with connect(url, compression=None, max_size=None, open_timeout=WAIT) as ws:
                assert await ws.recv() == "subscribed"
                feed.pid, feed.ready = server.pid, True
                feed.changed()
                with contextlib.suppress(ConnectionClosed):
                    async for message in ws:
                        assert isinstance(message, str)
                        feed.add(message)
                feed.close_code = ws.close_code

        return await self._start(feed, reader())


async def post(
    http: httpx.AsyncClient, server: Server, channel: str, data: str, *, sync: bool = True
) -> httpx.Response:
    """Publish through `server`: its ``def`` route (`publish_sync`) or its ``async def`` one."""
    route = "publish" if sync else "apublish"
    return await http.post(f"{server.url}/{route}/{channel}", content=data)


async def publish(
    http: httpx.AsyncClient, server: Server, channel: str, data: str, *, sync: bool = True
) -> str | None:
    """`post`, which must succeed; the event's id."""
    response = await post(http, server, channel, data, sync=sync)
    assert response.status_code == 200, response.text
    ident: str | None = response.json()["id"]
    return ident


async def publish_until_taken(
    http: httpx.AsyncClient, server: Server, channel: str, data: str
) -> str | None:
    """Post `data` until the server takes it (a 500 while it reconnects to Redis)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        response = await post(http, server, channel, data)
        if response.status_code == 200:
            ident: str | None = response.json()["id"]
            return ident
        assert response.status_code == 500, response.text
        assert loop.time() < deadline, f"{server.kind} still answers 500 to a post: {response.text}"
        await asyncio.sleep(0.05)  # a retry, not a synchronisation


async def probe_until_seen(
    http: httpx.AsyncClient, server: Server, channel: str, feeds: list[Feed]
) -> None:
    """Redis pub/sub keeps nothing: after a reconnection, post probes until every
    client has seen one (its subscription was renewed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    for n in range(1, 10_000):
        response = await post(http, server, channel, f"probe {n}")
        if response.status_code == 200:
            seen = [
                await feed.wait(lambda f: any(d.startswith("probe") for d in f.data), "probe", 0.5)
                for feed in feeds
            ]
            if all(seen):
                return
        assert loop.time() < deadline, f"no probe reached {feeds} within {WAIT:g} s"
    raise AssertionError("unreachable")


async def log_shows(server: Server, text: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while text not in server.log():
        assert loop.time() < deadline, f"{server.kind}'s log has no {text!r}:\n{server.log()}"
        await asyncio.sleep(0.05)  # polling a file written by another process


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def listeners(redis: Redis, kind: str, channel: str) -> int:
    """The connections that listen to `channel` on `redis`: subscribed to it (pub/sub),
    or whose last command was XREAD (Streams: each process's reading loop)."""
    with redis_py.Redis.from_url(redis.url) as client:
        if kind == "redis":
            return int(client.pubsub_numsub(channel)[0][1])
        return sum(1 for c in client.client_list() if c["cmd"] == "xread")


def without(prefix: str, data: list[str]) -> list[str]:
    return [d for d in data if not d.startswith(prefix)]


# ------------------------------------------ two uvicorns, gunicorn, waitress


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=KINDS)
def cluster(request: pytest.FixtureRequest, redis: Redis) -> Iterator[tuple[str, list[Server]]]:
    kind = str(request.param)
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(serve(server, APP, env=backend(redis, kind)))
            for server in ("uvicorn", "uvicorn", "gunicorn", "waitress")
        ]
        yield kind, servers


def test_a_post_to_any_server_reaches_every_client_of_every_server_in_order(
    redis: Redis, cluster: tuple[str, list[Server]]
) -> None:
    kind, servers = cluster
    channel = new_channel()

    async def go() -> None:
        async with httpx.AsyncClient(timeout=WAIT) as http, Clients(http) as clients:
            feeds = [await clients.ws(server, channel) for server in servers[:2]]
            feeds += [await clients.sse(server, channel) for server in servers]
            posted: list[str] = []
            ids: list[str | None] = []
            answered_by = set()
            for n in range(1, 25):
                server = servers[n % 4]
                sync = n % 8 < 4  # def and async def handlers, under both protocols
                posted.append(f"{n} via {server.kind} ({'def' if sync else 'async def'})")
                response = await post(http, server, channel, posted[-1], sync=sync)
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
                answered_by.add(response.json()["pid"])
            assert len(answered_by) == 4  # four processes published
            await expect_all(feeds, ends_with(posted[-1]), "last message")
            for feed in feeds:
                assert feed.data == posted, feed.name
            # one connection per process serves its subscribers (the uvicorns have two)
            assert listeners(redis, kind, channel) == 4
            sse_ids = [feed.ids for feed in feeds if feed.name.startswith("sse")]
            if kind == "redis":
                assert ids == [None] * len(posted)
                assert sse_ids == [ids] * 4  # pub/sub has no ids
            else:
                # every process sees the same ids, the ones publish returned, increasing
                assert sse_ids == [ids] * 4
                keys = [tuple(map(int, str(i).split("-"))) for i in ids]
                assert keys == sorted(keys) and len(set(keys)) == len(keys)

    run(go())


# ------------------------------------------------- gunicorn --preload, two workers


@pytest.mark.parametrize("kind", KINDS)
def test_gunicorn_preload_both_workers_get_every_post(redis: Redis, kind: str) -> None:
    # MICROWEB_BROADCAST_WARM: the master publishes while it imports the app, so it
    # holds Redis connections (and the shared loop's thread) when it forks
    env = {**backend(redis, kind), "MICROWEB_BROADCAST_WARM": "1"}
    channel = new_channel()
    with serve("gunicorn", APP, workers=2, preload=True, env=env) as server:

        async def go() -> None:
            async with httpx.AsyncClient(timeout=WAIT) as http, Clients(http) as clients:
                # the kernel gives each connection to one worker: open streams until
                # each worker holds one (a stream on a worker seen already is closed)
                by_worker: dict[int, Feed] = {}
                deadline = asyncio.get_running_loop().time() + WAIT
                while len(by_worker) < 2:
                    assert asyncio.get_running_loop().time() < deadline, by_worker
                    feed = await clients.sse(server, channel)
                    assert feed.pid is not None
                    if feed.pid in by_worker:
                        await clients.close(feed)
                    else:
                        by_worker[feed.pid] = feed
                assert sorted(by_worker) == sorted(server.worker_pids())
                posted = [f"{n}" for n in range(1, 11)]
                for n, data in enumerate(posted):
                    await publish(http, server, channel, data, sync=n % 2 == 0)
                feeds = list(by_worker.values())
                await expect_all(feeds, ends_with(posted[-1]), "last message")
                for feed in feeds:
                    assert feed.data == posted, feed.name
                # the workers listen on connections of their own; the master's has no channel
                assert listeners(redis, kind, channel) == 2

        run(go())


# ---------------------------------------------------- Redis killed and restarted


@pytest.mark.parametrize("kind", KINDS)
def test_redis_killed_and_restarted_under_open_subscribers(kind: str) -> None:
    channel = new_channel()
    with redis_server() as redis, contextlib.ExitStack() as stack:
        uvicorn = stack.enter_context(serve("uvicorn", APP, env=backend(redis, kind)))
        waitress = stack.enter_context(serve("waitress", APP, env=backend(redis, kind)))

        async def go() -> None:
            async with httpx.AsyncClient(timeout=WAIT) as http, Clients(http) as clients:
                feeds = [
                    await clients.ws(uvicorn, channel),
                    await clients.sse(uvicorn, channel),
                    await clients.sse(waitress, channel),
                ]
                await publish(http, uvicorn, channel, "before")
                await expect_all(feeds, ends_with("before"), "message before the kill")

                redis.kill()
                # Redis is gone: a post fails (a 500, from BroadcastError), it does not hang
                for server, sync in ((uvicorn, False), (uvicorn, True), (waitress, True)):
                    response = await post(http, server, channel, "while down", sync=sync)
                    assert response.status_code == 500, (server.kind, response.text)
                for server in (uvicorn, waitress):
                    await log_shows(server, "BroadcastError")

                redis.restart()  # same port, empty
                if kind == "redis":
                    # pub/sub: what is published before the subscription is renewed is lost
                    await probe_until_seen(http, waitress, channel, feeds)
                    after = [f"after {n}" for n in range(1, 11)]
                    for n, data in enumerate(after):
                        await publish(http, (uvicorn, waitress)[n % 2], channel, data)
                    await expect_all(feeds, ends_with(after[-1]), "last message")
                    for feed in feeds:
                        assert without("probe", feed.data) == ["before", *after], feed.name
                else:
                    # streams: every post Redis took after the restart reaches every client
                    # (the listener resumes from each channel's last id)
                    after, ids = [], []
                    for n in range(1, 11):
                        server = (uvicorn, waitress)[n % 2]
                        after.append(f"after {n}")
                        ids.append(await publish_until_taken(http, server, channel, after[-1]))
                    await expect_all(feeds, ends_with(after[-1]), "last message")
                    for feed in feeds:
                        assert feed.data == ["before", *after], feed.name
                    for feed in feeds[1:]:
                        assert feed.ids[1:] == ids, feed.name

                    # an SSE client leaves, and comes back with Last-Event-ID through
                    # another server: it gets exactly what it missed, then the live ones
                    leaver = feeds[2]
                    await clients.close(leaver)
                    missed = [f"missed {n}" for n in range(1, 6)]
                    missed_ids = [
                        await publish(http, (uvicorn, waitress)[n % 2], channel, data)
                        for n, data in enumerate(missed)
                    ]
                    last_id = leaver.ids[-1]
                    assert last_id == ids[-1]
                    back = await clients.sse(uvicorn, channel, last_id=last_id)
                    live_id = await publish(http, waitress, channel, "live")
                    await back.expect(ends_with("live"), "live message")
                    assert back.data == [*missed, "live"]
                    assert back.ids == [*missed_ids, live_id]
                    feeds = feeds[:2]
                # the clients opened before the kill are still the same connections
                assert all(feed.open for feed in feeds)
                # and each server said what happened to its listener
                for server in (uvicorn, waitress):
                    await log_shows(server, "lost the Redis listener's connection")
                    await log_shows(server, "reconnected to Redis")

        run(go())


# ------------------------------------------------- Redis frozen while publishing


@pytest.mark.parametrize("kind", KINDS)
def test_redis_frozen_while_posting(kind: str) -> None:
    channel = new_channel()
    with redis_server() as redis, contextlib.ExitStack() as stack:
        uvicorn = stack.enter_context(serve("uvicorn", APP, env=backend(redis, kind)))
        waitress = stack.enter_context(serve("waitress", APP, env=backend(redis, kind)))

        async def go() -> None:
            async with httpx.AsyncClient(timeout=WAIT) as http, Clients(http) as clients:
                feeds = [await clients.ws(uvicorn, channel), await clients.sse(waitress, channel)]
                await publish(http, uvicorn, channel, "before")
                await expect_all(feeds, ends_with("before"), "message before the freeze")

                redis.freeze()
                try:
                    # async def on uvicorn's loop, def in one of waitress's threads
                    posts = [
                        asyncio.create_task(post(http, uvicorn, channel, "frozen", sync=False)),
                        asyncio.create_task(post(http, waitress, channel, "frozen", sync=True)),
                    ]
                    # meanwhile both keep serving: a publish waiting on Redis blocks
                    # neither uvicorn's loop nor waitress (it waits ~3 s; these take ms)
                    for server in (uvicorn, waitress):
                        assert (await http.get(f"{server.url}/pid")).status_code == 200
                    assert not any(task.done() for task in posts)
                    # then the posts fail, answered (the client waits up to WAIT s)
                    responses = await asyncio.gather(*posts)
                    assert [r.status_code for r in responses] == [500, 500]
                    for server in (uvicorn, waitress):
                        await log_shows(server, "did not answer within")
                finally:
                    redis.thaw()

                if kind == "redis":
                    await probe_until_seen(http, waitress, channel, feeds)
                after = [f"after {n}" for n in range(1, 11)]
                for n, data in enumerate(after):
                    await publish_until_taken(http, (uvicorn, waitress)[n % 2], channel, data)
                await expect_all(feeds, ends_with(after[-1]), "last message")
                for feed in feeds:
                    # a post that timed out may still be delivered: Redis runs the
                    # commands it had received once it runs again
                    got = without("frozen", without("probe", feed.data))
                    assert got == ["before", *after], feed.name
                assert all(feed.open for feed in feeds)

        run(go())


# ----------------------------------------------------------- a stalled subscriber

#: Each subscriber of the stalled-subscriber test holds at most this many events.
BACKLOG = 200
#: Messages posted at a time: fewer than BACKLOG, so a client that keeps up never overflows.
BATCH = 100
#: The burst: TOTAL messages of SIZE characters (32 MB), far more than the
#: socket buffers between the server and the stalled client hold (a few MB).
TOTAL, SIZE = 8000, 4000
#: How much the server's memory may grow meanwhile (unbounded, it grows by ~28 MB).
RSS_GROWTH_KB = 10 * 1024


@contextlib.asynccontextmanager
async def stalled_client(server: Server, channel: str) -> AsyncIterator[ClientConnection]:
    """A WebSocket client that reads nothing until asked: the socket's receive
    buffer is small and the client stops reading once it holds one message."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", port(server)))
        sock.setblocking(False)
        url = f"{server.url.replace('http://', 'ws://')}/ws/{channel}"
        async with connect(
            url, sock=sock, max_queue=1, compression=None, max_size=None, open_timeout=WAIT
        ) as ws:
            assert await asyncio.wait_for(ws.recv(), WAIT) == "subscribed"
            yield ws
    finally:
        sock.close()


def test_a_stalled_subscriber_overflows_alone_and_memory_stays_bounded(redis: Redis) -> None:
    channel = new_channel()
    env = {**backend(redis, "redis"), "MICROWEB_BROADCAST_BACKLOG": str(BACKLOG)}
    message = [f"{n}:".ljust(SIZE, "x") for n in range(1, TOTAL + 1)]
    with serve("uvicorn", APP, env=env) as server:

        async def stats(http: httpx.AsyncClient) -> dict[str, int]:
            answer: dict[str, int] = (await http.get(f"{server.url}/stats")).json()
            assert answer["pid"] == server.pid
            return answer

        async def go() -> None:
            async with (
                httpx.AsyncClient(timeout=WAIT) as http,
                Clients(http) as clients,
                stalled_client(server, channel) as stalled,
            ):
                feeds = [
                    await clients.ws(server, channel),
                    await clients.ws(server, channel),
                    await clients.sse(server, channel),
                ]
                assert (await stats(http))["open"] == 4
                assert listeners(redis, "redis", channel) == 1
                before = rss_kb(server.pid)
                for start in range(1, TOTAL + 1, BATCH):
                    query = {"count": BATCH, "size": SIZE, "start": start}
                    response = await http.post(f"{server.url}/burst/{channel}", params=query)
                    assert response.status_code == 200, response.text
                    last = message[start + BATCH - 2]
                    await expect_all(feeds, ends_with(last), f"message {start + BATCH - 1}")
                growth = rss_kb(server.pid) - before
                # the others got every message, in order
                for feed in feeds:
                    assert feed.data == message, feed.name
                # the stalled one's events were dropped, not kept: memory stayed bounded
                assert growth < RSS_GROWTH_KB, f"the server grew by {growth} kB"

                # it reads again: what was in flight, then the server closes it (1013, Try
                # Again Later) as its handler got BroadcastOverflow
                received: list[str] = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        received.append(str(await asyncio.wait_for(stalled.recv(), WAIT)))
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "fell behind")
                assert 0 < len(received) < TOTAL
                assert received == message[: len(received)]  # in order, none skipped
                assert (await stats(http))["overflows"] == 1

                # a client that leaves is let go at once, with no message on its channel
                await clients.close(feeds[0])
                deadline = asyncio.get_running_loop().time() + WAIT
                while (await stats(http))["open"] != 2:
                    assert asyncio.get_running_loop().time() < deadline, await stats(http)
                    await asyncio.sleep(0.02)  # polling another process, with a deadline

        run(go())
