"""Background tasks under real servers (tests/test_background.py).

Served as ``uvicorn tests.apps.background_app:app.asgi``,
``waitress-serve tests.apps.background_app:app.wsgi`` and
``gunicorn tests.apps.background_app:wsgi``.

``GET /work/{token}`` answers at once and leaves a background task that
waits until ``POST /release/{token}`` (or gives up after `TASK_DEADLINE`);
``GET /state/{token}?until=started|finished`` waits (with a deadline) for
the task to reach that point and says what it saw. Nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

from microweb import (
    App,
    BackgroundTask,
    BackgroundTasks,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    StreamingResponse,
)

#: How long a task waits to be released before it records "timed out".
TASK_DEADLINE = 20.0
#: How long `/state` waits for the task to reach the asked-for point.
STATE_DEADLINE = 20.0
#: The body of `/work`: a few chunks when streamed.
CHUNKS = [b"first,", b"second,", b"last"]

logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")

app = App()
wsgi = app.wsgi


class Track:
    """What one token's task did: started, released (or not), finished."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.state = "not started"


_tracks: dict[str, Track] = {}
_lock = threading.Lock()


def track(token: str) -> Track:
    with _lock:
        found = _tracks.get(token)
        if found is None:
            found = _tracks[token] = Track()
        return found


def wait_for_release(token: str) -> None:
    t = track(token)
    t.state = "waiting"
    t.started.set()
    t.state = "released" if t.release.wait(TASK_DEADLINE) else "timed out"
    t.finished.set()


async def wait_for_release_async(token: str) -> None:
    t = track(token)
    t.state = "waiting"
    t.started.set()
    released = await asyncio.to_thread(t.release.wait, TASK_DEADLINE)
    t.state = "released" if released else "timed out"
    t.finished.set()


def mark_ran(token: str) -> None:
    t = track(token)
    t.state = "ran"
    t.started.set()
    t.finished.set()


def fail(token: str) -> None:
    raise RuntimeError(f"background task {token} failed on purpose")


@app.get("/ping")
def ping() -> str:
    return "pong"


@app.get("/work/{token}")
def work(request: Request, token: str) -> Any:
    query = request.query_params
    fn = wait_for_release_async if query.get("task") == "async" else wait_for_release
    background = BackgroundTask(fn, token)
    if query.get("body") == "stream":
        return StreamingResponse(iter(CHUNKS), media_type="text/plain", background=background)
    if query.get("body") == "empty":  # no chunk to write: waitress sends the headers last
        return Response(status=204, background=background)
    if query.get("body") == "redirect":
        return RedirectResponse("/ping", 303, background=background)
    return PlainTextResponse(b"".join(CHUNKS), background=background)


@app.get("/endless/{token}")
def endless(token: str) -> StreamingResponse:
    """A stream that never ends by itself: only the client leaving stops it."""

    def sync_chunks() -> Iterator[bytes]:
        block = b"x" * 65536
        while True:
            yield block

    return StreamingResponse(
        sync_chunks(), media_type="text/plain", background=BackgroundTask(mark_ran, token)
    )


@app.get("/failing/{token}")
def failing(token: str) -> PlainTextResponse:
    tasks = BackgroundTasks()
    tasks.add_task(fail, token)
    tasks.add_task(mark_ran, token)
    return PlainTextResponse("sent", background=tasks)


@app.post("/release/{token}")
def release(token: str) -> dict[str, bool]:
    track(token).release.set()
    return {"released": True}


@app.get("/state/{token}")
def state(request: Request, token: str) -> dict[str, Any]:
    t = track(token)
    event = t.started if request.query_params.get("until") == "started" else t.finished
    reached = event.wait(STATE_DEADLINE)
    return {"reached": reached, "state": t.state}
