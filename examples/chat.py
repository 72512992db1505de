"""A chat room: an HTML page and a WebSocket endpoint that broadcasts to a room.

    uvicorn examples.chat:app.asgi        # or: microweb run examples.chat:app

Open http://127.0.0.1:8000/?room=lobby in two windows and talk. Rooms live
in memory, in this one process (several worker processes would each have
their own rooms).
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from microweb import App, HTMLResponse, Request, WebSocket

app = App()

#: room name -> the sockets in it
rooms: dict[str, set[WebSocket]] = {}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>microweb chat: {room}</title>
<link rel="stylesheet" href="{stylesheet}">
</head>
<body data-ws="{ws_path}">
<h1>Room <span id="room">{room}</span></h1>
<p class="muted">Open this page in a second window, and talk.</p>
<ul id="log" class="log scroll" aria-live="polite"></ul>
<form id="form" class="row">
<input id="name" placeholder="name" value="guest" aria-label="name">
<input id="text" class="wide" placeholder="say something" autocomplete="off" aria-label="message">
<button>Send</button>
</form>
<p id="status" class="status">connecting…</p>
<script>
const room = document.getElementById("room").textContent;
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socket = new WebSocket(`${{scheme}}://${{location.host}}${{document.body.dataset.ws}}`);
const log = document.getElementById("log");
const status = document.getElementById("status");
const show = (state) => {{
  status.textContent = state;
  status.classList.toggle("connected", state === "connected");
}};
socket.onopen = () => show("connected");
socket.onclose = () => show("disconnected");
socket.onmessage = (event) => {{
  const message = JSON.parse(event.data);
  const line = document.createElement("li");
  line.className = "message";
  const name = document.createElement("strong");
  name.textContent = `${{message.name}}:`;  // text, never HTML
  line.append(name, ` ${{message.text}}`);
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
    stylesheet = request.url_for("static", path="style.css")
    body = PAGE.format(
        room=html.escape(room), ws_path=html.escape(ws_path), stylesheet=html.escape(stylesheet)
    )
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


app.static("/static", Path(__file__).parent / "static")  # style.css, shared by the examples
wsgi = app.wsgi  # serves the page; the WebSocket answers 501 there (it needs app.asgi)
