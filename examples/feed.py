"""A live feed over Server-Sent Events, shared by every server process through a Broadcast.

One process, in memory (``MICROWEB_BROADCAST_URL`` unset is ``memory://``)::

    uvicorn examples.feed:app.asgi
    waitress-serve --listen=127.0.0.1:8000 --threads=16 examples.feed:app.wsgi  # a thread per page

Several processes, on one Redis (``apt-get install redis-server``, then
``pip install 'microweb-framework[redis]'``); the stream keeps the last
thousand items, so a page that reconnects misses nothing::

    export MICROWEB_BROADCAST_URL='redis-stream://127.0.0.1:6379/0?maxlen=1000'
    gunicorn --workers 2 --worker-class gthread --threads 16 examples.feed:wsgi
    uvicorn examples.feed:app.asgi --workers 2 --port 8001   # the same feed, other processes

Open http://localhost:8000/ in two windows (or one on port 8000 and one on
8001), post something, and both show it: each page says which process serves
its stream, and each item which process took the post. With the stream
itself::

    curl -N localhost:8000/events                              # every item, as it is posted
    curl localhost:8001/items -d text=hello                    # 201 {"id": "...", ...}
    curl -N localhost:8000/events -H 'Last-Event-ID: 1733600000000-0'  # what came after it

Each item is an event named ``item`` whose id is its Broadcast id and whose
data is JSON (``text``, ``time``, ``pid``). When the connection drops, the
browser's ``EventSource`` reconnects by itself and sends the last id it saw in
``Last-Event-ID``; the stream replays what was posted after it, then goes on
live. (With ``redis://``, pub/sub, items have no id: live only.) See
docs/live-updates.md.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from microweb import App, EventSourceResponse, HTMLResponse, Request, abort
from microweb.broadcast import Broadcast, BroadcastError, BroadcastOverflow

#: the one channel of this feed
CHANNEL = "feed"
MAX_LENGTH = 280

broadcast = Broadcast(os.environ.get("MICROWEB_BROADCAST_URL") or "memory://")
app = App()
# each process connects in its own startup (after gunicorn forks), and closes on shutdown
app.on_startup(broadcast.connect)
app.on_shutdown(broadcast.disconnect)
app.static("/static", Path(__file__).parent / "static")  # style.css, shared by the examples

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>microweb: live feed</title>
  <link rel="stylesheet" href="STYLESHEET_URL">
</head>
<body>
  <h1>Live feed</h1>
  <p class="muted">Post something: every page open on this feed shows it at once,
  whichever server process it is connected to.</p>
  <form id="form" class="row">
    <input id="text" class="wide" maxlength="MAX_LENGTH" placeholder="what's new?"
      autocomplete="off" aria-label="item" required>
    <button>Post</button>
  </form>
  <p id="error" class="error" hidden></p>
  <p id="status" class="status">connecting…</p>
  <ol id="items" class="log" reversed aria-live="polite"></ol>
  <script>
    const items = document.getElementById("items");
    const status = document.getElementById("status");
    const error = document.getElementById("error");
    const show = (text, connected) => {
      status.textContent = text;
      status.classList.toggle("connected", connected);
    };
    const source = new EventSource(EVENTS_URL);
    source.addEventListener("ready", (event) => {
      show(`connected to process ${JSON.parse(event.data).pid}`, true);
    });
    // the browser reconnects by itself, sending the last item's id in Last-Event-ID
    source.addEventListener("error", () => show("reconnecting…", false));
    source.addEventListener("item", (event) => {
      const item = JSON.parse(event.data);
      const line = document.createElement("li");
      const text = document.createElement("strong");
      text.textContent = item.text;  // text, never HTML
      const time = document.createElement("time");
      time.dateTime = item.time;
      time.textContent = new Date(item.time).toLocaleTimeString();
      const via = document.createElement("span");
      via.className = "muted";
      via.textContent = `via process ${item.pid}`;
      line.append(text, " ", time, " ", via);
      items.prepend(line);
      while (items.children.length > 50) items.lastElementChild.remove();
    });
    document.getElementById("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = document.getElementById("text");
      const body = new URLSearchParams({text: input.value});
      let problem = null;
      try {
        const response = await fetch(ITEMS_URL, {method: "POST", body});
        if (!response.ok) problem = (await response.json()).detail;
      } catch (failure) {
        problem = "The server cannot be reached.";
      }
      error.hidden = problem === null;
      error.textContent = problem ?? "";
      if (problem === null) input.value = "";
    });
  </script>
</body>
</html>
"""


@app.get("/")
def page() -> HTMLResponse:
    # the URLs come from the routes' names; in the script they are JS string literals
    body = PAGE.replace("STYLESHEET_URL", html.escape(app.url_for("static", path="style.css")))
    body = body.replace("MAX_LENGTH", str(MAX_LENGTH))
    body = body.replace("EVENTS_URL", json.dumps(app.url_for("events")))
    return HTMLResponse(body.replace("ITEMS_URL", json.dumps(app.url_for("post_item"))))


@app.post("/items")
def post_item(request: Request) -> tuple[dict[str, Any], int]:
    """Publish an item from a form field ``text``: a `def` handler, so `publish_sync`."""
    text = request.form().get("text")
    if not isinstance(text, str) or not text.strip():  # missing, blank, or a file
        abort(422, "text is required")
    text = text.strip()
    if len(text) > MAX_LENGTH:
        abort(422, f"text is longer than {MAX_LENGTH} characters")
    now = datetime.datetime.now(datetime.timezone.utc)
    item = {"text": text, "time": now.isoformat(), "pid": os.getpid()}
    try:
        # returns once the backend has it: every subscriber, in every process, gets it
        item_id = broadcast.publish_sync(CHANNEL, json.dumps(item))
    except BroadcastError:  # Redis is gone or does not answer (raised within seconds)
        # a Redis that was only slow or frozen may still add it when it wakes up
        abort(503, "The feed is not answering: your item may not have been posted.")
    return {"id": item_id, **item}, 201


@app.get("/events")
async def events(request: Request) -> EventSourceResponse:
    # sent by a reconnecting EventSource; an id the backend does not know is ignored
    last_id = request.headers.get("last-event-id")

    async def stream() -> AsyncIterator[dict[str, Any]]:
        after = last_id
        while True:
            try:
                # subscribed when entered: nothing posted from here on is missed;
                # items posted after `after` (if still kept) come first
                async with broadcast.subscribe(CHANNEL, last_id=after) as items:
                    yield {"event": "ready", "data": {"pid": os.getpid()}}
                    async for item in items:
                        yield {"event": "item", "id": item.id, "data": item.data}
                return  # the broadcast was disconnected: the server is stopping
            except BroadcastOverflow:
                # this client fell more than a backlog behind: subscribe again after
                # the last item it was sent, and the replay brings the rest (with
                # redis://, whatever came since is lost)
                after = items.last_id

    # a ping comment every 15 s keeps proxies from closing an idle stream; when the
    # client leaves, the generator is closed and its subscription released
    return EventSourceResponse(stream())


# gunicorn refuses attribute paths (mod:app.wsgi), so: gunicorn examples.feed:wsgi
wsgi = app.wsgi

if __name__ == "__main__":
    app.run()
