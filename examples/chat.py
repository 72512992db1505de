"""A chat room: an HTML page and a WebSocket endpoint; each room is a broadcast channel.

    uvicorn examples.chat:app.asgi        # or: microweb run examples.chat:app

Open http://127.0.0.1:8000/?room=lobby in two windows and talk. Each socket
subscribes to its room's channel and publishes what its client says there
(`microweb.broadcast`). By default the channels live in memory, in this one
process. To chat across processes (several workers, several machines), give
them one Redis:

    MICROWEB_BROADCAST_URL=redis://127.0.0.1:6379/0 uvicorn examples.chat:app.asgi --workers 2

(``pip install 'microweb-framework[redis]'``, and a Redis server: Debian's
``apt-get install redis-server``.) Two windows served by different workers
then see each other's messages.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import anyio

from microweb import App, HTMLResponse, Request, WebSocket
from microweb.broadcast import Broadcast

#: memory:// (one process) unless MICROWEB_BROADCAST_URL names a Redis
broadcast = Broadcast(os.environ.get("MICROWEB_BROADCAST_URL") or "memory://")

app = App()
app.on_startup(broadcast.connect)
app.on_shutdown(broadcast.disconnect)

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
    channel = f"room:{room}"

    async def say() -> None:
        """What this client says, to everyone in the room (every process)."""
        async for data in websocket.iter_json():
            if isinstance(data, dict):
                await broadcast.publish(channel, json.dumps(message(data)))

    # Subscribed before accepting: once the page says "connected", it gets
    # every message said in the room, its own too. The block ends as soon as
    # the client leaves (once what it said last is published), and the
    # subscription with it.
    async with broadcast.subscribe(channel) as events:
        await websocket.accept()
        async with websocket.while_connected(), anyio.create_task_group() as tasks:
            tasks.start_soon(say)
            async for event in events:  # what the room says, to this client
                await websocket.send_text(event.data)


def message(data: dict[str, Any]) -> dict[str, str]:
    """A chat line from what a client sent: a name and a text, both strings, both short."""
    return {"name": str(data.get("name", "guest"))[:40], "text": str(data.get("text", ""))[:2000]}


app.static("/static", Path(__file__).parent / "static")  # style.css, shared by the examples
wsgi = app.wsgi  # serves the page; the WebSocket answers 501 there (it needs app.asgi)
