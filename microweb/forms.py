"""Form bodies: urlencoded and multipart, parsed under the app's limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._parsers import parse_options_header, parse_qsl
from .datastructures import FormData
from .exceptions import HTTPException

if TYPE_CHECKING:
    from .applications import App
    from .requests import Request

__all__ = [
    "FORM_TYPES",
    "form_kind",
    "parse_form_async",
    "parse_form_sync",
    "parse_urlencoded",
    "read_form_async",
    "read_form_sync",
]

#: The media types of a form body.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


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


#: A multipart body up to this size is kept, so `body()` still works after `form()`.
KEEP_LIMIT = 1024 * 1024


class _Keep:
    """Keeps a small multipart body while it is parsed (a larger one streams on)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        # a body already read (by body(), or before a thread hop) stays readable
        request._consume("body" if request._body is not None else "stream")
        self.chunks: list[bytes] | None = [] if request._body is None else None
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if self.chunks is not None:
            self.size += len(chunk)
            if self.size <= KEEP_LIMIT:
                self.chunks.append(chunk)
            else:
                self.chunks = None

    def done(self) -> None:
        request = self.request
        if self.chunks is not None and request._body is None:
            request._body = b"".join(self.chunks)
            request._consumer = "body"  # cached: body() may read it again


def _has_unquoted_comma(value: str) -> bool:
    quoted = escaped = False
    for c in value:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            return True
    return False


def form_kind(request: Request) -> str:
    """The media type of the body, lower-case ("" when none is given); several → 400."""
    # several Content-Type fields (kept apart under ASGI, folded with a comma by
    # WSGI servers): which one? fail closed
    fields = request.headers.getall("content-type")
    if len(fields) > 1 or (fields and _has_unquoted_comma(fields[0])):
        raise HTTPException(400, "Several Content-Type headers")
    kind, _ = parse_options_header(request.content_type)
    return kind


def parse_form_sync(request: Request) -> FormData:
    kind = form_kind(request)
    if kind == "application/x-www-form-urlencoded":
        request._consume("body")
        return parse_urlencoded(request.app, request._read_all_sync())
    if kind == "multipart/form-data":
        from ._multipart import MultipartReader

        reader = MultipartReader(request)
        keep = _Keep(request)
        try:
            for chunk in request._stream_sync():
                reader.feed(chunk)
                keep.add(chunk)
            form = reader.finish()
        except BaseException:
            reader.abort()
            raise
        keep.done()
        return form
    return FormData()


async def parse_form_async(request: Request) -> FormData:
    kind = form_kind(request)
    if kind == "application/x-www-form-urlencoded":
        request._consume("body")
        return parse_urlencoded(request.app, await request._read_all_async())
    if kind == "multipart/form-data":
        from ._multipart import MultipartReader

        reader = MultipartReader(request)
        keep = _Keep(request)
        try:
            async for chunk in request._stream_async():
                await reader.feed_async(chunk)
                keep.add(chunk)
            form = reader.finish()
        except BaseException:
            reader.abort()
            raise
        keep.done()
        return form
    return FormData()


# The pipeline's step before a typed Form() parameter is bound: read the form
# where the protocol reads natively (in the server's thread under WSGI, on the
# loop under ASGI). A body without a Content-Type is read too, so the binder can
# tell "no form at all" from a body of another kind (415).


def read_form_sync(request: Request) -> None:
    if request._form is None:
        kind = form_kind(request)
        if kind in FORM_TYPES:
            request._form = parse_form_sync(request)
        elif not kind:
            request._consume("body")
            request._read_all_sync()


async def read_form_async(request: Request) -> None:
    if request._form is None:
        kind = form_kind(request)
        if kind in FORM_TYPES:
            request._form = await parse_form_async(request)
        elif not kind:
            request._consume("body")
            await request._read_all_async()
