"""Broadcast (API.md §14): memory:// through an app under both protocols, and every
backend on its own, against a real redis-server where it needs one.

Fault tests kill, restart and freeze (SIGSTOP) that redis-server. Every wait has
a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from microweb import App, EventSourceResponse, Request
from microweb.broadcast import Broadcast, BroadcastError, BroadcastOverflow, Event
from tests.conftest import MakeClient
from tests.eventstream import blocks
from tests.redisserver import Redis, redis_server

T = TypeVar("T")
DEADLINE = 20.0  # seconds: a hang guard, never a measure


def run(coro: Awaitable[T]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(guarded())


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis", "redis-stream"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: Redis = request.getfixturevalue("redis")
    return server.url if request.param == "redis" else server.stream_url


@pytest.fixture(params=["memory", "redis-stream"])
def url_with_ids(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis").stream_url)


@pytest.fixture(params=["redis", "redis-stream"])
def redis_url(request: pytest.FixtureRequest, redis: Redis) -> str:
    return redis.url if request.param == "redis" else redis.stream_url


def has_ids(url: str) -> bool:
    return not url.startswith("redis://")


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # polling a condition, with a deadline


async def next_event(sub: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(sub.__anext__(), DEADLINE)


# ------------------------------------------------------------- through an app


def feed_app(broadcast: Broadcast) -> App:
    app = App()
    app.on_startup(broadcast.connect)
    app.on_shutdown(broadcast.disconnect)

    @app.post("/def/{channel}")
    def post_def(channel: str, request: Request) -> dict[str, Any]:
        return {"id": broadcast.publish_sync(channel, request.text())}

    @app.post("/async/{channel}")
    async def post_async(channel: str, request: Request) -> dict[str, Any]:
        return {"id": await broadcast.publish(channel, await request.text())}

    @app.get("/feed/{channel}")
    async def feed(channel: str, request: Request) -> EventSourceResponse:
        last = request.headers.get("last-event-id")

        async def events() -> AsyncIterator[dict[str, Any]]:
            async with broadcast.subscribe(channel, last_id=last) as sub:
                yield {"comment": "subscribed"}
                async for e in sub:
                    yield {"id": e.id, "data": e.data}

        return EventSourceResponse(events(), ping=None)

    @app.get("/misuse")
    async def misuse() -> str:
        broadcast.publish_sync("c", "x")
        return "published"

    return app


@pytest.mark.parametrize("publisher", ["def", "async"])
def test_posts_reach_a_feed_in_order(make_client: MakeClient, publisher: str) -> None:
    client = make_client(feed_app(Broadcast("memory://")))
    with client, client.stream("GET", "/feed/news") as r:
        it = blocks(r.iter_raw())
        assert next(it).comments == ["subscribed"]  # entered: nothing after this is lost
        ids = [client.post(f"/{publisher}/news", content=f"m{n}").json()["id"] for n in range(3)]
        got = [next(it) for _ in range(3)]
    assert ids == ["1", "2", "3"]
    assert [(b.id, b.data) for b in got] == [("1", "m0"), ("2", "m1"), ("3", "m2")]


def test_last_event_id_resumes_after_that_event(make_client: MakeClient) -> None:
    client = make_client(feed_app(Broadcast("memory://")))
    with client:
        for n in range(5):
            client.post("/def/news", content=f"m{n}")
        client.post("/def/other", content="elsewhere")
        with client.stream("GET", "/feed/news", headers={"Last-Event-ID": "2"}) as r:
            it = blocks(r.iter_raw())
            assert next(it).comments == ["subscribed"]
            replayed = [next(it) for _ in range(3)]
            client.post("/def/news", content="live")
            live = next(it)
    assert [(b.id, b.data) for b in replayed] == [("3", "m2"), ("4", "m3"), ("5", "m4")]
    assert (live.id, live.data) == ("7", "live")


@pytest.mark.parametrize("header", ["garbage", "-1", "9" * 40, "1-2-3", " ", "²", "١٢"])
def test_a_last_event_id_that_is_not_an_id_means_live_only(
    make_client: MakeClient, header: str
) -> None:
    client = make_client(feed_app(Broadcast("memory://")))
    with client:
        client.post("/def/news", content="old")
        try:  # what a browser sends: latin-1 bytes ("²" is 0xB2), else UTF-8's
            raw = header.encode("latin-1")
        except UnicodeEncodeError:
            raw = header.encode("utf-8")
        with client.stream("GET", "/feed/news", headers={"Last-Event-ID": raw}) as r:
            assert r.status_code == 200
            it = blocks(r.iter_raw())
            assert next(it).comments == ["subscribed"]
            client.post("/def/news", content="new")
            assert next(it).data == "new"


def test_publish_sync_on_a_loop_thread_is_refused(make_client: MakeClient) -> None:
    client = make_client(feed_app(Broadcast("memory://")))
    with client:
        assert client.get("/misuse").status_code == 500


def test_websocket_subscriber() -> None:
    from microweb.testing import TestClient

    broadcast = Broadcast("memory://")
    app = feed_app(broadcast)

    @app.websocket("/ws/{channel}")
    async def room(websocket: Any, channel: str) -> None:
        await websocket.accept()
        async with broadcast.subscribe(channel) as events:
            await websocket.send_text("subscribed")
            async for event in events:
                await websocket.send_text(event.data)
                if event.data == "bye":
                    await websocket.close()
                    return

    with TestClient(app, protocol="asgi") as client, client.websocket_connect("/ws/r") as ws:
        assert ws.receive_text() == "subscribed"
        client.post("/def/r", content="hello")
        client.post("/async/r", content="again")
        client.post("/def/r", content="bye")
        assert [ws.receive_text() for _ in range(3)] == ["hello", "again", "bye"]


# ------------------------------------------------------------- every backend


def test_order_and_ids(url: str) -> None:
    async def main() -> None:
        broadcast = Broadcast(url)
        await broadcast.connect()
        try:
            async with broadcast.subscribe("a") as a, broadcast.subscribe("b") as b:
                ids = [await broadcast.publish("a" if n % 2 else "b", str(n)) for n in range(50)]
                got_a = [await next_event(a) for _ in range(25)]
                got_b = [await next_event(b) for _ in range(25)]
            assert [e.data for e in got_a] == [str(n) for n in range(1, 50, 2)]
            assert [e.data for e in got_b] == [str(n) for n in range(0, 50, 2)]
            assert {e.channel for e in got_a} == {"a"}
            if has_ids(url):
                assert all(isinstance(i, str) and i for i in ids)
                assert [e.id for e in got_a] == ids[1::2]
            else:
                assert ids == [None] * 50 and {e.id for e in got_a} == {None}
        finally:
            await broadcast.disconnect()

    run(main())


def test_subscribed_when_entered_even_for_another_client(redis_url: str) -> None:
    """A message another process publishes right after `subscribe` is entered arrives."""
    url = redis_url

    async def main() -> None:
        import redis.asyncio as aioredis

        other = aioredis.Redis.from_url(url.replace("redis-stream://", "redis://"))
        broadcast = Broadcast(url)
        try:
            for n in range(20):
                channel = f"fresh-{n}"  # a new channel each time: a new SUBSCRIBE
                async with broadcast.subscribe(channel) as sub:
                    if has_ids(url):
                        await other.xadd(channel, {"data": "first"})
                    else:
                        await other.publish(channel, "first")
                    assert (await next_event(sub)).data == "first"
        finally:
            await broadcast.disconnect()
            await other.aclose()

    run(main())


def test_live_only_without_last_id(url: str) -> None:
    async def main() -> None:
        broadcast = Broadcast(url)
        try:
            await broadcast.publish("old", "before")
            async with broadcast.subscribe("old") as sub:
                await broadcast.publish("old", "after")
                assert (await next_event(sub)).data == "after"
        finally:
            await broadcast.disconnect()

    run(main())


def test_replay_after_last_id(url_with_ids: str) -> None:
    url = url_with_ids

    async def main() -> None:
        broadcast = Broadcast(url)
        try:
            async with broadcast.subscribe("r") as live:  # the listener reads "r" already
                ids = [await broadcast.publish("r", str(n)) for n in range(10)]
                assert [(await next_event(live)).data for _ in range(10)] == [
                    str(n) for n in range(10)
                ]
                async with broadcast.subscribe("r", last_id=ids[3]) as sub:
                    await broadcast.publish("r", "10")
                    got = [await next_event(sub) for _ in range(7)]
            assert [e.data for e in got] == [str(n) for n in range(4, 11)]
            assert got[0].id == ids[4]
            async with broadcast.subscribe("r", last_id=ids[8]) as sub:  # a cold channel
                assert [(await next_event(sub)).data for _ in range(2)] == ["9", "10"]
                assert sub.last_id == got[-1].id
        finally:
            await broadcast.disconnect()

    run(main())


def test_a_slow_subscriber_overflows_alone(url: str) -> None:
    async def main() -> None:
        broadcast = Broadcast(url, backlog=10)
        try:
            async with broadcast.subscribe("c") as slow, broadcast.subscribe("c") as fast:
                received: list[str] = []
                for n in range(40):
                    await broadcast.publish("c", str(n))
                    received.append((await next_event(fast)).data)
                    assert len(slow._buffer or ()) <= 10  # memory stays bounded
                assert received == [str(n) for n in range(40)]
                with pytest.raises(BroadcastOverflow):
                    await next_event(slow)
                with pytest.raises(BroadcastOverflow):  # it stays ended
                    await next_event(slow)
                await broadcast.publish("c", "still")
                assert (await next_event(fast)).data == "still"
        finally:
            await broadcast.disconnect()

    run(main())


def test_resubscribe_from_the_last_id_after_an_overflow(url_with_ids: str) -> None:
    """A replay longer than the backlog is read as it is consumed: no overflow."""
    url = url_with_ids

    async def main() -> None:
        broadcast = Broadcast(url, backlog=5)
        seen: list[str] = []
        last: str | None = None
        try:
            async with broadcast.subscribe("c") as keep_reading:
                for n in range(12):
                    await broadcast.publish("c", str(n))
                    await next_event(keep_reading)  # the channel's reader is ahead
                async with broadcast.subscribe("c", last_id=None) as sub:
                    for n in range(12, 15):
                        await broadcast.publish("c", str(n))
                    seen.append((await next_event(sub)).data)
                    last = sub.last_id
                    for n in range(15, 30):
                        await broadcast.publish("c", str(n))
                    with pytest.raises(BroadcastOverflow):
                        while True:
                            seen.append((await next_event(sub)).data)
                async with broadcast.subscribe("c", last_id=last) as again:
                    while len(seen) < 18:
                        seen.append((await next_event(again)).data)
            assert seen == [str(n) for n in range(12, 30)]
        finally:
            await broadcast.disconnect()

    run(main())


def test_disconnect_ends_open_subscriptions(url: str) -> None:
    async def main() -> None:
        broadcast = Broadcast(url)
        await broadcast.connect()
        ended = asyncio.Event()

        async def read() -> list[str]:
            async with broadcast.subscribe("c") as sub:
                ready.set()
                out = [e.data async for e in sub]
            ended.set()
            return out

        ready = asyncio.Event()
        task = asyncio.create_task(read())
        await asyncio.wait_for(ready.wait(), DEADLINE)
        await broadcast.publish("c", "one")
        await broadcast.disconnect()
        assert await asyncio.wait_for(task, DEADLINE) in (["one"], [])
        assert ended.is_set()

    run(main())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="memory://"):
        Broadcast("http://127.0.0.1")
    with pytest.raises(ValueError, match="maxlen"):
        Broadcast("redis://127.0.0.1/0?maxlen=5")
    with pytest.raises(ValueError, match="backlog"):
        Broadcast("memory://", backlog=0)
    broadcast = Broadcast("memory://")
    with pytest.raises(TypeError, match=r"json\.dumps"):
        run(broadcast.publish("c", {"a": 1}))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="channel"):
        broadcast.subscribe("")
    with pytest.raises(TypeError, match=r"json\.dumps"):
        broadcast.publish_sync("c", b"bytes")  # type: ignore[arg-type]


def test_publish_sync_from_threads_and_not_on_a_loop(url: str) -> None:
    async def main() -> None:
        broadcast = Broadcast(url)
        await broadcast.connect()
        try:
            async with broadcast.subscribe("t") as sub:
                threads = [
                    threading.Thread(target=broadcast.publish_sync, args=("t", str(n)))
                    for n in range(8)
                ]
                for t in threads:
                    t.start()
                got = sorted([(await next_event(sub)).data for _ in range(8)])
                for t in threads:
                    await asyncio.to_thread(t.join)
                assert got == sorted(str(n) for n in range(8))
                with pytest.raises(RuntimeError, match=r"await broadcast\.publish"):
                    broadcast.publish_sync("t", "x")
        finally:
            await broadcast.disconnect()

    run(main())


def test_a_subscriber_on_another_loop(url: str) -> None:
    """The backend lives on one loop; a subscriber on another still gets every event."""
    broadcast = Broadcast(url)
    home_ready = threading.Event()
    stop: asyncio.Future[None] | None = None
    home: asyncio.AbstractEventLoop | None = None

    def home_thread() -> None:
        async def main() -> None:
            nonlocal stop, home
            await broadcast.connect()
            home = asyncio.get_running_loop()
            stop = home.create_future()
            home_ready.set()
            await stop
            await broadcast.disconnect()

        asyncio.run(main())

    thread = threading.Thread(target=home_thread)
    thread.start()
    try:
        assert home_ready.wait(DEADLINE)

        async def subscriber() -> list[str]:
            async with broadcast.subscribe("x") as sub:
                await broadcast.publish("x", "from the other loop")
                await asyncio.to_thread(broadcast.publish_sync, "x", "from a thread")
                return [(await next_event(sub)).data for _ in range(2)]

        assert run(subscriber()) == ["from the other loop", "from a thread"]
    finally:
        assert home is not None and stop is not None
        home.call_soon_threadsafe(stop.set_result, None)
        thread.join(DEADLINE)


# ------------------------------------------------------------- Redis itself


def client_list(redis: Redis) -> list[dict[str, str]]:
    with redis.client() as s:
        s.sendall(b"CLIENT LIST\r\n")
        data = b""
        while not data.endswith(b"\r\n") or data.count(b"\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.decode().split("\r\n", 1)[1].strip().splitlines()
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in lines]


@pytest.mark.parametrize("kind", ["redis", "redis-stream"])
def test_one_listening_connection_serves_every_subscriber(redis: Redis, kind: str) -> None:
    url = redis.url if kind == "redis" else redis.stream_url

    async def main() -> None:
        broadcast = Broadcast(url)
        try:
            import contextlib

            async with contextlib.AsyncExitStack() as stack:
                subs = [
                    await stack.enter_async_context(broadcast.subscribe(f"ch{n % 10}"))
                    for n in range(100)
                ]
                await broadcast.publish("ch3", "x")
                for sub in subs[3::10]:
                    assert (await next_event(sub)).data == "x"
                listening = [
                    c for c in client_list(redis) if c.get("cmd") in ("subscribe", "xread")
                ]
                assert len(listening) == 1, listening
                if kind == "redis":
                    assert listening[0]["sub"] == "10"
        finally:
            await broadcast.disconnect()

    run(main())


@pytest.mark.parametrize("kind", ["redis", "redis-stream"])
def test_redis_killed_and_restarted_under_open_subscribers(kind: str, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "microweb.broadcast")
    with redis_server() as redis:
        url = redis.url if kind == "redis" else redis.stream_url

        async def main() -> None:
            broadcast = Broadcast(url)
            try:
                async with broadcast.subscribe("c") as sub:
                    await broadcast.publish("c", "before")
                    assert (await next_event(sub)).data == "before"
                    redis.kill()
                    with pytest.raises(BroadcastError):
                        await asyncio.wait_for(broadcast.publish("c", "while down"), DEADLINE)
                    redis.restart()
                    # pub/sub: what is published before the subscription is renewed is
                    # lost (at most once); probe until one gets through
                    received: list[str] = []
                    n = 0
                    loop = asyncio.get_running_loop()
                    end = loop.time() + DEADLINE
                    while not received:
                        assert loop.time() < end, "the subscription was not renewed"
                        n += 1
                        with_error = False
                        try:
                            await broadcast.publish("c", f"probe {n}")
                        except BroadcastError:
                            with_error = True
                        if not with_error:
                            try:
                                received.append((await asyncio.wait_for(sub.__anext__(), 0.2)).data)
                            except asyncio.TimeoutError:
                                pass
                    for m in range(20):
                        await broadcast.publish("c", f"after {m}")
                    after: list[str] = []
                    while len(after) < 20:  # late probes may come first; nothing else
                        data = (await next_event(sub)).data
                        assert data.startswith(("after", "probe")), data
                        if data.startswith("after"):
                            after.append(data)
                    assert after == [f"after {m}" for m in range(20)]
            finally:
                await broadcast.disconnect()

        run(main())
    assert "reconnected to Redis" in caplog.text


def test_streams_lose_nothing_across_a_restart(caplog: Any) -> None:
    """Messages XADDed while the listener is away are read when it comes back."""
    with redis_server() as redis:

        async def main() -> None:
            import redis.asyncio as aioredis

            broadcast = Broadcast(redis.stream_url)
            try:
                async with broadcast.subscribe("c") as sub:
                    await broadcast.publish("c", "0")
                    assert (await next_event(sub)).data == "0"
                    # the listener is frozen out (its connection killed), Redis stays
                    backend = broadcast._backend
                    other = aioredis.Redis.from_url(redis.url)
                    try:
                        await other.client_kill_filter(_type="normal", skipme=True)
                        for n in range(1, 30):
                            await other.xadd("c", {"data": str(n)})
                    finally:
                        await other.aclose()
                    got = [(await next_event(sub)).data for _ in range(29)]
                    assert got == [str(n) for n in range(1, 30)]
                    assert backend is broadcast._backend
            finally:
                await broadcast.disconnect()

        run(main())


@pytest.mark.parametrize("kind", ["redis", "redis-stream"])
def test_a_frozen_redis_fails_publish_and_recovers(kind: str) -> None:
    with redis_server() as redis:
        url = redis.url if kind == "redis" else redis.stream_url

        async def main() -> None:
            broadcast = Broadcast(url, timeout=1.0)
            try:
                async with broadcast.subscribe("c") as sub:
                    redis.freeze()
                    try:
                        with pytest.raises(BroadcastError, match="did not answer"):
                            await asyncio.wait_for(broadcast.publish("c", "x"), DEADLINE)
                        with pytest.raises(BroadcastError):
                            await asyncio.wait_for(
                                broadcast.subscribe("other").__aenter__(), DEADLINE
                            )
                    finally:
                        redis.thaw()
                    loop = asyncio.get_running_loop()
                    end = loop.time() + DEADLINE
                    while True:
                        assert loop.time() < end, "no delivery after the server came back"
                        try:
                            await broadcast.publish("c", "back")
                            event = await asyncio.wait_for(sub.__anext__(), 0.5)
                        except (BroadcastError, asyncio.TimeoutError):
                            continue
                        if event.data == "back":
                            break
            finally:
                await broadcast.disconnect()

        run(main())


@pytest.mark.parametrize("kind", ["redis", "redis-stream"])
def test_a_listener_that_fails_is_logged_and_restarted(
    redis: Redis, kind: str, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from microweb.broadcast import _redis, _streams

    caplog.set_level(logging.WARNING, "microweb.broadcast")
    url = redis.url if kind == "redis" else redis.stream_url
    failures = [RuntimeError("a bug in delivery")]
    real = _redis.deliver

    def flaky(subs: Any, event: Event, home: Any) -> None:
        if failures:
            raise failures.pop()
        real(subs, event, home)

    monkeypatch.setattr(_redis, "deliver", flaky)
    monkeypatch.setattr(_streams, "deliver", flaky)

    async def main() -> None:
        broadcast = Broadcast(url)
        try:
            async with broadcast.subscribe("c") as sub:
                await broadcast.publish("c", "lost to the bug")
                await until(lambda: not failures, "the failure")
                loop = asyncio.get_running_loop()
                end = loop.time() + DEADLINE
                while True:
                    assert loop.time() < end, "the listener did not come back"
                    await broadcast.publish("c", "after")
                    try:
                        event = await asyncio.wait_for(sub.__anext__(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if event.data == "after":
                        break
        finally:
            await broadcast.disconnect()

    run(main())
    assert "a bug in delivery" in caplog.text
    assert "Traceback" in caplog.text  # an unexpected error is logged with its traceback


def _publish_in_child(url: str, queue: Any) -> None:
    try:
        queue.put(asyncio.run(_child_publish(url)))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


async def _child_publish(url: str) -> str:
    broadcast = _FORKED[0]
    await broadcast.publish("forked", f"from {os.getpid()}")
    await broadcast.disconnect()
    return "ok"


_FORKED: list[Broadcast] = []


def test_a_forked_child_makes_its_own_connection(redis: Redis) -> None:
    """A Broadcast connected before a fork works in the child (as under gunicorn --preload)."""

    async def main() -> None:
        broadcast = Broadcast(redis.url)
        _FORKED[:] = [broadcast]
        try:
            async with broadcast.subscribe("forked") as sub:
                context = multiprocessing.get_context("fork")
                queue = context.Queue()
                child = context.Process(target=_publish_in_child, args=(redis.url, queue))
                child.start()
                event = await next_event(sub)
                await asyncio.to_thread(child.join, DEADLINE)
                assert event.data == f"from {child.pid}"
                assert queue.get(timeout=DEADLINE) == "ok"
                await broadcast.publish("forked", "parent still works")
                assert (await next_event(sub)).data == "parent still works"
        finally:
            await broadcast.disconnect()
            _FORKED.clear()

    run(main())


def test_publish_sync_when_the_loop_does_not_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A home loop stuck in blocking code: publish_sync raises BroadcastError, never hangs."""
    import microweb.broadcast

    monkeypatch.setattr(microweb.broadcast, "_SYNC_GRACE", 0.2)
    broadcast = Broadcast("memory://", timeout=0.1)
    release = threading.Event()
    connected = threading.Event()

    def home_thread() -> None:
        async def main() -> None:
            await broadcast.connect()
            connected.set()
            release.wait(DEADLINE)  # blocks the loop: nothing else runs on it
            await broadcast.disconnect()

        asyncio.run(main())

    thread = threading.Thread(target=home_thread)
    thread.start()
    try:
        assert connected.wait(DEADLINE)
        with pytest.raises(BroadcastError, match="did not run the publish"):
            broadcast.publish_sync("c", "x")
    finally:
        release.set()
        thread.join(DEADLINE)


