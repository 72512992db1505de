"""The app that tests/test_servers.py runs under uvicorn, waitress and gunicorn.

Served as ``uvicorn tests.apps.server_app:app.asgi``,
``waitress-serve tests.apps.server_app:app.wsgi`` and
``gunicorn tests.apps.server_app:wsgi`` (gunicorn refuses attribute paths).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from microweb import App, Request, StreamingResponse

#: Small enough that a test can exceed it quickly, large enough for "a few MB" uploads.
MAX_BODY_SIZE = 4 * 1024 * 1024
#: How long the slow handlers take.
SLOW = 0.4
#: How long a streamed response waits between its first and its last chunk.
STREAM_PAUSE = 1.0

# What a user would do: name the logger in each record, so a test can tell
# microweb's own log lines from the server's. (waitress calls basicConfig too;
# the first call wins, so every server prints this format.)
logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")

app = App(max_body_size=MAX_BODY_SIZE)
wsgi = app.wsgi


@app.on_startup
async def make_lock() -> None:
    # Made on the loop that runs startup, and bound to it here (an asyncio.Lock
    # binds to a loop the first time a task has to wait for it); under WSGI every
    # async handler must run on this same loop, or waiting for the lock raises
    # "... is bound to a different event loop".
    lock = asyncio.Lock()
    async with lock:
        waiter = asyncio.ensure_future(lock.acquire())
        await asyncio.sleep(0)  # let the waiter block: binds the lock to this loop
    await waiter
    lock.release()
    app.state.lock = lock
    app.state.loop = asyncio.get_running_loop()
    app.state.lock_users = 0
    app.state.startup_pid = os.getpid()


@app.get("/pid")
def pid() -> dict[str, Any]:
    return {"pid": os.getpid(), "startup_pid": getattr(app.state, "startup_pid", None)}


@app.get("/slow/sync")
def slow_sync() -> dict[str, Any]:
    start = time.monotonic()
    time.sleep(SLOW)
    return {"kind": "sync", "start": start, "end": time.monotonic()}


@app.get("/slow/async")
async def slow_async() -> dict[str, Any]:
    start = time.monotonic()
    await asyncio.sleep(SLOW)
    return {"kind": "async", "start": start, "end": time.monotonic()}


@app.get("/lock")
async def use_lock() -> dict[str, Any]:
    lock: asyncio.Lock = app.state.lock
    async with lock:
        app.state.lock_users += 1
        inside = app.state.lock_users
        await asyncio.sleep(0.005)  # hold the lock across a suspension: others must queue
        app.state.lock_users -= 1
    return {"inside": inside, "startup_loop": asyncio.get_running_loop() is app.state.loop}


def _digest(total: int, sha: Any) -> dict[str, Any]:
    return {"length": total, "sha256": sha.hexdigest()}


@app.post("/upload/sync")
def upload_sync(request: Request) -> dict[str, Any]:
    sha, total = hashlib.sha256(), 0
    for chunk in request.stream():
        sha.update(chunk)
        total += len(chunk)
    return _digest(total, sha)


@app.post("/upload/async")
async def upload_async(request: Request) -> dict[str, Any]:
    sha, total = hashlib.sha256(), 0
    async for chunk in request.stream():
        sha.update(chunk)
        total += len(chunk)
    return _digest(total, sha)


@app.post("/echo/sync")
def echo_sync(request: Request) -> Any:
    return {"kind": "sync", "data": request.json()}


@app.post("/echo/async")
async def echo_async(request: Request) -> Any:
    return {"kind": "async", "data": await request.json()}


@app.get("/stream/sync")
def stream_sync() -> StreamingResponse:
    def gen() -> Iterator[bytes]:
        yield b"first;"
        time.sleep(STREAM_PAUSE)
        yield b"last"

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/stream/async")
async def stream_async() -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        yield b"first;"
        await asyncio.sleep(STREAM_PAUSE)
        yield b"last"

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/boom")
def boom(request: Request) -> None:
    raise RuntimeError(f"kaboom {request.query_params.get('token', '')}")


@app.get("/boom/async")
async def boom_async(request: Request) -> None:
    raise RuntimeError(f"kaboom {request.query_params.get('token', '')}")


@app.get("/hello")
def hello() -> str:
    return "<p>hello, world</p>"


@app.get("/files/{name}")
def files(name: str) -> dict[str, str]:
    return {"name": name}


@app.get("/files/{folder}/{name}")
def nested_file(folder: str, name: str) -> dict[str, str]:
    return {"folder": folder, "name": name}


@app.get("/info")
def info(request: Request) -> dict[str, str]:
    return {"url": request.url, "path": request.path}
