"""The app that tests/test_sse.py runs under uvicorn, waitress and gunicorn.

Served as ``uvicorn tests.apps.sse_app:app.asgi``,
``waitress-serve tests.apps.sse_app:app.wsgi`` and
``gunicorn tests.apps.sse_app:wsgi``.

A test opens ``/events/{kind}?channel=NAME`` and drives it from outside: the
stream sends event 1 at once, and event N+1 only after ``POST /release/NAME``
has been called N times, so a test can show that each event reached it before
the next one existed. ``GET /state/NAME`` reports what the generator did
(events sent, whether its ``finally`` ran).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from microweb import App, EventSourceResponse, HTTPException, Request

logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")

#: Seconds a generator waits for a release before it gives up (a test failed).
WAIT = 10.0


class Gate:
    """A counter of releases that sync code and coroutines (on any loop) can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._released = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def released(self) -> int:
        with self._cond:
            return self._released

    def release(self) -> None:
        with self._cond:
            self._released += 1
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def wait(self, count: int, timeout: float = WAIT) -> bool:
        """Block until released `count` times in all; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._released >= count, timeout)

    async def wait_async(self, count: int, timeout: float = WAIT) -> bool:
        """`wait` without blocking the loop (cancellable)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        key = (loop, event)
        deadline = loop.time() + timeout
        with self._cond:
            self._waiters.add(key)
        try:
            while True:
                with self._cond:
                    if self._released >= count:
                        return True
                    event.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except asyncio.TimeoutError:
                    return False
        finally:
            with self._cond:
                self._waiters.discard(key)


class Channel:
    """One stream's gate and what its generator reports."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.sent = 0
        self.finished = False  # the generator's finally ran


_channels: dict[str, Channel] = {}
_channels_lock = threading.Lock()


def channel(name: str) -> Channel:
    with _channels_lock:
        return _channels.setdefault(name, Channel())


app = App()
wsgi = app.wsgi


def _params(request: Request) -> tuple[Channel, int, dict[str, Any]]:
    """``?channel=NAME&count=N&ping=SECONDS`` (``ping=none``: no pings; absent: the default)."""
    q = request.query_params
    name = q.get("channel")
    if not name:
        raise HTTPException(400, "channel is required")
    options: dict[str, Any] = {}
    ping = q.get("ping")
    if ping is not None:
        options["ping"] = None if ping == "none" else float(ping)
    return channel(name), int(q.get("count", "3")), options


@app.get("/events/sync")
def events_sync(request: Request) -> EventSourceResponse:
    ch, count, options = _params(request)

    def gen() -> Iterator[dict[str, Any]]:
        try:
            for n in range(1, count + 1):
                if n > 1 and not ch.gate.wait(n - 1):
                    yield {"event": "gave-up", "data": f"no release for event {n}"}
                    return
                ch.sent = n
                yield {"id": n, "event": "tick", "data": f"event {n}"}
        finally:
            ch.finished = True

    return EventSourceResponse(gen(), **options)


@app.get("/events/async")
async def events_async(request: Request) -> EventSourceResponse:
    ch, count, options = _params(request)

    async def gen() -> AsyncIterator[dict[str, Any]]:
        try:
            for n in range(1, count + 1):
                if n > 1 and not await ch.gate.wait_async(n - 1):
                    yield {"event": "gave-up", "data": f"no release for event {n}"}
                    return
                ch.sent = n
                yield {"id": n, "event": "tick", "data": f"event {n}"}
        finally:
            ch.finished = True

    return EventSourceResponse(gen(), **options)


@app.get("/events/bad")
def events_bad() -> EventSourceResponse:
    def gen() -> Iterator[dict[str, Any]]:
        yield {"data": "fine"}
        yield {"event": "two\r\nlines", "data": "never sent"}  # ValueError while streaming

    return EventSourceResponse(gen(), ping=None)


@app.post("/release/{name}")
def release(name: str) -> dict[str, int]:
    ch = channel(name)
    ch.gate.release()
    return {"released": ch.gate.released}


@app.get("/state/{name}")
def state(name: str) -> dict[str, Any]:
    ch = channel(name)
    return {"released": ch.gate.released, "sent": ch.sent, "finished": ch.finished}


@app.get("/hello")
def hello() -> str:
    return "hello"
