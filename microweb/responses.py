"""Response classes and the conversion of whatever a handler returns."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Coroutine, Generator, Iterable, Mapping
from email.utils import format_datetime, formatdate
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec

from ._parsers import quote_cookie
from .background import BackgroundTask
from .datastructures import MutableHeaders, check_header_name, check_header_value
from .exceptions import HTTPException, reason_phrase

__all__ = [
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
    "error_response",
    "to_response",
]

Content = Any
HeadersArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _json_default(obj: Any) -> Any:
    """What `JSONResponse` does with values the json module does not know."""
    if isinstance(obj, datetime.datetime | datetime.date | datetime.time):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID | decimal.Decimal):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    dump = getattr(obj, "model_dump", None)
    if dump is not None and _is_pydantic(obj):
        return dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _is_pydantic(obj: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(obj, pydantic.BaseModel)


_json_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
).encode

# the C encoder, made once (JSONEncoder.encode builds one per call); markers=None:
# no cycle check, a cyclic structure raises RecursionError instead
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode: Any = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def json_dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON, as `JSONResponse` sends it (no NaN; a cycle raises)."""
    text = "".join(_c_encode(data, 0)) if _c_encode is not None else _json_encode(data)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON can still carry it, escaped
        return _json_encode_ascii(data).encode("ascii")


_json_encode_ascii = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=_json_default
).encode


_new = object.__new__
#: The default status (``status is _OK`` holds for the int 200 only: small ints are cached).
_OK = 200


def _content_type(media_type: str | None) -> str | None:
    if media_type is None:
        return None
    media_type = check_header_value(media_type)
    if media_type.startswith("text/") and "charset" not in media_type.lower():
        return f"{media_type}; charset=utf-8"
    return media_type


