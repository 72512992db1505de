"""A chat room: an HTML page and a WebSocket endpoint that broadcasts to a room.

    uvicorn examples.chat:app.asgi        # or: microweb run examples.chat:app

Open http://127.0.0.1:8000/?room=lobby in two windows and talk. Rooms live
in memory, in this one process (several worker processes would each have
their own rooms).
"""

from __future__ import annotations

import asyncio
import html

from microweb import App, HTMLResponse, Request, WebSocket

app = App()

#: room name -> the sockets in it
rooms: dict[str, set[WebSocket]] = {}

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>microweb chat: {room}</title>
<style>
 body {{ font-family: sans-serif; max-width: 40em; margin: 2em auto; }}
 #log {{ border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: .5em; }}
 #log p {{ margin: .2em 0; }}
</style></head>
<body data-ws="{ws_path}">
<h1>Room <span id="room">{room}</span></h1>
<div id="log"></div>
<form id="form"><input id="name" placeholder="name" value="guest">
<input id="text" placeholder="say something" autocomplete="off">
<button>Send</button></form>
<p id="status">connecting…</p>
<script>
const room = document.getElementById("room").textContent;
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socket = new WebSocket(`${{scheme}}://${{location.host}}${{document.body.dataset.ws}}`);
const log = document.getElementById("log");
socket.onopen = () => {{ document.getElementById("status").textContent = "connected"; }};
socket.onclose = () => {{ document.getElementById("status").textContent = "disconnected"; }};
socket.onmessage = (event) => {{
  const message = JSON.parse(event.data);
  const line = document.createElement("p");
  line.className = "message";
  line.textContent = `${{message.name}}: ${{message.text}}`;  // text, never HTML
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}};
document.getElementById("form").onsubmit = (event) => {{
  event.preventDefault();
  const text = document.getElementById("text");
  if (text.value) {{
    socket.send(JSON.stringify({{name: document.getElementById("name").value, text: text.value}}));
    text.value = "";
  }}
}};
</script>
</body>
</html>
"""


@app.get("/")
def page(request: Request) -> HTMLResponse:
    room = request.query_params.get("room", "lobby")[:64]
    ws_path = request.url_for("chat", room=room)
    body = PAGE.format(room=html.escape(room), ws_path=html.escape(ws_path))
    return HTMLResponse(body)


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    members = rooms.setdefault(room, set())
    members.add(websocket)
    try:
        async for data in websocket.iter_json():
            if not isinstance(data, dict):
                continue
            message = {
                "name": str(data.get("name", "guest"))[:40],
                "text": str(data.get("text", ""))[:2000],
            }
            await broadcast(room, message)
    finally:
        members.discard(websocket)
        if not members:
            rooms.pop(room, None)


async def broadcast(room: str, message: dict[str, str]) -> None:
    """Send `message` to everyone in `room`; a socket that fails is dropped."""
    members = list(rooms.get(room, ()))
    results = await asyncio.gather(
        *(member.send_json(message) for member in members), return_exceptions=True
    )
    for member, result in zip(members, results, strict=True):
        if isinstance(result, BaseException):
            rooms.get(room, set()).discard(member)


wsgi = app.wsgi  # serves the page; the WebSocket answers 501 there (it needs app.asgi)
