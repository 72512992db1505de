"""Server-Sent Events: a page whose script shows a live counter from ``/events``.

    uvicorn examples.sse:app.asgi
    waitress-serve --listen=127.0.0.1:8000 --threads=16 examples.sse:app.wsgi  # a thread per page
    gunicorn --worker-class gthread --threads 16 examples.sse:wsgi

Open http://localhost:8000/ in a browser, or watch the stream itself::

    curl -N localhost:8000/events                        # a tick every second, forever
    curl -N 'localhost:8000/events?limit=3&interval=0.2' # three ticks, then the end
    curl -N localhost:8000/events -H 'Last-Event-ID: 41' # resumes at tick 42

Each tick is an event named ``tick`` whose id is its number and whose data is
JSON. When the connection drops, the browser's ``EventSource`` reconnects by
itself and sends the last id it saw in ``Last-Event-ID``: the counter resumes
where it was instead of starting over.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from microweb import App, EventSourceResponse, HTMLResponse, Request, abort

app = App()
app.static("/static", Path(__file__).parent / "static")  # style.css, shared by the examples

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>microweb: live events</title>
  <link rel="stylesheet" href="STYLESHEET_URL">
</head>
<body>
  <h1>Live events</h1>
  <p class="muted">A tick a second from the server; the newest is on top.</p>
  <p id="status" class="status">connecting…</p>
  <ol id="ticks" class="log" reversed></ol>
  <script>
    const ticks = document.getElementById("ticks");
    const status = document.getElementById("status");
    const source = new EventSource(EVENTS_URL);
    source.addEventListener("open", () => {
      status.textContent = "connected";
      status.classList.add("connected");
    });
    source.addEventListener("error", () => {
      status.textContent = "reconnecting…";
      status.classList.remove("connected");
    });
    source.addEventListener("tick", (event) => {
      const tick = JSON.parse(event.data);
      const item = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = `tick ${tick.n}`;
      const time = document.createElement("time");
      time.dateTime = tick.time;
      time.textContent = new Date(tick.time).toLocaleTimeString();
      item.append(name, " at ", time);
      ticks.prepend(item);
      while (ticks.children.length > 20) ticks.lastElementChild.remove();
    });
  </script>
</body>
</html>
"""


@app.get("/")
def page() -> HTMLResponse:
    # the URLs come from the routes' names; the events URL is written as a JS string literal
    page = PAGE.replace("STYLESHEET_URL", html.escape(app.url_for("static", path="style.css")))
    return HTMLResponse(page.replace("EVENTS_URL", json.dumps(app.url_for("events"))))


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        abort(400, f"{name} must be a number")
    if not low <= value <= high:
        abort(400, f"{name} must be between {low:g} and {high:g}")
    return value


@app.get("/events")
async def events(request: Request) -> EventSourceResponse:
    interval = _number(request, "interval", 1.0, 0.01, 60.0)
    limit = request.query_params.get("limit")
    if limit is not None and not (limit.isascii() and limit.isdigit() and int(limit) > 0):
        abort(400, "limit must be a positive integer")
    last_id = request.headers.get("last-event-id", "")
    start = int(last_id) + 1 if last_id.isascii() and last_id.isdigit() else 1

    async def ticks() -> AsyncIterator[dict[str, Any]]:
        n = start
        while True:
            now = datetime.datetime.now(datetime.timezone.utc)
            yield {"event": "tick", "id": n, "data": {"n": n, "time": now.isoformat()}}
            if limit is not None and n - start + 1 >= int(limit):
                return  # the stream ends; a browser would reconnect, a test reads it whole
            n += 1
            await asyncio.sleep(interval)

    # a ping comment every 15 s (the default) keeps proxies from closing an idle stream
    return EventSourceResponse(ticks())


# gunicorn refuses attribute paths (mod:app.wsgi), so: gunicorn examples.sse:wsgi
wsgi = app.wsgi

if __name__ == "__main__":
    app.run()
