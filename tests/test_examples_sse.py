"""examples/sse.py, used as a browser and ``curl -N`` would, under both protocols."""

from __future__ import annotations

import datetime
import json
import re

import httpx
import pytest

from examples import sse
from tests.eventstream import Block, blocks, events
from tests.servers import SERVERS, serve

from .conftest import MakeClient


def check_tick(block: Block, n: int) -> None:
    """A well-formed tick: named, numbered, with JSON data holding the same number."""
    assert [name for name, _ in block.lines] == ["event", "id", "data"]
    assert (block.event, block.id) == ("tick", str(n))
    tick = json.loads(block.data or "")
    assert tick["n"] == n
    sent_at = datetime.datetime.fromisoformat(tick["time"])
    assert sent_at.utcoffset() == datetime.timedelta(0)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - sent_at).total_seconds()) < 60


def test_entry_points() -> None:
    assert sse.wsgi is sse.app.wsgi


def test_page_loads_and_listens_to_the_events_url(make_client: MakeClient) -> None:
    r = make_client(sse.app).get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert page.startswith("<!doctype html>")
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    assert 'new EventSource("/events")' in script.group(1)
    assert 'addEventListener("tick"' in script.group(1)  # the event name the stream sends


def test_events_stream_well_formed_ticks(make_client: MakeClient) -> None:
    r = make_client(sse.app).get("/events", params={"limit": 3, "interval": 0.01})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.content.endswith(b"\n\n")
    received = events([r.content])
    assert len(received) == 3
    for n, block in enumerate(received, 1):
        check_tick(block, n)


def test_ticks_arrive_as_they_are_made(make_client: MakeClient) -> None:
    # tick 2 is made `interval` seconds after tick 1; streamed, tick 1 is read before that
    client = make_client(sse.app)
    with client.stream("GET", "/events", params={"limit": 2, "interval": 0.3}) as r:
        first, second = blocks(r.iter_raw())
    check_tick(first, 1)
    check_tick(second, 2)
    made = datetime.datetime.fromisoformat(json.loads(second.data or "")["time"]).timestamp()
    assert first.wall < made, "tick 1 reached the client only once tick 2 was made"


def test_last_event_id_resumes_the_count(make_client: MakeClient) -> None:
    # what EventSource sends when it reconnects
    client = make_client(sse.app)
    r = client.get("/events?limit=2&interval=0.01", headers={"Last-Event-ID": "41"})
    assert [b.id for b in events([r.content])] == ["42", "43"]
    # an id that is not a number starts over
    r = client.get("/events?limit=1", headers={"Last-Event-ID": "abc"})
    check_tick(events([r.content])[0], 1)


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("limit=0", "limit must be a positive integer"),
        ("limit=two", "limit must be a positive integer"),
        ("limit=-1", "limit must be a positive integer"),
        ("interval=0", "interval must be between 0.01 and 60"),
        ("interval=soon", "interval must be a number"),
        ("interval=nan", "interval must be between 0.01 and 60"),
    ],
)
def test_invalid_parameters(make_client: MakeClient, query: str, detail: str) -> None:
    r = make_client(sse.app).get(f"/events?{query}")
    assert r.status_code == 400
    assert r.json() == {"detail": detail}


@pytest.mark.servers
@pytest.mark.parametrize("kind", SERVERS)
def test_example_runs_as_documented(kind: str) -> None:
    """``uvicorn examples.sse:app.asgi``, ``waitress-serve examples.sse:app.wsgi``,
    ``gunicorn --worker-class gthread examples.sse:wsgi``."""
    with (
        serve(kind, "examples.sse") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert 'new EventSource("/events")' in http.get("/").text
        with http.stream("GET", "/events?limit=2&interval=0.05") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            received = list(blocks(r.iter_raw()))
        assert [b.id for b in received] == ["1", "2"]
        for n, block in enumerate(received, 1):
            check_tick(block, n)
