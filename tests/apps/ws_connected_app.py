"""The app the `while_connected` tests serve with uvicorn.

Its handlers wait on a broadcast channel that nobody publishes to, inside
``websocket.while_connected()``; GET /stats says how many are inside,
subscribed and ended, and how many asyncio tasks the process has.
"""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel

from microweb import App, WebSocket
from microweb.broadcast import Broadcast

app = App()
broadcast = Broadcast("memory://")
app.on_startup(broadcast.connect)
app.on_shutdown(broadcast.disconnect)

stats = {"inside": 0, "subscribed": 0, "ended": 0, "handled": 0}


@app.websocket("/sub/{tag}")
async def sub(websocket: WebSocket, tag: str) -> None:
    """Send what the channel says, until the client leaves (it never says anything)."""
    await websocket.accept()
    stats["inside"] += 1
    try:
        async with broadcast.subscribe(f"quiet:{tag}") as events:
            stats["subscribed"] += 1
            try:
                async with websocket.while_connected():
                    await websocket.send_text("ready")
                    async for event in events:
                        await websocket.send_text(event.data)
            finally:
                stats["subscribed"] -= 1
    finally:
        stats["inside"] -= 1
    stats["ended"] += 1


@app.websocket("/talk/{tag}")
async def talk(websocket: WebSocket, tag: str) -> None:
    """Both ways: the channel's messages to the client, the client's echoed back."""
    await websocket.accept()
    stats["inside"] += 1

    async def echo() -> None:
        async for text in websocket.iter_text():
            await anyio.lowlevel.checkpoint()  # work that awaits (as a publish would)
            stats["handled"] += 1
            await websocket.send_text(f"echo {text}")  # fails once the client has gone

    try:
        async with broadcast.subscribe(f"quiet:{tag}") as events:
            stats["subscribed"] += 1
            try:
                async with websocket.while_connected(), anyio.create_task_group() as tasks:
                    tasks.start_soon(echo)
                    await websocket.send_text("ready")
                    async for event in events:
                        await websocket.send_text(event.data)
            finally:
                stats["subscribed"] -= 1
    finally:
        stats["inside"] -= 1
    stats["ended"] += 1


@app.get("/stats")
async def get_stats() -> dict[str, int]:
    return {**stats, "tasks": len(asyncio.all_tasks())}


@app.post("/publish/{tag}")
async def publish(tag: str) -> str:
    await broadcast.publish(f"quiet:{tag}", "hello")
    return "ok"
