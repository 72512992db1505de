"""examples/feed.py as a browser's EventSource and ``curl`` use it: in-process under
both protocols (``memory://``), then real servers sharing one Redis."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples import feed
from tests.eventstream import Block, blocks
from tests.redisserver import Redis, redis_server
from tests.servers import SERVERS, Server, serve

from .conftest import MakeClient

#: how long a test waits for an event it expects
WAIT = 20.0


class Stream:
    """An open ``/events`` stream, read block by block as the blocks arrive."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        self._blocks = blocks(response.iter_raw())
        self.pid = self.ready()

    def next(self) -> Block:
        """The next event; keep-alive pings (every 15 s) are skipped, but only
        until WAIT has passed, so an event that never comes fails the test."""
        deadline = time.monotonic() + WAIT
        for block in self._blocks:
            if not block.is_comment:
                return block
            assert time.monotonic() < deadline, "no event, only pings"
        raise AssertionError("the stream ended")

    def ready(self) -> int:
        """The ``ready`` event sent once subscribed: the pid of the process serving us."""
        block = self.next()
        assert (block.event, block.id) == ("ready", None), block.lines
        return int(json.loads(block.data or "")["pid"])

    def items(self, count: int) -> list[Block]:
        return [self.next() for _ in range(count)]


def check_items(received: list[Block], posted: list[dict[str, Any]]) -> None:
    """Each event is the item posted, in order: named ``item``, its id the one the
    POST answered, its data the item's JSON."""
    assert [(b.event, b.id) for b in received] == [("item", p["id"]) for p in posted]
    for block, item in zip(received, posted, strict=True):
        assert json.loads(block.data or "") == {k: item[k] for k in ("text", "time", "pid")}


def check_posted(r: httpx.Response, text: str) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    item: dict[str, Any] = r.json()
    assert item["text"] == text
    assert isinstance(item["id"], str) and item["id"]
    return item


# ------------------------------------------------------------- in-process


def test_entry_points() -> None:
    assert feed.wsgi is feed.app.wsgi


def test_page_listens_to_the_stream_and_posts_items(make_client: MakeClient) -> None:
    r = make_client(feed.app).get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert page.startswith("<!doctype html>")
    assert '<link rel="stylesheet" href="/static/style.css">' in page
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    assert 'new EventSource("/events")' in script.group(1)
    for name in ("ready", "item"):  # the event names the stream sends
        assert f'addEventListener("{name}"' in script.group(1)
    assert 'fetch("/items", {method: "POST"' in script.group(1)
    assert make_client(feed.app).get("/static/style.css").status_code == 200


def test_posted_items_reach_every_stream_in_order(make_client: MakeClient) -> None:
    client = make_client(feed.app)
    with (
        client.stream("GET", "/events") as first,
        client.stream("GET", "/events") as second,
    ):
        streams = [Stream(first), Stream(second)]  # subscribed, both
        posted = []
        for text in ("first", "second", "third"):
            posted.append(check_posted(client.post("/items", data={"text": text}), text))
        for stream in streams:
            check_items(stream.items(3), posted)
    ids = [int(item["id"]) for item in posted]  # memory:// numbers them
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_last_event_id_replays_exactly_what_came_after(make_client: MakeClient) -> None:
    client = make_client(feed.app)
    posted = [check_posted(client.post("/items", data={"text": t}), t) for t in "abcd"]
    # what a reconnecting EventSource sends: the id of the last event it saw
    headers = {"Last-Event-ID": posted[1]["id"]}
    with client.stream("GET", "/events", headers=headers) as r:
        stream = Stream(r)
        check_items(stream.items(2), posted[2:])  # c and d, not a and b
        later = check_posted(client.post("/items", data={"text": "e"}), "e")
        check_items([stream.next()], [later])  # then live, nothing in between


def test_an_unknown_last_event_id_is_live_only(make_client: MakeClient) -> None:
    client = make_client(feed.app)
    check_posted(client.post("/items", data={"text": "before"}), "before")
    for last_id in ("not an id", "-1", "1" * 30):
        with client.stream("GET", "/events", headers={"Last-Event-ID": last_id}) as r:
            stream = Stream(r)
            after = check_posted(client.post("/items", data={"text": last_id}), last_id)
            check_items([stream.next()], [after])


@pytest.mark.parametrize(
    ("data", "files", "detail"),
    [
        ({}, None, "text is required"),
        ({"text": "  "}, None, "text is required"),
        ({"text": "x" * 281}, None, "text is longer than 280 characters"),
        ({}, {"text": ("a.txt", b"hello")}, "text is required"),
    ],
)
def test_invalid_items_are_refused(
    make_client: MakeClient, data: dict[str, str], files: Any, detail: str
) -> None:
    r = make_client(feed.app).post("/items", data=data, files=files)
    assert r.status_code == 422
    assert r.json() == {"detail": detail}


def test_an_item_is_trimmed_and_may_be_unicode(make_client: MakeClient) -> None:
    client = make_client(feed.app)
    with client.stream("GET", "/events") as r:
        stream = Stream(r)
        item = check_posted(client.post("/items", data={"text": "  café ☕\n"}), "café ☕")
        check_items([stream.next()], [item])
    assert item["pid"] == stream.pid  # one process


