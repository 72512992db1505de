"""Streaming response bodies under ASGI.

Strategy: every stream is sent from the loop. A sync iterable is turned into
an async one that runs each ``next()`` in a thread of the stream pool, so a
thread is held only while a chunk is being made (a slow client, an idle
event stream or a big file pins none, and streams never take the threads
``def`` handlers need).

While the body streams, a watcher listens for ``http.disconnect`` and stops
the stream when the client leaves: it starts once `receive` can only say
that (the body was read or there is none), or when user code never touched
the body (it then drains what is left of it). The stream's iterator is
closed in every case, so a generator's ``finally`` runs. With a keep-alive
interval (Server-Sent Events) a producer task fills a small buffer and the
sender sends the ping when the buffer stays empty that long. A stream that
fails half-way is logged and left incomplete, so the server drops the
connection instead of sending a truncated body as whole.
"""

from __future__ import annotations

import asyncio
import logging
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


def _may_watch(channel: ASGIChannel) -> bool:
    """True when listening for a disconnect steals no body the app still reads."""
    if not channel.more_body:
        return True
    request = channel.request
    if request is None or request._streamed:
        return False
    if request._consumer is None:
        return True  # user code never touched the body: the watcher drains it
    try:
        declared = request.content_length
    except HTTPException:
        return False
    if declared is None:
        return request.headers.get("transfer-encoding") is None
    return declared == 0


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
    pump = asyncio.ensure_future(body)
    watcher = asyncio.ensure_future(_watch(channel)) if _may_watch(channel) else None
    try:
        if watcher is not None:
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and not pump.done():  # the client left: stop the stream
                pump.cancel()
        completed = await _finished(pump)
    finally:
        for task in (pump, watcher):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
    if completed and not channel.disconnected:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch(channel: ASGIChannel) -> None:
    """Return when the client has gone (drains what is left of the request body)."""
    while True:
        message = await channel.receive()
        if message["type"] == "http.disconnect":
            channel.disconnected = True
            return


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

    Closed in a thread too (a generator's ``finally`` may block), after any
    ``next()`` still running has returned: a generator cannot be closed
    while it runs.
    """
    it: Iterator[bytes | str] = iter(stream)
    running: Any = None
    try:
        while True:
            running = pool.run(next, it, _DONE)
            chunk = await asyncio.shield(running)  # cancelled, it still runs to its end
            running = None
            if chunk is _DONE:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            if running is not None:
                try:
                    await running
                except BaseException:
                    pass
            close = getattr(it, "close", None)
            if close is not None:
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
