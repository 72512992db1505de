"""The chat example: in-process under both protocols, and end to end in Chromium,
in one uvicorn process and across two on one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from examples.chat import app
from microweb.testing import TestClient

from . import browser
from .conftest import MakeClient
from .redisserver import redis_server
from .servers import Server, serve


def test_the_page(make_client: MakeClient) -> None:
    r = make_client(app).get("/?room=<b>x</b>")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<b>x</b>" not in r.text  # the room name is escaped
    assert 'data-ws="/ws/%3Cb%3Ex%3C%2Fb%3E"' in r.text
    assert "new WebSocket" in r.text


def test_the_websocket_path_over_plain_http(make_client: MakeClient, protocol: str) -> None:
    r = make_client(app).get("/ws/lobby")
    assert r.status_code == (426 if protocol == "asgi" else 501)


def test_a_room_broadcasts_to_everyone_in_it() -> None:
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws/room1") as ann,
        client.websocket_connect("/ws/room1") as bob,
        client.websocket_connect("/ws/other") as eve,
    ):
        ann.send_json({"name": "ann", "text": "hello"})
        assert bob.receive_json() == {"name": "ann", "text": "hello"}
        assert ann.receive_json() == {"name": "ann", "text": "hello"}
        eve.send_json({"name": "eve", "text": "elsewhere"})
        assert eve.receive_json() == {"name": "eve", "text": "elsewhere"}
        bob.send_json({"name": "bob", "text": "hi ann"})
        assert ann.receive_json() == {"name": "bob", "text": "hi ann"}  # not eve's message


def test_what_a_client_says_as_it_leaves_still_reaches_the_room() -> None:
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws/room2") as bob,
    ):
        with client.websocket_connect("/ws/room2") as ann:
            ann.send_json({"name": "ann", "text": "bye"})
        # ann left at once: her handler ended (leaving the `with`), "bye" published first
        assert bob.receive_json() == {"name": "ann", "text": "bye"}
        bob.send_json({"name": "bob", "text": "still here"})
        assert bob.receive_json() == {"name": "bob", "text": "still here"}


needs_chromium = pytest.mark.skipif(
    browser.CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)


async def two_pages_chat(alice_url: str, bob_url: str) -> tuple[str, str]:
    """Alice's page (on `alice_url`) and Bob's (on `bob_url`) join a room and talk:
    what each page shows in the end."""
    lines = (
        "Array.from(document.querySelectorAll('#log .message')).map(p => p.textContent).join('\\n')"
    )
    async with browser.chromium() as chrome:
        alice = await chrome.page(f"{alice_url}/?room=e2e")
        bob = await chrome.page(f"{bob_url}/?room=e2e")
        for page in (alice, bob):
            await chrome.wait_for(
                page, "document.getElementById('status').textContent === 'connected'"
            )

        async def say(page: str, name: str, text: str) -> None:
            await chrome.evaluate(
                page,
                f"document.getElementById('name').value = {json.dumps(name)};"
                f"document.getElementById('text').value = {json.dumps(text)};"
                "document.querySelector('button').click(); true",
            )

        await say(alice, "alice", "hello from alice <script>")
        await chrome.wait_for(bob, f"{lines}.includes('alice:')")
        await say(bob, "bob", "hi alice")
        for page in (alice, bob):
            await chrome.wait_for(page, f"{lines}.includes('bob:')")
        return str(await chrome.evaluate(alice, lines)), str(await chrome.evaluate(bob, lines))


CONVERSATION = "alice: hello from alice <script>\nbob: hi alice"


@pytest.mark.servers
@needs_chromium
def test_two_browser_pages_chat_through_uvicorn() -> None:
    with serve("uvicorn", "examples.chat") as server:
        shown = asyncio.run(two_pages_chat(server.url, server.url))
    assert shown == (CONVERSATION, CONVERSATION)


@contextlib.contextmanager
def two_chat_servers() -> Iterator[tuple[Server, Server]]:
    """Two uvicorn processes serving the chat, on one real Redis (as the docstring says)."""
    with redis_server() as redis:
        env = {"MICROWEB_BROADCAST_URL": redis.url}
        with (
            serve("uvicorn", "examples.chat", env=env) as one,
            serve("uvicorn", "examples.chat", env=env) as two,
        ):
            yield one, two


@pytest.mark.servers
@needs_chromium
def test_two_browser_pages_chat_across_two_uvicorn_processes_on_redis() -> None:
    with two_chat_servers() as (one, two):
        shown = asyncio.run(two_pages_chat(one.url, two.url))
    assert shown == (CONVERSATION, CONVERSATION)


@pytest.mark.servers
def test_clients_of_two_processes_share_a_room_in_order() -> None:
    # the same across two processes with the websockets client: many messages,
    # from both sides, each seen by both in the order each side sent them
    def ws_url(server: Server) -> str:
        return server.url.replace("http://", "ws://") + "/ws/order"

    async def scenario(one: Server, two: Server) -> tuple[list[Any], list[Any]]:
        async with connect(ws_url(one)) as ann, connect(ws_url(two)) as bob:
            sent = []
            for i in range(20):
                for ws, name in ((ann, "ann"), (bob, "bob")):
                    message = {"name": name, "text": f"{name} {i}"}
                    await ws.send(json.dumps(message))
                    sent.append(message)
            seen_by_ann = [json.loads(await ann.recv()) for _ in sent]
            seen_by_bob = [json.loads(await bob.recv()) for _ in sent]
            return seen_by_ann, seen_by_bob

    with two_chat_servers() as (one, two):
        seen_by_ann, seen_by_bob = asyncio.run(asyncio.wait_for(scenario(one, two), 60))
    for seen in (seen_by_ann, seen_by_bob):
        for name in ("ann", "bob"):
            assert [m["text"] for m in seen if m["name"] == name] == [
                f"{name} {i}" for i in range(20)
            ]