# ------------------------------------------------------------ real servers


@pytest.fixture
def redis() -> Iterator[Redis]:
    with redis_server() as server:
        yield server


def post(server: Server, text: str) -> dict[str, Any]:
    """POST an item on a connection of its own (so gunicorn may hand it to any worker)."""
    r = httpx.post(f"{server.url}/items", data={"text": text}, timeout=WAIT)
    return check_posted(r, text)


def open_stream(stack: contextlib.ExitStack, server: Server, last_id: str | None = None) -> Stream:
    """A stream on a connection of its own, subscribed (its ``ready`` event read)."""
    client = stack.enter_context(httpx.Client(base_url=server.url, timeout=WAIT))
    headers = {"Last-Event-ID": last_id} if last_id else {}
    return Stream(stack.enter_context(client.stream("GET", "/events", headers=headers)))


def every_worker_answers(server: Server, workers: int) -> None:
    """Post until each of the `workers` processes has taken a post: every worker
    is up and accepting connections (gunicorn's workers boot one by one)."""
    deadline = time.monotonic() + 60
    answered = set()
    while len(answered) < workers:
        assert time.monotonic() < deadline, f"only {answered} answered"
        answered.add(post(server, "warming up")["pid"])


def streams_on_every_worker(
    stack: contextlib.ExitStack, server: Server, workers: int, attempts: int = 12
) -> list[Stream]:
    """A stream on each worker process of `server`: the kernel hands each new
    connection to one of them, so open streams until each worker holds one,
    closing those that land on a worker already holding one."""
    every_worker_answers(server, workers)
    kept: dict[int, Stream] = {}
    for _ in range(attempts):
        with contextlib.ExitStack() as attempt:
            stream = open_stream(attempt, server)
            if stream.pid not in kept:
                kept[stream.pid] = stream
                stack.enter_context(attempt.pop_all())  # kept open until the test ends
        if len(kept) == workers:
            return list(kept.values())
    raise AssertionError(f"{attempts} streams, all on the workers {sorted(kept)}")


@pytest.mark.servers
def test_gunicorn_two_workers_share_the_feed_and_resume(redis: Redis) -> None:
    """``gunicorn --workers 2 examples.feed:wsgi`` on ``redis-stream://``: an item
    posted to either worker reaches the streams of both, in order; a stream that
    reconnects with ``Last-Event-ID`` gets exactly what it missed."""
    env = {"MICROWEB_BROADCAST_URL": f"{redis.stream_url}?maxlen=1000"}
    with (
        serve("gunicorn", "examples.feed", workers=2, threads=16, env=env) as server,
        contextlib.ExitStack() as stack,
    ):
        streams = streams_on_every_worker(stack, server, 2)
        # gunicorn's two workers (listed once both are up: they fork one by one)
        assert {s.pid for s in streams} == set(server.worker_pids())
        posted = [post(server, f"item {n}") for n in range(6)]
        for stream in streams:
            check_items(stream.items(6), posted)
        # both workers hold streams: each item reached a worker that did not publish it
        for item in posted:
            assert {s.pid for s in streams} - {item["pid"]}

        # a browser that lost its connection after item 1 comes back with its id
        more = [post(server, f"item {n}") for n in range(6, 9)]
        again = open_stream(stack, server, last_id=posted[1]["id"])
        check_items(again.items(7), posted[2:] + more)
        last = post(server, "live again")
        check_items([again.next()], [last])
        for stream in streams:
            check_items(stream.items(4), [*more, last])


@pytest.mark.servers
def test_uvicorn_gunicorn_and_waitress_on_one_redis(redis: Redis) -> None:
    """Two uvicorn workers, two gunicorn workers and a waitress on one Redis: an
    item posted to any server reaches the streams of all, in order; a stream cut
    on one server resumes on another."""
    env = {"MICROWEB_BROADCAST_URL": f"{redis.stream_url}?maxlen=1000"}
    with (
        serve("uvicorn", "examples.feed", workers=2, env=env) as uvicorn,
        serve("gunicorn", "examples.feed", workers=2, threads=16, env=env) as gunicorn,
        serve("waitress", "examples.feed", threads=16, env=env) as waitress,
        contextlib.ExitStack() as stack,
    ):
        servers = (uvicorn, gunicorn, waitress)
        streams = [open_stream(stack, server) for server in servers for _ in range(2)]
        assert len({s.pid for s in streams}) >= 3  # at least one process per server
        posted = [post(server, f"to {server.kind}") for server in servers * 2]
        assert len({item["pid"] for item in posted}) >= 3
        for stream in streams:
            check_items(stream.items(len(posted)), posted)

        # a page on waitress loses its connection after an item; it
        # reconnects (a load balancer sends it to uvicorn) with the last id it saw
        with contextlib.ExitStack() as cut:
            lost = open_stream(cut, waitress)
            first = post(gunicorn, "seen")
            check_items([lost.next()], [first])
        missed = [post(server, f"missed on {server.kind}") for server in servers]
        resumed = open_stream(stack, uvicorn, last_id=first["id"])
        check_items(resumed.items(3), missed)
        last = post(waitress, "live")
        check_items([resumed.next()], [last])