class Response:
    """An HTTP response: `status`, `headers` (mutable, case-insensitive) and `body`.

    `content` may be bytes or str (encoded as UTF-8). `media_type` sets
    ``Content-Type`` (text types get ``charset=utf-8``). ``Content-Length`` is
    added when the response is sent. `background` (a `BackgroundTask` or
    `BackgroundTasks`, also settable later as ``response.background``) runs
    once the response has been sent.
    """

    media_type: ClassVar[str | None] = None
    _class_content_type: ClassVar[str | None] = None
    #: Set by streaming responses: the iterable the adapters send chunk by chunk.
    stream: Iterable[bytes | str] | AsyncIterable[bytes | str] | None = None
    #: For a stream: seconds without a chunk after which `keepalive_chunk` is sent.
    keepalive: float | None = None
    keepalive_chunk: bytes = b""
    #: Work to run once the response has been sent (`BackgroundTask` or
    #: `BackgroundTasks`); a class attribute, so a response without any costs
    #: the adapters one attribute check.
    background: BackgroundTask | None = None

    #: True while `render` is Response's own (str is then simply UTF-8 encoded).
    _plain_render: ClassVar[bool] = True
    #: True when the class overrides `_finalize` (the adapters skip the call if not).
    _finalizes: ClassVar[bool] = False

    #: The header fields, in order; `headers` wraps this list once something
    #: asks for it (most responses are sent without that ever happening).
    _fields: list[tuple[str, str]]
    #: The `headers` object, once made: while it is None, `_fields` is as
    #: `__init__` made it (a Content-Type field at most), which lets the
    #: adapters build the fields to send without a look at each one.
    _headers: MutableHeaders | None = None
    #: The class's Content-Type field (from `media_type`), made once.
    _class_field: ClassVar[tuple[str, str] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._class_content_type = ct = _content_type(cls.media_type)
        cls._class_field = None if ct is None else ("content-type", ct)
        cls._plain_render = cls.render is Response.render
        cls._finalizes = cls._finalize is not Response._finalize

    def __init__(
        self,
        content: Content = b"",
        status: int = 200,
        headers: HeadersArg = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        # (the int 200 is one object: the default status needs no other check)
        if status is not _OK and (type(status) is not int or not 100 <= status <= 599):
            raise ValueError(f"status must be an int in 100..599, not {status!r}")
        self.status = status
        # set on the instance, though the class has them: an instance's own
        # attribute is read faster than its class's, and the adapters read these
        self.stream = None
        self._headers = None
        kind = type(content)
        if kind is bytes:
            self.body = content
        elif kind is str and self._plain_render:
            self.body = content.encode("utf-8")
        else:
            self.body = self.render(content)
        if headers is None:
            if media_type is None:
                field = self._class_field
                self._fields = [] if field is None else [field]
            else:
                ct = _content_type(media_type)
                self._fields = [] if ct is None else [("content-type", ct)]
        else:
            h = self._headers = MutableHeaders(headers)
            self._fields = h._list
            ct = self._class_content_type if media_type is None else _content_type(media_type)
            if ct is not None and "content-type" not in h:
                h._list.append(("content-type", ct))
        self.background = None if background is None else _checked(background)

    @property
    def headers(self) -> MutableHeaders:
        """The header fields (mutable, case-insensitive)."""
        h = self._headers
        if h is None:
            h = self._headers = _new(MutableHeaders)
            h._list = self._fields
        return h

    @headers.setter
    def headers(self, value: MutableHeaders | HeadersArg) -> None:
        h = value if isinstance(value, MutableHeaders) else MutableHeaders(value)
        self._headers = h
        self._fields = h._list

    def _finalize(self, request: Any) -> None:
        """Adapt to the request just before sending (`FileResponse`: ranges, 304)."""

    def render(self, content: Content) -> bytes:
        """Turn `content` into the body bytes."""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode("utf-8")
        if isinstance(content, bytearray | memoryview):
            return bytes(content)
        raise TypeError(
            f"{type(self).__name__} content must be bytes or str, not {type(content).__name__}"
        )

    @property
    def status_code(self) -> int:
        """Alias of `status`."""
        return self.status

    @property
    def media(self) -> str | None:
        """The ``Content-Type`` header, if any."""
        return self.headers.get("content-type")

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: datetime.datetime | int | str | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header; CR, LF or NUL anywhere raise ValueError."""
        check_header_name(key)  # cookie names are tokens too
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"cookie value contains CR, LF or NUL: {value!r}")
        parts = [f"{key}={quote_cookie(value)}"]
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if expires is not None:
            if isinstance(expires, datetime.datetime):
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=datetime.timezone.utc)
                text = format_datetime(expires.astimezone(datetime.timezone.utc), usegmt=True)
            elif isinstance(expires, int):
                text = formatdate(time.time() + expires, usegmt=True)
            else:
                text = _attribute(expires, "expires")
            parts.append(f"Expires={text}")
        if path:
            parts.append(f"Path={_attribute(path, 'path')}")
        if domain:
            parts.append(f"Domain={_attribute(domain, 'domain')}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite:
            if samesite.lower() not in ("lax", "strict", "none"):
                raise ValueError(f"samesite must be 'lax', 'strict' or 'none', not {samesite!r}")
            parts.append(f"SameSite={samesite.capitalize()}")
        self.headers.append("set-cookie", "; ".join(parts))

    def delete_cookie(self, key: str, path: str = "/", domain: str | None = None) -> None:
        """Tell the client to drop cookie `key` (an expired, empty cookie)."""
        self.set_cookie(key, "", max_age=0, expires=0, path=path, domain=domain, samesite=None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status}>"


def _checked(background: Any) -> BackgroundTask:
    if not isinstance(background, BackgroundTask):
        raise TypeError(
            f"background must be a BackgroundTask or BackgroundTasks, not "
            f"{type(background).__name__}: write background=BackgroundTask(fn, *args, **kwargs)"
        )
    return background


def _attribute(value: str, what: str) -> str:
    value = check_header_value(value)
    if ";" in value:
        raise ValueError(f"cookie {what} must not contain ';': {value!r}")
    return value


class HTMLResponse(Response):
    """`content` (str or bytes) as ``text/html; charset=utf-8``."""

    media_type = "text/html"


class PlainTextResponse(Response):
    """`content` (str or bytes) as ``text/plain; charset=utf-8``."""

    media_type = "text/plain"


class JSONResponse(Response):
    """`data` as compact UTF-8 JSON (``application/json``)."""

    media_type = "application/json"

    def __init__(
        self,
        data: Any,
        status: int = 200,
        headers: HeadersArg = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(data, status, headers, media_type, background)

    def render(self, content: Any) -> bytes:
        """`content` as compact UTF-8 JSON."""
        return json_dumps(content)


#: Characters kept as they are in a redirect target (everything URL syntax needs).
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"


class RedirectResponse(Response):
    """A redirect to `url` (307 by default); non-ASCII is percent-encoded."""

    def __init__(
        self,
        url: str,
        status: int = 307,
        headers: HeadersArg = None,
        background: BackgroundTask | None = None,
    ) -> None:
        url = check_header_value(str(url))
        super().__init__(b"", status, headers, None, background)
        self.headers["location"] = url if url.isascii() else quote(url, safe=_URL_SAFE)


class StreamingResponse(Response):
    """A body sent chunk by chunk as `content` produces it.

    `content` is a sync or an async iterable of bytes or str; both work under
    both protocols, and no chunk waits for the next one.
    """

    def __init__(
        self,
        content: Iterable[bytes | str] | AsyncIterable[bytes | str],
        status: int = 200,
        headers: HeadersArg = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if not isinstance(content, Iterable | AsyncIterable) or isinstance(content, str | bytes):
            raise TypeError("StreamingResponse content must be an iterable or async iterable")
        super().__init__(b"", status, headers, media_type, background)
        self.stream = content


# --------------------------------------------------------------------------
# What is sent
# --------------------------------------------------------------------------

#: Statuses that carry no body (and so no Content-Type or Content-Length).
NO_BODY_STATUSES = frozenset({204, 205, 304})


def chunk_bytes(chunk: bytes | str) -> bytes:
    """A streamed chunk as bytes (str is UTF-8); anything else is a TypeError."""
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"a streamed chunk must be bytes or str, not {type(chunk).__name__}")


def wire_headers(response: Response) -> tuple[list[tuple[str, str]], bool]:
    """The header fields to send for `response`, and whether it has a body.

    A copy (a response object may be sent many times): Content-Length is added
    to a complete body that lacks one; a response without Content-Type gets
    ``application/octet-stream`` (``text/plain`` when it is empty), since PEP
    3333 validators demand one; a 1xx/204/205/304 response keeps neither.
    """
    status = response.status
    h = response._headers
    if h is None and response.stream is None and status not in NO_BODY_STATUSES and status >= 200:
        # the fields as __init__ made them: a Content-Type at most
        fields = response._fields
        n = len(response.body)
        length = _lengths.get(n) or _length(n)
        if fields:
            return [fields[0], length], True
        return [length, _default_type(response.body)], True
    headers = list(response._fields if h is None else h._list)
    if status in NO_BODY_STATUSES or status < 200:
        return [kv for kv in headers if kv[0] not in ("content-type", "content-length")], False
    has_type = has_length = False
    for k, _ in headers:
        if k == "content-type":
            has_type = True
        elif k == "content-length":
            has_length = True
    if response.stream is None:
        body = response.body
        if not has_length:
            headers.append(("content-length", str(len(body))))
        if not has_type:
            headers.append(_default_type(body))
    elif not has_type:
        headers.append(("content-type", "application/octet-stream"))
    return headers, True


#: Content-Length fields of the sizes sent lately (formatting one costs more
#: than a dict lookup): at most 1,024 of each kind, the first sizes met.
_lengths: dict[int, tuple[str, str]] = {}
_lengths_bytes: dict[int, tuple[bytes, bytes]] = {}


def _length(n: int) -> tuple[str, str]:
    field = ("content-length", str(n))
    if len(_lengths) < 1024:
        _lengths[n] = field
    return field


def _length_bytes(n: int) -> tuple[bytes, bytes]:
    field = (b"content-length", b"%d" % n)
    if len(_lengths_bytes) < 1024:
        _lengths_bytes[n] = field
    return field


def _default_type(body: bytes) -> tuple[str, str]:
    """The Content-Type field of a complete body sent without one."""
    return ("content-type", "application/octet-stream" if body else "text/plain; charset=utf-8")


#: Encoded ``content-type`` fields, by value (a few media types serve most responses).
_encoded_types: dict[str, tuple[bytes, bytes]] = {}


def _encoded_type(value: str) -> tuple[bytes, bytes]:
    pair = _encoded_types.get(value)
    if pair is None:
        pair = (b"content-type", value.encode("latin-1"))
        if len(_encoded_types) < 64:
            _encoded_types[value] = pair
    return pair


def wire_headers_bytes(response: Response) -> tuple[list[tuple[bytes, bytes]], bool]:
    """`wire_headers` as ASGI wants them: (name, value) pairs of bytes."""
    status = response.status
    h = response._headers
    if h is None and response.stream is None and status not in NO_BODY_STATUSES and status >= 200:
        # the fields as __init__ made them: a Content-Type at most
        fields = response._fields
        n = len(response.body)
        length = _lengths_bytes.get(n) or _length_bytes(n)
        if fields:
            value = fields[0][1]
            pair = _encoded_types.get(value) or _encoded_type(value)
            return [pair, length], True
        return [length, _default_type_bytes(response.body)], True
    if status in NO_BODY_STATUSES or status < 200:
        fields, has_body = wire_headers(response)
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields], has_body
    out = []
    has_type = has_length = False
    for k, v in response._fields if h is None else h._list:
        if k == "content-type":
            has_type = True
            out.append(_encoded_types.get(v) or _encoded_type(v))
            continue
        if k == "content-length":
            has_length = True
        out.append((k.encode("latin-1"), v.encode("latin-1")))
    if response.stream is None:
        body = response.body
        if not has_length:
            out.append((b"content-length", b"%d" % len(body)))
        if not has_type:
            out.append(_default_type_bytes(body))
    elif not has_type:
        out.append((b"content-type", b"application/octet-stream"))
    return out, True


def _default_type_bytes(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-type", b"application/octet-stream" if body else b"text/plain; charset=utf-8")


# --------------------------------------------------------------------------
# What a handler returns -> Response
# --------------------------------------------------------------------------


def to_response(rv: Any) -> Response:
    """Convert a handler's return value (see the table in the docs) to a Response."""
    if isinstance(rv, Response):
        return rv
    t = type(rv)
    if t is dict or t is list:
        return _encoded_json(json_dumps(rv))  # JSONResponse(rv), built directly
    if t is str:
        return HTMLResponse(rv)
    if rv is None:
        return Response(b"", 204)
    if t is tuple:
        return _from_tuple(rv)
    if isinstance(rv, dict | list):
        return JSONResponse(rv)
    if isinstance(rv, str):
        return HTMLResponse(rv)
    if isinstance(rv, bytes | bytearray | memoryview):
        return Response(rv, media_type="application/octet-stream")
    if isinstance(rv, msgspec.Struct) or (
        dataclasses.is_dataclass(rv) and not isinstance(rv, type)
    ):
        return _encoded_json(msgspec.json.encode(rv))
    if _is_pydantic(rv):
        return _encoded_json(rv.model_dump_json().encode())
    raise _not_a_response(rv)


_JSON_FIELD = ("content-type", "application/json")


def _encoded_json(body: bytes, status: int = 200) -> Response:
    """A JSON response around `body`, already encoded: what ``JSONResponse(data,
    status)`` makes (`body` being ``json_dumps(data)``), built directly."""
    response = _new(JSONResponse)
    response.status = status
    response.stream = None
    response._headers = None
    response.body = body
    response._fields = [_JSON_FIELD]
    response.background = None
    return response


def _not_a_response(rv: Any) -> TypeError:
    """The error for a return value that is no response, with the likely fix."""
    t = type(rv)
    expected = (
        "expected a Response, dict, list, str, bytes, None or a (body, status[, headers]) tuple"
    )
    if isinstance(rv, Coroutine):
        name = getattr(rv, "__qualname__", t.__name__)
        rv.close()  # it will never run: closed here, not warned about by Python
        call = _BODY_CALLS.get(name)
        if call is not None:  # request.json() (body, text, form) without its await
            return TypeError(
                f"a handler returned the coroutine of {call} instead of its result: "
                f"in async def code, await it: `return await {call}`"
            )
        return TypeError(f"a handler returned the coroutine {name}() unawaited: await it")
    if isinstance(rv, Generator | AsyncGenerator):
        return TypeError(
            f"a handler returned a {t.__name__}; to stream what it yields, return "
            "StreamingResponse(...) around it (or EventSourceResponse for Server-Sent Events)"
        )
    return TypeError(f"a handler returned {t.__name__}; {expected}")


#: The coroutines of the body methods in async code (see requests.py).
_BODY_CALLS = {f"Request.{m}": f"request.{m}()" for m in ("body", "text", "json", "form")}


def _from_tuple(rv: tuple[Any, ...]) -> Response:
    if not 2 <= len(rv) <= 3:
        raise TypeError("a returned tuple must be (body, status) or (body, status, headers)")
    body, status = rv[0], rv[1]
    headers = rv[2] if len(rv) == 3 else None
    if isinstance(body, tuple):
        raise TypeError("a returned tuple's body cannot itself be a tuple")
    response = to_response(body)
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"returned status must be an int in 100..599, not {status!r}")
    response.status = status
    if status in NO_BODY_STATUSES and body is None:
        response.body = b""
    if headers:
        h = response.headers
        if isinstance(headers, Mapping):
            for k, v in headers.items():
                h[k] = v
        else:
            # a list of pairs may repeat a name (two Set-Cookie): its first
            # field replaces what the body's conversion set (Content-Type),
            # the later ones are added beside it
            seen: set[str] = set()
            for k, v in headers:
                name = k.lower()
                if name in seen:
                    h.append(k, v)
                else:
                    seen.add(name)
                    h[k] = v
    return response


_error_bodies: dict[int, tuple[str, bytes]] = {}


def error_response(exc: HTTPException, debug_text: str | None = None) -> Response:
    """The JSON response for an HTTPException: ``{"detail": ...}`` with its headers."""
    status, detail = exc.status, exc.detail
    cached = _error_bodies.get(status)
    try:
        if cached is not None and cached[0] == detail and debug_text is None:
            body = cached[1]
        elif debug_text is not None:
            body = json_dumps({"detail": detail, "traceback": debug_text})
        else:
            body = json_dumps({"detail": detail})
            if type(detail) is str and detail == reason_phrase(status):
                _error_bodies[status] = (detail, body)
    except (TypeError, ValueError, RecursionError) as error:  # a detail JSON cannot carry
        logging.getLogger("microweb").error(
            "the detail of an HTTPException(%d) is not JSON", status, exc_info=error
        )
        return error_response(HTTPException(500))
    response = _encoded_json(body, status)
    if exc.headers:
        h = response.headers
        for k, v in exc.headers.items():
            h[k] = v
    return response
