"""Server-Sent Events: `EventSourceResponse` and `format_event`.

In-process under both protocols first (the `make_client` fixture), reading
each event as it arrives; then under real servers (uvicorn, waitress,
gunicorn) serving `tests/apps/sse_app.py`. A source that must not run ahead
waits on a `Gate` the test releases only after it has read what came before,
so "each event reaches the client when it is produced" is shown by the order
of things, not by timing. Nothing sleeps to wait for something; what only the
server process can see (did the generator's ``finally`` run?) is asked of it
through another endpoint, polled with a deadline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import pytest

from microweb import App, EventSourceResponse
from microweb._wsgi_bodies import StreamAborted
from microweb.sse import format_event
from tests.apps.sse_app import Gate
from tests.eventstream import Block, blocks, events
from tests.servers import SERVERS, Server, serve

from .conftest import MakeClient

KINDS = ["sync", "async"]


class Source:
    """Yields `items`; before item i (from 0) it waits until `gate` was released i times.

    `produced` counts the items handed out (`produced_at`: when, on the monotonic
    clock); `finished` is set when the generator's ``finally`` runs. If a release
    never comes, it yields a ``gave-up`` event after a while and ends, so a
    failing test fails instead of hanging.
    """

    def __init__(self, items: Iterable[Any], gated: bool = True, wait: float = 10.0) -> None:
        self.items = list(items)
        self.gated = gated
        self.wait = wait
        self.gate = Gate()
        self.produced = 0
        self.produced_at: list[float] = []
        self.finished = threading.Event()

    def make(self, kind: str) -> Iterator[Any] | AsyncIterator[Any]:
        return self.sync() if kind == "sync" else self.async_()

    def sync(self) -> Iterator[Any]:
        try:
            for i, item in enumerate(self.items):
                if i and self.gated and not self.gate.wait(i, self.wait):
                    yield {"event": "gave-up", "data": f"no release before item {i}"}
                    return
                self.produced = i + 1
                self.produced_at.append(time.monotonic())
                yield item
        finally:
            self.finished.set()

    async def async_(self) -> AsyncIterator[Any]:
        try:
            for i, item in enumerate(self.items):
                if i and self.gated and not await self.gate.wait_async(i, self.wait):
                    yield {"event": "gave-up", "data": f"no release before item {i}"}
                    return
                self.produced = i + 1
                self.produced_at.append(time.monotonic())
                yield item
        finally:
            self.finished.set()

    def release_all(self) -> None:
        for _ in self.items:
            self.gate.release()


def sse_app(source: Source, kind: str, **kwargs: Any) -> App:
    app = App()

    @app.get("/events")
    def stream() -> EventSourceResponse:
        return EventSourceResponse(source.make(kind), **kwargs)

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    return app


@pytest.fixture
def sources() -> Iterator[list[Source]]:
    """Sources made by a test; released at the end, so no thread waits on after it."""
    made: list[Source] = []
    yield made
    for source in made:
        source.release_all()


@pytest.fixture
def new_source(sources: list[Source]) -> Any:
    def new(items: Iterable[Any], **kwargs: Any) -> Source:
        source = Source(items, **kwargs)
        sources.append(source)
        return source

    return new


def whole_body(make_client: MakeClient, items: list[Any], kind: str) -> bytes:
    """The complete body of a stream of `items` (all produced at once)."""
    client = make_client(sse_app(Source(items, gated=False), kind))
    r = client.get("/events")
    assert r.status_code == 200
    return r.content


# ------------------------------------------------------------------ format


@pytest.mark.parametrize("kind", KINDS)
def test_str_events(make_client: MakeClient, kind: str) -> None:
    body = whole_body(make_client, ["hello", "wörld ✓", b"bytes too"], kind)
    assert body == "data: hello\n\ndata: wörld ✓\n\ndata: bytes too\n\n".encode()
    assert [e.data for e in events([body])] == ["hello", "wörld ✓", "bytes too"]


@pytest.mark.parametrize("kind", KINDS)
def test_dict_events_with_every_field(make_client: MakeClient, kind: str) -> None:
    items = [
        {"event": "update", "id": 7, "retry": 2500, "data": "first"},
        {"id": "abc-1", "data": "second"},
        {"comment": "only a comment"},
        {"comment": "a note\nin two lines", "event": "note", "data": "third"},
        {"retry": 0},
    ]
    body = whole_body(make_client, items, kind)
    assert body == (
        b"event: update\nid: 7\nretry: 2500\ndata: first\n\n"
        b"id: abc-1\ndata: second\n\n"
        b": only a comment\n\n"
        b": a note\n: in two lines\nevent: note\ndata: third\n\n"
        b"retry: 0\n\n"
    )
    first, second, comment, third, retry = events([body])
    assert (first.event, first.id, first.retry, first.data) == ("update", "7", 2500, "first")
    assert (second.event, second.id, second.data) == (None, "abc-1", "second")
    assert comment.is_comment and comment.comments == ["only a comment"]
    assert comment.data is None  # a comment dispatches no event
    assert third.comments == ["a note", "in two lines"]
    assert (third.event, third.data) == ("note", "third")
    assert (retry.retry, retry.data) == (0, None)


@pytest.mark.parametrize(
    ("data", "wire", "seen"),
    [
        ("one\ntwo", b"data: one\ndata: two\n\n", "one\ntwo"),
        ("one\r\ntwo", b"data: one\ndata: two\n\n", "one\ntwo"),
        ("one\rtwo", b"data: one\ndata: two\n\n", "one\ntwo"),
        ("a\r\n\r\nb\n", b"data: a\ndata: \ndata: b\ndata: \n\n", "a\n\nb\n"),
        ("\n", b"data: \ndata: \n\n", "\n"),
        (
            "x: y\n: not a comment",
            b"data: x: y\ndata: : not a comment\n\n",
            "x: y\n: not a comment",
        ),
    ],
    ids=["LF", "CRLF", "CR", "blank-and-trailing", "only-newline", "colons"],
)
@pytest.mark.parametrize("kind", KINDS)
def test_multi_line_data(
    make_client: MakeClient, kind: str, data: str, wire: bytes, seen: str
) -> None:
    # A str event and a dict's data are split the same way: one data line per line.
    body = whole_body(make_client, [data, {"data": data, "event": "e"}], kind)
    assert body == wire + b"event: e\n" + wire
    plain, named = events([body])
    # what EventSource hands to the page: every line ending becomes LF
    assert plain.data == seen
    assert (named.event, named.data) == ("e", seen)


@pytest.mark.parametrize("kind", KINDS)
def test_non_str_data_is_sent_as_json(make_client: MakeClient, kind: str) -> None:
    values: list[Any] = [
        {"temp": 21.5, "city": "Zürich", "tags": ["a", "b"]},
        [1, 2, 3],
        42,
        None,
        {"text": "two\nlines"},  # the LF is escaped inside the JSON string: one data line
    ]
    body = whole_body(make_client, [{"data": v} for v in values], kind)
    assert body.split(b"\n\n")[:2] == [
        'data: {"temp":21.5,"city":"Zürich","tags":["a","b"]}'.encode(),
        b"data: [1,2,3]",
    ]
    received = events([body])
    assert all(len(e.values("data")) == 1 for e in received)
    assert [json.loads(e.data or "") for e in received] == values


@pytest.mark.parametrize(
    "event",
    [
        {"event": "two\nlines", "data": "x"},
        {"event": "cr\r", "data": "x"},
        {"id": "1\r\n2", "data": "x"},
        {"id": "nul\0", "data": "x"},
        {"retry": -1},
        {"retry": True},
        {"retry": "1000"},
        {"retry": 1.5},
        {"name": "x", "data": "y"},
    ],
    ids=repr,
)
def test_format_event_refuses_what_a_client_would_misread(event: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        format_event(event)


@pytest.mark.parametrize("event", [42, ["data"], None])
def test_format_event_refuses_other_types(event: Any) -> None:
    with pytest.raises(TypeError):
        format_event(event)


@pytest.mark.parametrize("events_arg", ["data: x", b"data: x", {"data": "x"}, 42])
def test_a_single_event_is_not_a_source(events_arg: Any) -> None:
    # EventSourceResponse({"data": "x"}) would otherwise stream the dict's keys
    with pytest.raises(TypeError):
        EventSourceResponse(events_arg)


@pytest.mark.parametrize("ping", [0, -1, 0.0])
def test_ping_must_be_positive(ping: float) -> None:
    with pytest.raises(ValueError):
        EventSourceResponse(iter(["x"]), ping=ping)


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_event_mid_stream(
    make_client: MakeClient,
    protocol: str,
    kind: str,
    new_source: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The ValueError is raised while the body streams, after the 200 and the first
    # event are sent: the stream stops there, the error is logged, the worker lives on.
    caplog.set_level(logging.ERROR, logger="microweb")
    source = new_source(["before", {"event": "bad\nname", "data": "x"}, "after"], gated=False)
    client = make_client(sse_app(source, kind))
    received: list[Block] = []
    with client.stream("GET", "/events") as r:
        assert r.status_code == 200
        if protocol == "wsgi":
            # the server gets StreamAborted and drops the connection
            with pytest.raises(StreamAborted):
                received.extend(blocks(r.iter_raw()))
        else:
            # the app returns without ending the body: the client sees a cut-short
            # response, as a server shows it (it drops the connection)
            with pytest.raises(httpx.RemoteProtocolError):
                for block in blocks(r.iter_raw()):
                    received.append(block)
    assert [b.data for b in received] == ["before"]
    assert source.finished.wait(5), "the source was not closed"
    assert source.produced == 2  # never asked for "after"
    errors = [rec for rec in caplog.records if rec.name == "microweb" and rec.exc_info]
    assert len(errors) == 1
    exc = errors[0].exc_info[1]  # type: ignore[index]
    assert isinstance(exc, ValueError) and "bad\\nname" in str(exc)
    assert client.get("/hello").text == "hello"


# ----------------------------------------------------------------- headers


@pytest.mark.parametrize("kind", KINDS)
def test_headers(make_client: MakeClient, kind: str) -> None:
    client = make_client(sse_app(Source(["x"], gated=False), kind))
    r = client.get("/events")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"  # nginx: do not buffer
    assert "content-length" not in r.headers


def test_own_headers_and_status_are_kept(make_client: MakeClient) -> None:
    app = App()

    @app.get("/events")
    def stream() -> EventSourceResponse:
        return EventSourceResponse(
            iter(["x"]), status=202, headers={"Cache-Control": "no-store", "X-Stream": "1"}
        )

    r = make_client(app).get("/events")
    assert r.status_code == 202
    assert r.headers.get_list("cache-control") == ["no-store"]
    assert r.headers["x-stream"] == "1"
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.content == b"data: x\n\n"


# --------------------------------------------------------------- streaming


@pytest.mark.parametrize("ping", [15.0, None], ids=["ping", "no-ping"])
@pytest.mark.parametrize("kind", KINDS)
def test_events_arrive_one_by_one(
    make_client: MakeClient, kind: str, ping: float | None, new_source: Any
) -> None:
    source = new_source([{"id": n, "data": f"event {n}"} for n in (1, 2, 3)])
    client = make_client(sse_app(source, kind, ping=ping))
    with client.stream("GET", "/events") as r:
        it = blocks(r.iter_raw())
        for n in (1, 2, 3):
            block = next(it)
            assert (block.id, block.data) == (str(n), f"event {n}")
            # the client holds event n while the source has not made event n + 1
            assert source.produced == n
            source.gate.release()
        assert list(it) == []
    assert source.finished.is_set()


@pytest.mark.parametrize("kind", KINDS)
def test_ping_comments_on_an_idle_stream(
    make_client: MakeClient, kind: str, new_source: Any
) -> None:
    source = new_source(["first", "second"])
    client = make_client(sse_app(source, kind, ping=0.2))
    with client.stream("GET", "/events") as r:
        it = blocks(r.iter_raw())
        first = next(it)
        assert first.data == "first"
        pings = [next(it), next(it)]  # the source is idle until released
        for ping in pings:
            assert ping.is_comment and ping.comments == ["ping"]
            assert ping.data is None  # EventSource dispatches nothing for it
        # one after each `ping` seconds of silence, not sooner (measured from when the
        # source made "first", so a slow reader cannot make the gaps look shorter)
        made = source.produced_at[0]
        assert pings[0].at - made > 0.18
        assert pings[1].at - made > 0.38
        source.gate.release()
        rest = [b for b in it if not b.is_comment]
    assert [b.data for b in rest] == ["second"]


def test_no_ping_when_disabled(make_client: MakeClient, new_source: Any) -> None:
    # The source stays silent for 0.5 s (no release comes): with ping=None nothing is sent.
    source = new_source(["first", "second"], wait=0.5)
    client = make_client(sse_app(source, "sync", ping=None))
    with client.stream("GET", "/events") as r:
        received = list(blocks(r.iter_raw()))
    assert [(b.event, b.is_comment) for b in received] == [(None, False), ("gave-up", False)]


@pytest.mark.parametrize("ping", [15.0, None], ids=["ping", "no-ping"])
@pytest.mark.parametrize("kind", KINDS)
def test_client_leaving_closes_the_source(
    make_client: MakeClient, kind: str, ping: float | None, new_source: Any
) -> None:
    total = 50
    source = new_source([f"event {n}" for n in range(1, total + 1)])
    client = make_client(sse_app(source, kind, ping=ping))
    with client.stream("GET", "/events") as r:
        assert next(blocks(r.iter_raw())).data == "event 1"
    # the client has gone (the response is closed) while the source waits
    if kind == "async":
        # cancelled where it waits, and closed: its finally runs without a release
        assert source.finished.wait(5), "the async generator was not closed"
        assert source.produced == 1
    else:
        # A sync generator cannot be interrupted inside next(): it is closed when it
        # yields its next item after the app has noticed the client left. Keep
        # releasing items (the server may take a moment to notice), with a deadline.
        deadline = time.monotonic() + 5
        while not source.finished.wait(0.02) and time.monotonic() < deadline:
            source.gate.release()
        assert source.finished.is_set(), "the sync generator was not closed"
        assert source.produced < total, "the source was drained to its end"
    assert client.get("/hello").text == "hello"


# ------------------------------------------------------------ real servers

MODULE = "tests.apps.sse_app"


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(str(request.param), MODULE, threads=8) as srv:
        # gunicorn listens before its worker has booted: the first request waits for it
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert client.get("/hello").status_code == 200
        yield srv


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=15) as client:
        yield client


def new_channel() -> str:
    return uuid.uuid4().hex


def state(http: httpx.Client, channel: str) -> dict[str, Any]:
    r = http.get(f"/state/{channel}")
    assert r.status_code == 200
    return dict(r.json())


def release(http: httpx.Client, channel: str) -> None:
    assert http.post(f"/release/{channel}").status_code == 200


def wait_until_finished(http: httpx.Client, channel: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll the server for the generator's ``finally`` (an out-of-process observation)."""
    deadline = time.monotonic() + timeout
    while True:
        current = state(http, channel)
        if current["finished"] or time.monotonic() > deadline:
            return current
        time.sleep(0.02)