@pytest.mark.servers
@pytest.mark.parametrize("kind", SERVERS)
def test_example_runs_as_documented(kind: str) -> None:
    """``uvicorn examples.feed:app.asgi``, ``waitress-serve --threads=16
    examples.feed:app.wsgi``, ``gunicorn examples.feed:wsgi``: one process,
    ``memory://``."""
    with (
        serve(kind, "examples.feed", threads=16, env={"MICROWEB_BROADCAST_URL": ""}) as server,
        contextlib.ExitStack() as stack,
    ):
        assert 'new EventSource("/events")' in httpx.get(f"{server.url}/", timeout=WAIT).text
        stream = open_stream(stack, server)
        assert stream.pid == server.worker_pids()[0]
        posted = [post(server, text) for text in ("one", "two")]
        assert [item["id"] for item in posted] == ["1", "2"]
        check_items(stream.items(2), posted)
        again = open_stream(stack, server, last_id="1")  # memory:// replays too
        check_items([again.next()], posted[1:])


class Visitor(threading.Thread):
    """A page that stays open meanwhile, reading its stream as fast as it comes
    (in a thread) until the item `until`: what it received is in `received`."""

    def __init__(self, server: Server, until: str) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.until = until
        self.subscribed = threading.Event()
        self.received: list[Block] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                stream = open_stream(stack, self.server)
                self.subscribed.set()
                while (
                    not self.received
                    or json.loads(self.received[-1].data or "")["text"] != self.until
                ):
                    self.received.append(stream.next())
        except BaseException as exc:  # reported by the test
            self.failure = exc
            self.subscribed.set()


@pytest.mark.servers
@pytest.mark.parametrize("visitor", [False, True], ids=["alone", "with-another-visitor"])
def test_a_client_back_after_more_than_a_backlog_goes_on(redis: Redis, visitor: bool) -> None:
    """A browser away while more items were posted than a subscriber may hold
    (the Broadcast's backlog, 1000) comes back with its Last-Event-ID: it gets
    every item it missed, in order, then the live ones, and the stream never
    subscribes again without progress. Another page open all along in the same
    process gets every item too."""
    env = {"MICROWEB_BROADCAST_URL": f"{redis.stream_url}?maxlen=5000"}
    with (
        serve("uvicorn", "examples.feed", env=env) as server,
        httpx.Client(base_url=server.url, timeout=WAIT) as http,
        contextlib.ExitStack() as stack,
    ):
        other = Visitor(server, until="live")
        if visitor:
            other.start()
            assert other.subscribed.wait(WAIT) and other.failure is None, other.failure
        seen = check_posted(http.post("/items", data={"text": "seen"}), "seen")
        missed = [
            check_posted(http.post("/items", data={"text": f"missed {n}"}), f"missed {n}")
            for n in range(feed.broadcast.backlog + 100)
        ]
        back = open_stream(stack, server, last_id=seen["id"])
        live = check_posted(http.post("/items", data={"text": "live"}), "live")
        received: list[Block] = []
        readies = 0
        while not received or received[-1].id != live["id"]:
            block = back.next()
            if block.event == "ready":  # subscribed again: only after some progress
                readies += 1
                assert readies <= len(received) + 1, "the stream subscribes again and again"
            else:
                received.append(block)
        check_items(received, [*missed, live])
        if visitor:
            other.join(WAIT)
            assert not other.is_alive() and other.failure is None, other.failure
            check_items(other.received, [seen, *missed, live])


@pytest.mark.servers
@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
@pytest.mark.parametrize("failure", ["frozen", "restarted"])
def test_a_page_stays_open_while_redis_fails(redis: Redis, kind: str, failure: str) -> None:
    """Redis stops answering (SIGSTOP) or is killed and started again: a post
    meanwhile gets a 503 within seconds, not a hang; once Redis is back the
    feed goes on, and the page that stayed open gets the new items."""
    env = {"MICROWEB_BROADCAST_URL": f"{redis.stream_url}?maxlen=1000"}
    with (
        serve(kind, "examples.feed", threads=16, env=env) as server,
        contextlib.ExitStack() as stack,
    ):
        stream = open_stream(stack, server)
        before = post(server, "before")
        check_items([stream.next()], [before])
        if failure == "frozen":
            redis.freeze()
        else:
            redis.kill()
        try:
            r = httpx.post(f"{server.url}/items", data={"text": "meanwhile"}, timeout=WAIT)
        finally:
            if failure == "frozen":
                redis.thaw()
            else:
                redis.start()  # on the same port, empty (no persistence)
        assert r.status_code == 503
        assert r.json() == {
            "detail": "The feed is not answering: your item may not have been posted."
        }
        after = post(server, "after")
        received = stream.next()
        # a frozen Redis had the command in its socket: woken, it may still run it
        if failure == "frozen" and json.loads(received.data or "")["text"] == "meanwhile":
            received = stream.next()
        check_items([received], [after])
