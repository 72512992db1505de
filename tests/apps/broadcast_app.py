"""The app that tests/test_broadcast_servers.py runs under uvicorn, waitress and gunicorn.

Served as ``uvicorn tests.apps.broadcast_app:app.asgi``,
``waitress-serve tests.apps.broadcast_app:app.wsgi`` and
``gunicorn tests.apps.broadcast_app:wsgi``, with the environment:

- ``MICROWEB_BROADCAST_URL``: the backend (``memory://`` when unset);
- ``MICROWEB_BROADCAST_BACKLOG``: each subscriber's backlog (default 1000);
- ``MICROWEB_BROADCAST_WARM=1``: publish once while the module is imported,
  so a pre-fork server's master holds connections (and the shared loop's
  thread) before it forks its workers.

Routes:

- ``POST /publish/{channel}`` (``def``, `publish_sync`) and
  ``POST /apublish/{channel}`` (``async def``, ``await publish``): the body is
  the message; answers ``{"id": …, "pid": …}``. A `BroadcastError` is not
  handled: it is a 500, and the server's log has it.
- ``POST /burst/{channel}?count=N&size=S&start=K``: publishes messages
  ``K`` … ``K+N-1`` (each ``"<n>:"`` padded with ``x`` to ``S`` characters)
  from the loop, in order.
- ``GET /sse/{channel}``: Server-Sent Events (under both protocols); the first
  block is the comment ``subscribed pid=<pid>``, sent once the subscription is
  confirmed, then ``{"id": event.id, "data": event.data}`` per event (no id
  with pub/sub). ``Last-Event-ID`` resumes; ``?ping=S`` sets the ping
  interval (default 0.5 s: a WSGI server notices a client that left at a
  write).
- ``/ws/{channel}`` (ASGI only): the first text frame is ``subscribed``, sent
  once the subscription is confirmed; then each event's data. A client that
  leaves is released at once (a task waits for its disconnect and cancels
  the forwarding). A subscriber that overflows is closed with 1013 (Try
  Again Later).
- ``GET /pid``: the process that answered; ``GET /stats``: what its
  subscribers did (open ones, overflows, close codes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from microweb import App, EventSourceResponse, Request, WebSocket, WebSocketDisconnect
from microweb.broadcast import Broadcast, BroadcastOverflow

logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")

URL = os.environ.get("MICROWEB_BROADCAST_URL", "memory://")
BACKLOG = int(os.environ.get("MICROWEB_BROADCAST_BACKLOG", "1000"))
#: The close code of a WebSocket whose subscriber fell too far behind (RFC 6455:
#: "Try Again Later"): the client may reconnect.
OVERFLOW_CLOSE = 1013

broadcast = Broadcast(URL, backlog=BACKLOG)
app = App()
app.on_startup(broadcast.connect)
app.on_shutdown(broadcast.disconnect)
wsgi = app.wsgi

_lock = threading.Lock()
_stats: Counter[str] = Counter()


def _count(key: str, n: int = 1) -> None:
    with _lock:
        _stats[key] += n


if os.environ.get("MICROWEB_BROADCAST_WARM"):
    broadcast.publish_sync("warm", f"imported by {os.getpid()}")


@app.post("/publish/{channel}")
def publish(channel: str, request: Request) -> dict[str, Any]:
    ident = broadcast.publish_sync(channel, request.text())
    return {"id": ident, "pid": os.getpid()}


@app.post("/apublish/{channel}")
async def apublish(channel: str, request: Request) -> dict[str, Any]:
    ident = await broadcast.publish(channel, await request.text())
    return {"id": ident, "pid": os.getpid()}


@app.post("/burst/{channel}")
async def burst(channel: str, count: int, size: int = 0, start: int = 1) -> dict[str, Any]:
    for n in range(start, start + count):
        head = f"{n}:"
        await broadcast.publish(channel, head.ljust(size, "x"))
    return {"published": count}


@app.get("/sse/{channel}")
async def sse(channel: str, request: Request) -> EventSourceResponse:
    last_id = request.headers.get("last-event-id")
    ping = float(request.query_params.get("ping", "0.5"))

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with broadcast.subscribe(channel, last_id=last_id) as sub:
            _count("open")
            try:
                yield {"comment": f"subscribed pid={os.getpid()}"}
                async for event in sub:
                    yield {"id": event.id, "data": event.data}
            except BroadcastOverflow:
                _count("overflows")
            finally:
                _count("open", -1)

    return EventSourceResponse(events(), ping=ping)


@app.websocket("/ws/{channel}")
async def ws(websocket: WebSocket, channel: str) -> None:
    await websocket.accept()
    async with broadcast.subscribe(channel) as sub:
        _count("open")
        try:
            await websocket.send_text("subscribed")
            # the client leaving ends the forwarding at once, not at the next event
            await _first_of(_forward(websocket, sub), _until_disconnect(websocket))
        finally:
            _count("open", -1)


async def _first_of(*coros: Any) -> None:
    """Run `coros` until one ends, then cancel the others (its exception is raised)."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


async def _forward(websocket: WebSocket, sub: Any) -> None:
    try:
        async for event in sub:
            await websocket.send_text(event.data)
    except BroadcastOverflow:
        _count("overflows")
        _count(f"closed:{OVERFLOW_CLOSE}")
        await websocket.close(OVERFLOW_CLOSE, "fell behind")


async def _until_disconnect(websocket: WebSocket) -> None:
    try:
        while True:
            await websocket.receive()  # a client's message is ignored; its leaving ends it
    except WebSocketDisconnect:
        pass


@app.get("/pid")
def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/stats")
def stats() -> dict[str, Any]:
    with _lock:
        return {"pid": os.getpid(), **_stats}
