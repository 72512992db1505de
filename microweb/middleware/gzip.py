"""GZip: compress responses for clients that accept it, streamed bodies too."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING

from ..responses import chunk_bytes
from ..routing import Hook

if TYPE_CHECKING:
    from ..applications import App
    from ..requests import Request
    from ..responses import Response

__all__ = ["GZip"]


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``q=0`` refuses it)."""
    if not header:
        return False
    for item in header.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class GZip:
    """Compress a response when the client accepts gzip.

    A complete body is compressed when it is at least `minimum_size` bytes; a
    streamed body chunk by chunk (each chunk is flushed, so it still reaches
    the client as it is produced). ``Vary: Accept-Encoding`` is added to every
    response that could be compressed. Never compressed: an already encoded
    response (``Content-Encoding``), ``text/event-stream``, a ``no-transform``
    response, a partial (206) one, and `FileResponse` (its length and ranges
    are the file's).
    """

    def __init__(self, minimum_size: int = 500, compresslevel: int = 9) -> None:
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    def install(self, app: App) -> None:
        """Add this middleware's hooks to `app` (``app.add_middleware(...)`` calls it)."""
        app._add_hooks(after=Hook.inline(self.compress))

    def compress(self, request: Request, response: Response) -> None:
        """The after-hook: compress `response` in place when `request` accepts gzip."""
        from ..files import FileResponse

        h = response.headers
        if (
            response.status < 200
            or response.status in (204, 206, 304)
            or "content-encoding" in h
            or isinstance(response, FileResponse)
        ):
            return
        ctype = h.get("content-type", "")
        if ctype.startswith("text/event-stream") or "no-transform" in h.get("cache-control", ""):
            return
        stream = response.stream
        if stream is None and len(response.body) < self.minimum_size:
            return
        h.add_vary("Accept-Encoding")
        if not accepts_gzip(request.headers.get("accept-encoding")):
            return
        h["content-encoding"] = "gzip"
        h.pop("content-length")
        if stream is None:
            response.body = gzip.compress(response.body, self.compresslevel, mtime=0)
        elif isinstance(stream, AsyncIterable):
            response.stream = _gzip_async(stream, self.compresslevel)
        else:
            response.stream = _gzip_sync(stream, self.compresslevel)


def _compressor(level: int) -> zlib._Compress:
    return zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: the gzip format


def _gzip_sync(stream: Iterable[bytes | str], level: int) -> Iterator[bytes]:
    c = _compressor(level)
    it = iter(stream)
    try:
        for chunk in it:
            out = c.compress(chunk_bytes(chunk)) + c.flush(zlib.Z_SYNC_FLUSH)
            if out:
                yield out
        yield c.flush()
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


async def _gzip_async(stream: AsyncIterable[bytes | str], level: int) -> AsyncIterator[bytes]:
    c = _compressor(level)
    it = stream.__aiter__()
    try:
        async for chunk in it:
            out = c.compress(chunk_bytes(chunk)) + c.flush(zlib.Z_SYNC_FLUSH)
            if out:
                yield out
        yield c.flush()
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
