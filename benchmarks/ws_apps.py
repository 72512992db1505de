"""Two WebSocket echo apps for benchmarks/ws_echo.py: microweb's and a raw ASGI one."""

from __future__ import annotations

from typing import Any

from microweb import App, WebSocket

app = App()


@app.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor: a hand-written ASGI WebSocket echo."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "text": message.get("text")})
