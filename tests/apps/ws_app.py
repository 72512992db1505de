"""The app the WebSocket integration tests serve with uvicorn (and WSGI servers)."""

from __future__ import annotations

from microweb import App, WebSocket, WebSocketDisconnect

app = App()
#: close codes the handlers saw from clients, by tag
seen_codes: dict[str, int] = {}


@app.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)


@app.websocket("/json")
async def json_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for data in websocket.iter_json():
        await websocket.send_json({"echo": data})


@app.websocket("/bytes")
async def bytes_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for data in websocket.iter_bytes():
        await websocket.send_bytes(data)


@app.websocket("/proto")
async def proto(websocket: WebSocket) -> None:
    chosen = "chat.v2" if "chat.v2" in websocket.subprotocols else None
    await websocket.accept(subprotocol=chosen)
    await websocket.send_text(",".join(websocket.subprotocols))


@app.websocket("/close")
async def close(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(4003, "go away")


@app.websocket("/watch/{tag}")
async def watch(websocket: WebSocket, tag: str) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect as exc:
        seen_codes[tag] = exc.code


@app.websocket("/refuse")
async def refuse(websocket: WebSocket) -> None:
    await websocket.close()


@app.websocket("/crash")
async def crash(websocket: WebSocket) -> None:
    raise RuntimeError("crash before accept")


@app.get("/seen/{tag}")
def seen(tag: str) -> dict[str, int | None]:
    return {"code": seen_codes.get(tag)}


wsgi = app.wsgi
