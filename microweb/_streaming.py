"""Streaming response bodies under ASGI.

Strategy: every stream is sent from the loop. A sync iterable is turned into
an async one that runs each ``next()`` in a thread of the stream pool, so a
thread is held only while a chunk is being made (a slow client, an idle
event stream or a big file pins none, and streams never take the threads
``def`` handlers need).

While the body streams, a `Listener` owns `receive`: it listens for
``http.disconnect`` and stops the stream when the client leaves, and keeps
the request body chunks it receives meanwhile for the app (a generator
that reads ``request.stream()`` gets them in order; none is lost), up to
the app's body size limit. The stream's iterator is closed in every case,
so a generator's ``finally`` runs. With a keep-alive
interval (Server-Sent Events) a producer task fills a small buffer and the
sender sends the ping when the buffer stays empty that long. A stream that
fails half-way is logged and left incomplete, so the server drops the
connection instead of sending a truncated body as whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import anyio

from .exceptions import HTTPException
from .responses import chunk_bytes

if TYPE_CHECKING:
    from ._concurrency import WorkerPool
    from .asgi import ASGIChannel, Send
    from .responses import Response

logger = logging.getLogger("microweb")
_DONE = object()


class Listener:
    """Receives a streaming request's messages: body chunks kept for the app, a
    disconnect noted (and the stream stopped) whenever it comes.

    Only one coroutine may wait on `receive`; while a response streams it is
    this one's `run`, and the app's body reads (`ASGIChannel.read_async`)
    take what it received. It never stops receiving (a disconnect must stop
    the stream even when the app never reads the body), so what it keeps is
    bounded by the app's body size limit, as `request.body()` is: past it,
    nothing more is kept and reading raises 413 as it would have.
    """

    __slots__ = (
        "_arrived",
        "_channel",
        "_chunks",
        "_limit",
        "_overflow",
        "_received",
        "_truncated",
    )

    def __init__(self, channel: ASGIChannel, limit: int) -> None:
        self._channel = channel
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._received = 0
        self._overflow = False
        self._truncated = False
        self._arrived = asyncio.Event()

    async def run(self) -> None:
        """Return when the client has gone."""
        channel = self._channel
        while True:
            message = await channel.receive()
            kind = message["type"]
            if kind == "http.request":
                body: bytes = message.get("body", b"")
                if body:
                    self._received += len(body)
                    if self._received > self._limit:
                        self._overflow = True  # the reader gets 413; keep nothing more
                    else:
                        self._chunks.append(body)
                channel.more_body = message.get("more_body", False)
                self._arrived.set()
            elif kind == "http.disconnect":
                if channel.more_body:
                    self._truncated = True
                channel.more_body = False
                channel.disconnected = True
                self._arrived.set()
                return

    async def read(self) -> bytes:
        """The next body chunk (b"" at its end), as `ASGIChannel.read_async` gives it."""
        while True:
            if self._chunks:
                return self._chunks.popleft()
            if self._overflow:
                raise HTTPException(413)
            if self._truncated:
                raise HTTPException(400, "The client disconnected before sending the whole body")
            if not self._channel.more_body:
                return b""
            self._arrived.clear()
            await self._arrived.wait()


async def stream_asgi(
    response: Response, channel: ASGIChannel, send: Send, pool: WorkerPool
) -> None:
    stream = response.stream
    assert stream is not None
    chunks = stream if isinstance(stream, AsyncIterable) else _in_threads(stream, pool)
    if response.keepalive is None:
        body = _pump(chunks, send)
    else:
        body = _pump_keepalive(chunks, send, response.keepalive, response.keepalive_chunk)
    # Plain asyncio tasks, not a task group: cancelling a watcher through a
    # cancel scope left reference cycles (tracebacks) behind every response.
    request = channel.request
    limit = request.app.max_body_size if request is not None else 0
    listener = channel.listener = Listener(channel, limit)
    pump = asyncio.ensure_future(body)
    watcher = asyncio.ensure_future(listener.run())
    try:
        await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done() and not pump.done():  # the client left: stop the stream
            pump.cancel()
        completed = await _finished(pump)
    finally:
        for task in (pump, watcher):
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        channel.listener = None
    if completed and not channel.disconnected:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _finished(task: asyncio.Future[bool]) -> bool:
    """The pump's result: False when it failed or was stopped."""
    await asyncio.wait({task})
    if task.cancelled():
        return False
    return task.result()


async def _pump(chunks: AsyncIterable[bytes | str], send: Any) -> bool:
    """Send each chunk as it comes; True when the stream ended normally."""
    it = chunks.__aiter__()
    try:
        async for chunk in it:
            await send(
                {"type": "http.response.body", "body": chunk_bytes(chunk), "more_body": True}
            )
    except Exception as exc:
        logger.error("Exception while streaming a response", exc_info=exc)
        return False
    finally:
        await _aclose(it)
    return True


async def _pump_keepalive(
    chunks: AsyncIterable[bytes | str], send: Send, interval: float, ping: bytes
) -> bool:
    """`_pump`, plus `ping` after `interval` seconds without a chunk.

    A producer task feeds a small buffer, so waiting for the next chunk can
    time out without disturbing the iterator.
    """
    sender, receiver = anyio.create_memory_object_stream[bytes](4)
    failed: list[bool] = []

    async def produce() -> None:
        async with sender:
            if not await _pump(chunks, _to(sender)):
                failed.append(True)

    async with anyio.create_task_group() as tg, receiver:
        tg.start_soon(produce)
        while True:
            chunk = None
            with anyio.move_on_after(interval):
                try:
                    chunk = await receiver.receive()
                except anyio.EndOfStream:
                    break
            message = {"type": "http.response.body", "body": chunk or ping, "more_body": True}
            await send(message)
    return not failed


def _to(sender: Any) -> Any:
    """A `send` for `_pump` that puts each chunk's bytes in a memory stream."""

    async def send(message: dict[str, Any]) -> None:
        await sender.send(message["body"])

    return send


async def _in_threads(
    stream: Iterable[bytes | str], pool: WorkerPool
) -> AsyncIterator[bytes | str]:
    """A sync iterable as an async one: each ``next()`` in a pool thread.

    Closed in a thread too (a generator's ``finally`` may block). A
    cancellation waits for a ``next()`` still running (`WorkerPool.run`
    does): a generator cannot be closed while it runs.
    """
    it: Iterator[bytes | str] = iter(stream)
    try:
        while True:
            chunk = await pool.run(next, it, _DONE)
            if chunk is _DONE:
                return
            yield chunk
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await pool.run(close)
                except Exception:
                    logger.exception("Error while closing a response stream")


async def _aclose(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            try:
                await aclose()
            except Exception:
                logger.exception("Error while closing a response stream")
