"""The two apps of benchmarks/broadcast.py, as uvicorn factories (``--factory``).

Both read the Redis URL from ``BENCH_REDIS_URL`` and serve the same two routes:

- ``/sub``: accept, subscribe to the channel ``bench``, forward each message
  to the client as a text message, until the client leaves (noticed at once:
  microweb's ``while_connected()``; for Starlette, broadcaster's README
  pattern, an anyio task group whose second task waits for the client to
  leave);
- ``/idle``: accept, then wait on ``receive()`` until the client leaves (a
  WebSocket that subscribes to nothing: the floor of the memory comparison).

``microweb``: microweb's `Broadcast`; ``starlette``: Starlette with
encode/broadcaster, written as broadcaster's README writes it, plus two
workarounds for broadcaster bugs that lose every message (see `starlette`).
Imports happen inside each factory, so the microweb side needs neither
Starlette nor broadcaster. The microweb app has three more routes for the
memory breakdown (``--memory-routes``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

CHANNEL = "bench"


def _url() -> str:
    return os.environ["BENCH_REDIS_URL"]


def microweb() -> Any:
    import anyio

    from microweb import App, WebSocket
    from microweb.broadcast import Broadcast

    broadcast = Broadcast(_url())
    app = App()
    app.on_startup(broadcast.connect)
    app.on_shutdown(broadcast.disconnect)

    @app.websocket("/sub")
    async def sub(websocket: WebSocket) -> None:  # as docs/websockets.md writes it
        await websocket.accept()
        async with broadcast.subscribe(CHANNEL) as events, websocket.while_connected():
            async for event in events:
                await websocket.send_text(event.data)

    @app.websocket("/idle")
    async def idle(websocket: WebSocket) -> None:
        await websocket.accept()
        async for _ in websocket.iter_text():
            pass

    # where an idle subscriber's memory goes (benchmarks/broadcast.py --memory-routes):
    @app.websocket("/sub-plain")
    async def sub_plain(websocket: WebSocket) -> None:  # the subscription, no watching task
        await websocket.accept()
        async with broadcast.subscribe(CHANNEL) as events:
            async for event in events:
                await websocket.send_text(event.data)

    @app.websocket("/watch")
    async def watch(websocket: WebSocket) -> None:  # while_connected, no subscription
        await websocket.accept()
        async with websocket.while_connected():
            await anyio.sleep_forever()

    @app.websocket("/sub-taskgroup")
    async def sub_taskgroup(websocket: WebSocket) -> None:  # the Starlette app's pattern
        await websocket.accept()
        async with anyio.create_task_group() as tasks:

            async def until_gone() -> None:
                async for _ in websocket.iter_text():
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(until_gone)
            async with broadcast.subscribe(CHANNEL) as events:
                async for event in events:
                    await websocket.send_text(event.data)

    return app.asgi


def starlette() -> Any:
    import anyio
    from broadcaster import Broadcast  # pip install broadcaster (not a microweb dependency)
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    broadcast = Broadcast(_url())
    # broadcaster 0.3.1: subscribers that enter at the same time, while their channel has none
    # yet, each replace the channel's set of queues (`_subscribers[channel] = {queue}` after an
    # await), so all but one of them never get a message. Entering one at a time avoids it
    # (it costs nothing per message).
    entering = anyio.Lock()

    async def sub(websocket: WebSocket) -> None:
        await websocket.accept()
        async with anyio.create_task_group() as tasks:

            async def until_gone() -> None:
                with contextlib.suppress(WebSocketDisconnect):
                    while True:
                        await websocket.receive_text()
                tasks.cancel_scope.cancel()

            tasks.start_soon(until_gone)
            async with contextlib.AsyncExitStack() as stack:
                async with entering:
                    subscriber = await stack.enter_async_context(
                        broadcast.subscribe(channel=CHANNEL)
                    )
                async for event in subscriber:
                    await websocket.send_text(event.message)

    async def idle(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broadcast.connect()
        # broadcaster 0.3.1 with redis-py >= 8.0: the first subscribe wakes its listener task
        # before redis-py has recorded the channel, so `pubsub.listen()` ends at once and the
        # listener waits forever: no message is ever delivered. A channel subscribed here,
        # before any client, keeps the listener alive (with redis-py 7.4 it is not needed).
        await broadcast._backend._pubsub.subscribe(f"{CHANNEL}:keepalive")  # type: ignore[attr-defined]
        try:
            yield
        finally:
            await broadcast.disconnect()

    return Starlette(
        routes=[WebSocketRoute("/sub", sub), WebSocketRoute("/idle", idle)], lifespan=lifespan
    )
