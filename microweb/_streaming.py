"""Streaming response bodies under ASGI.

An async iterable is iterated on the loop; a sync one is drained in one pool
thread, which sends each chunk through the loop. While the body streams, a
watcher listens for ``http.disconnect`` (once the request body is consumed,
so it never steals body chunks) and stops the stream when the client leaves:
an async generator is cancelled and closed, a sync one stops before its next
chunk. A stream that fails half-way is logged and left incomplete, so the
server drops the connection instead of sending a truncated body as whole.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from .exceptions import HTTPException
from .responses import chunk_bytes

if TYPE_CHECKING:
    from ._concurrency import WorkerPool
    from .asgi import ASGIChannel, Send
    from .responses import Response

logger = logging.getLogger("microweb")


def _body_consumed(channel: ASGIChannel) -> bool:
    """True when `receive` can only report a disconnect from now on."""
    if not channel.more_body:
        return True
    request = channel.request
    if request is None or request._streamed:
        return False
    try:
        declared = request.content_length
    except HTTPException:
        return False
    if declared is None:
        return request.headers.get("transfer-encoding") is None
    return declared == 0


async def stream_asgi(
    response: Response,
    channel: ASGIChannel,
    send: Send,
    pool: WorkerPool,
) -> None:
    stream = response.stream
    assert stream is not None
    keepalive = response.keepalive
    stop = threading.Event()
    completed = False
    async with anyio.create_task_group() as tg:
        if _body_consumed(channel):

            async def watch() -> None:
                while True:
                    message = await channel.receive()
                    if message["type"] == "http.disconnect":
                        channel.disconnected = True
                        stop.set()
                        if keepalive is not None or isinstance(stream, AsyncIterable):
                            tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
        try:
            if keepalive is not None:
                ping = response.keepalive_chunk
                completed = await _pump_keepalive(stream, send, keepalive, ping, pool, stop)
            elif isinstance(stream, AsyncIterable):
                completed = await _pump_async(stream, send)
            else:
                loop = asyncio.get_running_loop()
                completed = await pool.run(_pump_sync, stream, send, loop, stop)
        finally:
            tg.cancel_scope.cancel()
    if completed and not stop.is_set():
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _pump_keepalive(
    stream: Iterable[bytes | str] | AsyncIterable[bytes | str],
    send: Send,
    interval: float,
    ping: bytes,
    pool: WorkerPool,
    stop: threading.Event,
) -> bool:
    """Send chunks as a producer makes them, and `ping` after `interval` idle seconds.

    The producer is a task (async iterable) or a pool thread (sync iterable)
    feeding a small buffer, so waiting for the next chunk can time out
    without disturbing the iterator.
    """
    sender, receiver = anyio.create_memory_object_stream[bytes](4)
    failed: list[BaseException] = []
    loop = asyncio.get_running_loop()

    async def produce_async() -> None:
        assert isinstance(stream, AsyncIterable)
        async with sender:
            if not await _pump_async(stream, sender.send, raw=True):
                failed.append(RuntimeError("stream failed"))

    async def produce_in_thread() -> None:
        assert not isinstance(stream, AsyncIterable)
        try:
            if not await pool.run(_pump_sync, stream, sender.send, loop, stop, True):
                failed.append(RuntimeError("stream failed"))
        finally:
            sender.close()

    async with anyio.create_task_group() as tg, receiver:
        tg.start_soon(produce_async if isinstance(stream, AsyncIterable) else produce_in_thread)
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


async def _pump_async(stream: AsyncIterable[bytes | str], send: Any, raw: bool = False) -> bool:
    """Iterate `stream` on the loop, sending each chunk (as an ASGI message unless `raw`)."""
    it = stream.__aiter__()
    try:
        async for chunk in it:
            data = chunk_bytes(chunk)
            if raw:
                await send(data)
            else:
                await send({"type": "http.response.body", "body": data, "more_body": True})
    except Exception as exc:
        logger.error("Exception while streaming a response", exc_info=exc)
        return False
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await aclose()
                except Exception:
                    logger.exception("Error while closing a response stream")
    return True


def _pump_sync(
    stream: Iterable[bytes | str],
    send: Any,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
    raw: bool = False,
) -> bool:
    """In a pool thread: iterate `stream`, sending each chunk through the loop."""
    it = iter(stream)
    try:
        for chunk in it:
            if stop.is_set():
                return False
            data = chunk_bytes(chunk)
            message: Any = (
                data if raw else {"type": "http.response.body", "body": data, "more_body": True}
            )
            asyncio.run_coroutine_threadsafe(send(message), loop).result()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False  # the consumer is gone (the client left)
    except Exception as exc:
        logger.error("Exception while streaming a response", exc_info=exc)
        return False
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.exception("Error while closing a response stream")
    return True
