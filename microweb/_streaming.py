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

if TYPE_CHECKING:
    from ._concurrency import WorkerPool
    from .asgi import ASGIChannel, Send

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
    stream: Iterable[bytes | str] | AsyncIterable[bytes | str],
    channel: ASGIChannel,
    send: Send,
    pool: WorkerPool,
) -> None:
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
                        if isinstance(stream, AsyncIterable):
                            tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
        try:
            if isinstance(stream, AsyncIterable):
                completed = await _pump_async(stream, send)
            else:
                loop = asyncio.get_running_loop()
                completed = await pool.run(_pump_sync, stream, send, loop, stop)
        finally:
            tg.cancel_scope.cancel()
    if completed and not stop.is_set():
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _pump_async(stream: AsyncIterable[bytes | str], send: Send) -> bool:
    it = stream.__aiter__()
    try:
        async for chunk in it:
            data = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
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
    send: Send,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
) -> bool:
    it = iter(stream)
    try:
        for chunk in it:
            if stop.is_set():
                return False
            data = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
            message: dict[str, Any] = {
                "type": "http.response.body",
                "body": data,
                "more_body": True,
            }
            asyncio.run_coroutine_threadsafe(send(message), loop).result()
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