@pytest.mark.servers
@pytest.mark.parametrize("ping", ["", "&ping=none"], ids=["ping", "no-ping"])
@pytest.mark.parametrize("kind", KINDS)
def test_served_events_arrive_as_produced(
    server: Server, http: httpx.Client, kind: str, ping: str
) -> None:
    channel = new_channel()
    url = f"/events/{kind}?channel={channel}&count=3{ping}"
    with (
        httpx.Client(base_url=server.url, timeout=15) as stream_client,
        stream_client.stream("GET", url) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        it = blocks(r.iter_raw())
        for n in (1, 2, 3):
            block = next(it)
            assert (block.event, block.id, block.data) == ("tick", str(n), f"event {n}")
            # the source has not made event n + 1: it waits for this release
            assert state(http, channel)["sent"] == n
            release(http, channel)
        assert list(it) == []
    assert wait_until_finished(http, channel)["finished"]


@pytest.mark.servers
@pytest.mark.parametrize("kind", KINDS)
def test_served_pings_on_an_idle_stream(server: Server, http: httpx.Client, kind: str) -> None:
    channel = new_channel()
    with httpx.Client(base_url=server.url, timeout=15) as stream_client:
        url = f"/events/{kind}?channel={channel}&count=2&ping=0.2"
        with stream_client.stream("GET", url) as r:
            it = blocks(r.iter_raw())
            assert next(it).data == "event 1"
            ping = next(it)
            assert ping.is_comment and ping.comments == ["ping"]
            release(http, channel)
            rest = [b.data for b in it if not b.is_comment]
    assert rest == ["event 2"]


@pytest.mark.servers
def test_served_invalid_event_drops_the_connection(server: Server, http: httpx.Client) -> None:
    received: list[Block] = []
    with (
        httpx.Client(base_url=server.url, timeout=15) as stream_client,
        stream_client.stream("GET", "/events/bad") as r,
    ):
        assert r.status_code == 200
        # the body is cut short, not ended as if whole
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(blocks(r.iter_raw()))
    assert [b.data for b in received] == ["fine"]
    assert http.get("/hello").text == "hello"  # the worker lives on


def release_until_finished(http: httpx.Client, channel: str) -> dict[str, Any]:
    """Release items one by one until the generator's ``finally`` ran (with a deadline).

    A sync generator blocked in ``next()`` can only be closed once it yields, after
    the server has noticed the client left; we cannot see that moment, so we keep
    feeding it.
    """
    deadline = time.monotonic() + 5
    while not (current := state(http, channel))["finished"] and time.monotonic() < deadline:
        release(http, channel)
        time.sleep(0.02)  # polling an out-of-process observation, with a deadline
    return current


@pytest.mark.servers
@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_served_client_leaving_closes_the_generator(
    server: Server, http: httpx.Client, kind: str
) -> None:
    # ASGI: the server reports the disconnect at once; no write is needed to notice it
    # (the default ping, 15 s, does not come into play here).
    channel, total = new_channel(), 50
    url = f"/events/{kind}?channel={channel}&count={total}"
    with (
        httpx.Client(base_url=server.url, timeout=15) as stream_client,
        stream_client.stream("GET", url) as r,
    ):
        assert next(blocks(r.iter_raw())).data == "event 1"
    # leaving the block closed the connection mid-stream
    if kind == "async":
        # cancelled where it waits for the next release, and closed
        final = wait_until_finished(http, channel)
        assert final == {"released": 0, "sent": 1, "finished": True}
    else:
        final = release_until_finished(http, channel)
        assert final["finished"], f"the generator's finally did not run: {final}"
        assert final["sent"] < total, "the generator was drained to its end"


@pytest.mark.servers
@pytest.mark.parametrize("server", ["waitress", "gunicorn"], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_served_wsgi_client_leaving_is_noticed_at_a_ping(
    server: Server, http: httpx.Client, kind: str
) -> None:
    # WSGI has no disconnect event: the server learns of it when a write fails, here
    # a ping's; it then closes the body, which cancels and closes an async generator
    # and closes a sync one at its next item.
    channel, total = new_channel(), 50
    url = f"/events/{kind}?channel={channel}&count={total}&ping=0.2"
    with (
        httpx.Client(base_url=server.url, timeout=15) as stream_client,
        stream_client.stream("GET", url) as r,
    ):
        assert next(blocks(r.iter_raw())).data == "event 1"
    if kind == "async":
        final = wait_until_finished(http, channel)  # no release: only pings are written
        assert final == {"released": 0, "sent": 1, "finished": True}
    else:
        final = release_until_finished(http, channel)
        assert final["finished"], f"the generator's finally did not run: {final}"
        assert final["sent"] < total, "the generator was drained to its end"


def test_bytes_data_in_a_dict_is_utf8_text() -> None:
    from microweb.sse import format_event

    assert (
        format_event({"data": "é".encode()})
        == format_event({"data": "é"})
        == "data: é\n\n".encode()
    )
