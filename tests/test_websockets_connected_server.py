"""`WebSocket.while_connected()` through a real uvicorn, with the `websockets` client.

The handlers (tests/apps/ws_connected_app.py) subscribe to a ``memory://``
channel nobody publishes to and wait on it inside ``while_connected()``; a
client that leaves must end them at once (not at the next message, which
never comes), their subscriptions released. GET /stats counts them.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .servers import Server, serve

pytestmark = pytest.mark.servers
TIMEOUT = 20.0  # seconds a condition may take before the test fails


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("uvicorn", "tests.apps.ws_connected_app") as server:
        yield server


def stats(server: Server) -> dict[str, int]:
    return httpx.get(f"{server.url}/stats", timeout=10).json()  # type: ignore[no-any-return]


def wait_for(
    server: Server, condition: Callable[[dict[str, int]], bool], timeout: float = TIMEOUT
) -> dict[str, int]:
    """The server's stats once `condition` holds for them (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        now = stats(server)
        if condition(now):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"still {now} after {timeout} s\n{server.log()}")
        time.sleep(0.02)  # polling with a deadline, not synchronisation


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


async def leave(ws: ClientConnection, how: str) -> None:
    """Close the connection cleanly, or drop it (no close frame: a lost client)."""
    if how == "abort":
        ws.transport.abort()
    await ws.close()


def settled(before: dict[str, int], clients: int) -> Callable[[dict[str, int]], bool]:
    """Every handler the clients opened ended, its subscription with it."""
    return lambda now: (
        now["ended"] == before["ended"] + clients
        and now["inside"] == before["inside"]
        and now["subscribed"] == before["subscribed"]
    )


@pytest.mark.parametrize("how", ["close", "abort"])
def test_a_subscriber_is_released_when_its_client_leaves(server: Server, how: str) -> None:
    before = stats(server)

    async def go() -> None:
        async with connect(ws_url(server, f"/sub/{how}")) as ws:
            assert await ws.recv() == "ready"  # inside the block, waiting on the channel
            assert stats(server)["subscribed"] == before["subscribed"] + 1
            await leave(ws, how)

    asyncio.run(go())
    wait_for(server, settled(before, 1))


def test_messages_sent_during_the_block_are_received_in_order(server: Server) -> None:
    before = stats(server)
    texts = [f"m{i}" for i in range(50)]

    async def go() -> None:
        async with connect(ws_url(server, "/talk/order")) as ws:
            assert await ws.recv() == "ready"
            for text in texts:
                await ws.send(text)
            assert [await ws.recv() for _ in texts] == [f"echo {t}" for t in texts]
            await ws.send("last")
        # the client left right after "last": the handler still got it

    asyncio.run(go())
    now = wait_for(server, settled(before, 1))
    assert now["handled"] == before["handled"] + len(texts) + 1


def test_many_clients_leaving_at_random_points(server: Server) -> None:
    # A fixed seed: each client picks an endpoint, how many messages it sends,
    # whether it reads the echoes, when it leaves and how (a close frame, or
    # the connection dropped). Every handler must end and nothing may stay
    # behind: no subscription, no task.
    rng = random.Random(1106)
    clients = 200
    plans = [
        {
            "path": f"/{rng.choice(['sub', 'talk'])}/r{i % 7}",
            "messages": rng.choice([0, 0, 1, 3, 20, 40]),
            "read_echoes": rng.random() < 0.5,
            "leave": rng.choice(["before-ready", "after-ready", "after-sending"]),
            "how": rng.choice(["close", "abort"]),
        }
        for i in range(clients)
    ]
    before = wait_for(server, lambda now: now["inside"] == 0)  # the other tests' ended

    async def client(plan: dict[str, Any], gate: asyncio.Semaphore) -> None:
        async with gate, connect(ws_url(server, plan["path"])) as ws:
            if plan["leave"] != "before-ready":
                assert await ws.recv() == "ready"
                if plan["leave"] == "after-sending":
                    texts = [f"m{k}" for k in range(plan["messages"])]
                    for text in texts:
                        await ws.send(text)
                    if plan["read_echoes"] and plan["path"].startswith("/talk"):
                        assert [await ws.recv() for _ in texts] == [f"echo {t}" for t in texts]
            try:
                await leave(ws, plan["how"])
            except ConnectionClosed:  # pragma: no cover - the server closed first
                pass

    async def all_clients() -> None:
        gate = asyncio.Semaphore(40)  # at most 40 connections at once
        async with asyncio.timeout(90):
            await asyncio.gather(*(client(plan, gate) for plan in plans))

    asyncio.run(all_clients())
    now = wait_for(server, settled(before, clients))
    # the server's tasks are back to what they were: no reader, no handler left
    wait_for(server, lambda now: now["tasks"] <= before["tasks"])
    assert now["subscribed"] == 0


def test_uvicorn_stops_with_subscribers_connected() -> None:
    # On SIGTERM uvicorn tells each open WebSocket that it is going away
    # (a disconnect, 1012) and waits for the handlers before it exits: a
    # subscriber that only waits on its channel would keep it waiting forever.
    with serve("uvicorn", "tests.apps.ws_connected_app") as server:

        async def go() -> int | None:
            sockets = [await connect(ws_url(server, f"/sub/stop{i}")) for i in range(5)]
            for ws in sockets:
                assert await ws.recv() == "ready"
            server.process.send_signal(signal.SIGTERM)  # our own child, by PID
            for ws in sockets:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            try:
                return await asyncio.to_thread(server.process.wait, TIMEOUT)
            except subprocess.TimeoutExpired:
                return None

        returncode = asyncio.run(go())
        # (uvicorn re-raises the SIGTERM once it has shut down)
        assert returncode in (0, -signal.SIGTERM), f"uvicorn did not stop:\n{server.log()}"
