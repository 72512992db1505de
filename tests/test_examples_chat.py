"""The chat example: in-process under both protocols, and end to end in Chromium."""

from __future__ import annotations

import asyncio
import json

import pytest

from examples.chat import app
from microweb.testing import TestClient

from . import browser
from .conftest import MakeClient
from .servers import serve


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


@pytest.mark.servers
@pytest.mark.skipif(
    browser.CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)
def test_two_browser_pages_chat_through_uvicorn() -> None:
    async def scenario(url: str) -> str:
        async with browser.chromium() as chrome:
            alice = await chrome.page(f"{url}/?room=e2e")
            bob = await chrome.page(f"{url}/?room=e2e")
            for page in (alice, bob):
                await chrome.wait_for(
                    page, "document.getElementById('status').textContent === 'connected'"
                )
            message = json.dumps("hello from alice <script>")
            await chrome.evaluate(
                alice,
                "document.getElementById('name').value = 'alice';"
                f"document.getElementById('text').value = {message};"
                "document.querySelector('button').click(); true",
            )
            shown = await chrome.wait_for(
                bob,
                "Array.from(document.querySelectorAll('#log .message'))"
                ".map(p => p.textContent).join('\\n')",
            )
            return str(shown)

    with serve("uvicorn", "examples.chat") as server:
        shown = asyncio.run(scenario(server.url))
    assert shown == "alice: hello from alice <script>"