def test_a_live_subscriber_joining_behind_the_listener(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener read past the newest id a joining subscriber saw (a publisher in
    another process): it gets what comes next, and is not left waiting."""

    async def main() -> None:
        broadcast = Broadcast(redis.stream_url)
        try:
            async with broadcast.subscribe("j") as first:
                ids = [await broadcast.publish("j", str(n)) for n in range(3)]
                assert [(await next_event(first)).data for _ in range(3)] == ["0", "1", "2"]
                backend = broadcast._backend
                stale = (int(ids[0].split("-")[0]), int(ids[0].split("-")[1]))

                async def newest(channel: str) -> tuple[int, int]:
                    return stale  # as if XREVRANGE answered before the last two came

                monkeypatch.setattr(backend, "_newest", newest)
                async with broadcast.subscribe("j") as late:
                    await broadcast.publish("j", "new")
                    assert (await next_event(late)).data == "new"
        finally:
            await broadcast.disconnect()

    run(main())


@pytest.mark.parametrize("last_id", ["99999999999999-0", "99999999999999"])
def test_a_last_id_from_the_future_starts_live(url_with_ids: str, last_id: str) -> None:
    """A Last-Event-ID past the newest event (from another Redis, or made up) never stops
    the channel for the process's other subscribers."""

    async def main() -> None:
        broadcast = Broadcast(url_with_ids, backlog=50)
        try:
            await broadcast.publish("room", "before")
            async with broadcast.subscribe("room", last_id=last_id) as odd:
                reading = asyncio.ensure_future(odd.__anext__())  # its first read joins
                await until(lambda: odd._pager is None, "the replay to catch up")
                async with broadcast.subscribe("room") as other:
                    await broadcast.publish("room", "m0")
                    assert (await next_event(other)).data == "m0"
                    assert (await asyncio.wait_for(reading, DEADLINE)).data == "m0"
        finally:
            await broadcast.disconnect()

    run(main())


BAD_IDS = [
    "garbage", "²", "1¹", "5-³", "١٢", "-1", "1-2-3", "",
    "18446744073709551616", "1-18446744073709551616",
    "18446744073709551615-18446744073709551615",
]  # fmt: skip


@pytest.mark.parametrize("last_id", BAD_IDS)
def test_a_last_id_that_is_not_an_id_means_live_only(url_with_ids: str, last_id: str) -> None:
    async def main() -> None:
        broadcast = Broadcast(url_with_ids)
        try:
            await broadcast.publish("bad", "before")
            async with broadcast.subscribe("bad", last_id=last_id) as sub:
                await broadcast.publish("bad", "hello")
                assert (await next_event(sub)).data == "hello"
        finally:
            await broadcast.disconnect()

    run(main())


def test_disconnect_logs_no_lost_connection(redis_url: str, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "microweb.broadcast")

    async def main() -> None:
        for _ in range(3):
            broadcast = Broadcast(redis_url)
            async with broadcast.subscribe("c") as sub:
                await broadcast.publish("c", "x")
                await next_event(sub)
            await broadcast.disconnect()

    run(main())
    assert caplog.records == []


def test_a_publishing_task_stops_when_cancelled(redis_url: str) -> None:
    """One cancellation stops a task that publishes in a loop (redis-py can swallow a
    cancellation that meets a reply: publish must not)."""

    async def main() -> None:
        broadcast = Broadcast(redis_url)
        await broadcast.connect()
        kept_running = 0
        published = [0]

        async def publish_forever() -> None:
            while True:
                await broadcast.publish("c", "x")
                published[0] += 1

        try:
            for trial in range(60):
                published[0] = 0
                task = asyncio.ensure_future(publish_forever())
                target = trial % 5 + 1
                await until(lambda: published[0] >= target, "a few publishes")  # noqa: B023
                task.cancel()
                done, _ = await asyncio.wait((task,), timeout=DEADLINE)
                if not done:
                    kept_running += 1
                    task.cancel()
                    await asyncio.wait((task,), timeout=DEADLINE)
                else:
                    assert task.cancelled()
        finally:
            await broadcast.disconnect()
        assert kept_running == 0

    run(main())
