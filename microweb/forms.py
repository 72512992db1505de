"""Form bodies: urlencoded and multipart, parsed under the app's limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._parsers import parse_options_header, parse_qsl
from .datastructures import FormData
from .exceptions import HTTPException

if TYPE_CHECKING:
    from .applications import App
    from .requests import Request

__all__ = ["parse_form_async", "parse_form_sync", "parse_urlencoded"]


def parse_urlencoded(app: App, body: bytes) -> FormData:
    """An urlencoded body as FormData; too many fields or too long a value → 413."""
    try:
        pairs = parse_qsl(body.decode("latin-1"), max_fields=app.max_form_fields)
    except OverflowError:
        raise HTTPException(413, "Too many form fields") from None
    limit = app.max_form_field_size
    for key, value in pairs:
        if len(value) > limit or len(key) > limit:
            raise HTTPException(413, "A form field is too large")
    return FormData(pairs)


def _kind(request: Request) -> str:
    kind, _ = parse_options_header(request.content_type)
    return kind


def parse_form_sync(request: Request) -> FormData:
    kind = _kind(request)
    if kind == "application/x-www-form-urlencoded":
        request._consume("body")
        return parse_urlencoded(request.app, request._read_all_sync())
    if kind == "multipart/form-data":
        from ._multipart import MultipartReader

        reader = MultipartReader(request)
        request._consume("stream")
        try:
            for chunk in request._stream_sync():
                reader.feed(chunk)
            return reader.finish()
        except BaseException:
            reader.abort()
            raise
    return FormData()


async def parse_form_async(request: Request) -> FormData:
    kind = _kind(request)
    if kind == "application/x-www-form-urlencoded":
        request._consume("body")
        return parse_urlencoded(request.app, await request._read_all_async())
    if kind == "multipart/form-data":
        from ._multipart import MultipartReader

        reader = MultipartReader(request)
        request._consume("stream")
        try:
            async for chunk in request._stream_async():
                await reader.feed_async(chunk)
            return reader.finish()
        except BaseException:
            reader.abort()
            raise
    return FormData()
