"""`Request` (and the `HTTPConnection` base it shares with `WebSocket`).

A request is built from plain fields by a protocol adapter, plus a *channel*:
the adapter's object that knows the environ or scope, reads the body and can
tell whether the caller runs on an event loop. This module knows neither
protocol. Body methods follow the caller's own kind: on an event loop they
return awaitables, anywhere else they block and return the value.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ._parsers import parse_cookies, parse_options_header, parse_qsl, quote_path
from .datastructures import FormData, Headers, QueryParams, State
from .exceptions import HTTPException

if TYPE_CHECKING:
    from .applications import App
    from .routing import Route

__all__ = ["Channel", "HTTPConnection", "Request"]

#: Bytes asked of the server per read of the body.
CHUNK_SIZE = 64 * 1024

#: A valid ``Host`` header: reg-name / IPv4 / [IPv6], then an optional port.
#: (The first class excludes ":" and "[", so the match is linear.)
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]{0,5})?")


class Channel(Protocol):
    """What a protocol adapter gives a request (implemented in wsgi.py and asgi.py)."""

    protocol: str

    @property
    def environ(self) -> dict[str, Any] | None: ...
    @property
    def scope(self) -> dict[str, Any] | None: ...

    def headers(self) -> Headers:
        """The request's header fields."""
        ...

    def content_length(self) -> int | None: ...
    def server(self) -> str: ...
    def client(self) -> tuple[str, int] | None: ...
    def on_loop(self) -> bool: ...
    def read_sync(self, size: int) -> bytes: ...
    def read_async(self, size: int) -> Awaitable[bytes]: ...
    def offload(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """From the event loop: run a blocking ``fn(*args)`` in a thread and await it."""
        ...

    #: True when the body is read natively by async code (ASGI), False by blocking code.
    native_async: bool

    def call_async(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        """From a thread: run ``await fn(*args, **kw)`` on the loop and return its result."""
        ...


class HTTPConnection:
    """The cheap, lazily parsed attributes every request and WebSocket has."""

    __slots__ = (
        "_channel",
        "_cookies",
        "_headers",
        "_query",
        "_session",
        "_state",
        "_url",
        "app",
        "method",
        "path",
        "path_params",
        "query_string",
        "raw_path",
        "root_path",
        "route",
        "scheme",
    )

    def __init__(
        self,
        app: App,
        channel: Channel,
        method: str,
        path: str,
        raw_path: str,
        query_string: str,
        root_path: str = "",
        scheme: str = "http",
    ) -> None:
        self.app = app
        self._channel = channel
        self.method = method
        #: The decoded path, without the query string and the root path.
        self.path = path
        #: The path as sent (percent-encoded, ASCII), without the root path.
        self.raw_path = raw_path
        #: The raw query string (Latin-1 text).
        self.query_string = query_string
        #: The mount prefix (decoded text, as in Starlette; URLs get it encoded).
        self.root_path = root_path
        self.scheme = scheme
        self.path_params: dict[str, Any] = {}
        self.route: Route | None = None
        self._headers: Headers | None = None
        self._query: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._session: Any = None
        self._state: State | None = None
        self._url: str | None = None

    @property
    def protocol(self) -> str:
        """``"wsgi"`` or ``"asgi"``."""
        return self._channel.protocol

    @property
    def environ(self) -> dict[str, Any] | None:
        """The WSGI environ (under WSGI), else None."""
        return self._channel.environ

    @property
    def scope(self) -> dict[str, Any] | None:
        """The ASGI scope (under ASGI), else None."""
        return self._channel.scope

    @property
    def headers(self) -> Headers:
        """The request's header fields (case-insensitive; `getall` for repeated ones)."""
        h = self._headers
        if h is None:
            h = self._headers = self._channel.headers()
        return h

    @property
    def query_params(self) -> QueryParams:
        """The query string's parameters (`get` the first value, `getall` every one)."""
        q = self._query
        if q is None:
            q = self._query = QueryParams(parse_qsl(self.query_string))
        return q

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header's cookies by name (the first of a repeated name wins)."""
        c = self._cookies
        if c is None:
            fields = self.headers.getall("cookie")
            c = parse_cookies("; ".join(fields)) if fields else {}
            self._cookies = c
        return c

    @property
    def session(self) -> dict[str, Any]:
        """The session (a dict), when the `microweb.middleware.Sessions` middleware is on."""
        session = self._session
        if session is None:
            loader = self.app._session_loader
            if loader is None:
                raise AttributeError(
                    "request.session needs the Sessions middleware: "
                    "app.add_middleware(microweb.middleware.Sessions(secret_key=...))"
                )
            session = self._session = loader.load(self)  # on first use: any hook may use it
        session.accessed = True
        return session  # type: ignore[no-any-return]

    @property
    def state(self) -> State:
        """A namespace for your own values, for this request (or WebSocket) only."""
        s = self._state
        if s is None:
            s = self._state = State()
        return s

    @property
    def client(self) -> tuple[str, int] | None:
        """``(host, port)`` of the peer, or None when the server does not say."""
        return self._channel.client()

    @property
    def host(self) -> str:
        """The ``Host`` header when it is a valid host, else the server's own address."""
        host = self.headers.get("host")
        if host and _HOST.fullmatch(host):
            return host
        return self._channel.server()

    @property
    def url(self) -> str:
        """The full URL: scheme, host, root path, path and query string."""
        u = self._url
        if u is None:
            u = f"{self.scheme}://{self.host}{quote_path(self.root_path)}{self.raw_path}"
            if self.query_string:
                u = f"{u}?{self.query_string}"
            self._url = u
        return u

    def url_for(self, name: str, /, **params: Any) -> str:
        """The path of route `name`, under this request's root path (percent-encoded)."""
        return quote_path(self.root_path) + self.app.url_for(name, **params)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'method', '')} {self.path!r}>"


class Request(HTTPConnection):
    """An HTTP request. Body methods are awaited in async code, called in sync code.

    Besides the properties and methods below, it has plain attributes:
    `method` (upper-case), `path` (decoded, without the query string and the
    root path), `raw_path` (as sent), `query_string`, `root_path`, `scheme`,
    `path_params` (the converted path parameters), `route` (the matched
    route, or None) and `app`.
    """

    __slots__ = ("_body", "_consumer", "_declared", "_form", "_json", "_streamed")

    _body: bytes | None
    _form: FormData | None

    def __init__(
        self,
        app: App,
        channel: Channel,
        method: str,
        path: str,
        raw_path: str,
        query_string: str,
        root_path: str = "",
        scheme: str = "http",
        route: Route | None = None,
        path_params: dict[str, Any] | None = None,
    ) -> None:
        # the base's fields set here, not through super(): this runs per request
        self.app = app
        self._channel = channel
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query_string = query_string
        self.root_path = root_path
        self.scheme = scheme
        self.path_params = {} if path_params is None else path_params
        self.route = route
        self._headers = None
        self._query = None
        self._cookies = None
        self._session = None
        self._state = None
        self._url = None
        self._body = None
        self._declared = _UNSET
        self._json = _UNSET
        self._form = None
        self._streamed = False
        self._consumer: str | None = None

    # ---------------------------------------------------------- headers
    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header, or None."""
        return self.headers.get("content-type")

    @property
    def content_length(self) -> int | None:
        """The declared body length; HTTPException(400) if it is malformed."""
        declared = self._declared
        if declared is _UNSET:
            try:
                declared = self._channel.content_length()
            except ValueError:
                raise HTTPException(400, "Invalid Content-Length") from None
            self._declared = declared
        return declared  # type: ignore[no-any-return]

    def _check_length(self) -> None:
        """Refuse a malformed Content-Length (400) or one over the limit (413) up front."""
        declared = self.content_length
        if declared is not None and declared > self.app.max_body_size:
            raise HTTPException(413)

    # ------------------------------------------------------------- body
    #
    # Strategy: a whole body (or form) is read where the protocol reads it
    # natively -- on the loop under ASGI, in the server's thread under WSGI --
    # and code on the other side gets it with one hop, not one per chunk.

    def body(self) -> Any:
        """The whole body as bytes (awaitable on an event loop)."""
        if self._consumer != "body":
            self._consume("body")
        if self._channel.on_loop():
            return self._body_async()
        return self._body_sync()

    def text(self) -> Any:
        """The body decoded with the Content-Type's charset (UTF-8 by default)."""
        if self._consumer != "body":
            self._consume("body")
        if self._channel.on_loop():
            return self._text_async()
        return self._decode(self._body_sync())

    def json(self) -> Any:
        """The body parsed as JSON; HTTPException(400) when it is not valid JSON."""
        if self._consumer != "body":
            self._consume("body")
        if self._channel.on_loop():
            return self._json_async()
        if self._json is _UNSET:
            self._json = _parse_json(self._body_sync())
        return self._json

    def form(self) -> Any:
        """The body as `FormData` (urlencoded or multipart)."""
        from .forms import parse_form_async, parse_form_sync

        channel = self._channel
        if channel.on_loop():
            if channel.native_async:
                return self._form_async(parse_form_async, self)
            return self._form_async(channel.offload, parse_form_sync, self)
        if self._form is None:
            if channel.native_async:
                self._form = channel.call_async(parse_form_async, (self,), {})
            else:
                self._form = parse_form_sync(self)
        return self._form

    def stream(self) -> Any:
        """The raw body in chunks, unbuffered: an iterator, or an async one on a loop.

        The body can be consumed once: by `body()` (and the methods built on
        it), which caches it, or by `stream()`, which does not. `stream()`
        after `body()` yields the cached body; `body()` after `stream()`, or a
        second `stream()`, raises RuntimeError.
        """
        self._consume("stream")
        if self._channel.on_loop():
            return self._stream_async()
        return self._stream_sync()

    # -------------------------------------------------- body internals
    #
    # Strategy: each read loop asks the channel for at most what is left of
    # the declared length, so a body with Content-Length ends without one more
    # read to find the end; the guard raises 400/413 as the bytes arrive.

    def _consume(self, how: str) -> None:
        """Record how user code consumes the body (see `stream`)."""
        consumer = self._consumer
        if consumer == "stream":
            raise RuntimeError("the request body was already streamed")
        if consumer is None:
            self._consumer = how

    def _guard(self) -> _BodyGuard:
        if self._streamed:
            raise RuntimeError("the request body was already streamed")
        self._streamed = True
        return _BodyGuard(self.content_length, self.app.max_body_size)

    def _stream_sync(self) -> Iterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        guard = self._guard()
        read = self._channel.read_sync
        while size := guard.next_size():
            chunk = guard.check(read(size))
            if not chunk:
                return
            yield chunk

    async def _stream_async(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        guard = self._guard()
        read = self._channel.read_async
        while size := guard.next_size():
            chunk = guard.check(await read(size))
            if not chunk:
                return
            yield chunk

    def _body_sync(self) -> bytes:
        if self._body is None:
            if self._channel.native_async:
                return self._channel.call_async(self._read_all_async, (), {})  # type: ignore[no-any-return]
            return self._read_all_sync()
        return self._body

    async def _body_async(self) -> bytes:
        if self._body is None:
            if not self._channel.native_async:
                return await self._channel.offload(self._read_all_sync)  # type: ignore[no-any-return]
            return await self._read_all_async()
        return self._body

    def _read_all_sync(self) -> bytes:
        """Read and cache the whole body (the loop of `_stream_sync`, without a
        generator: this is every JSON request's path)."""
        if self._body is None:
            guard = self._guard()
            read = self._channel.read_sync
            chunks = []
            declared = guard.declared
            if declared is not None and 0 < declared <= CHUNK_SIZE:
                # the loop's first read; the whole body, as a rule: nothing left to check
                chunk = read(declared)
                if len(chunk) == declared:
                    self._body = chunk
                    return chunk
                chunks.append(guard.check(chunk))  # cut short (400), or a part of it
            while size := guard.next_size():
                chunk = guard.check(read(size))
                if not chunk:
                    break
                chunks.append(chunk)
            self._body = _join(chunks)
        return self._body

    async def _read_all_async(self) -> bytes:
        """Read and cache the whole body (the loop of `_stream_async`, without
        an async generator: this is every JSON request's path)."""
        if self._body is None:
            guard = self._guard()
            read = self._channel.read_async
            chunks = []
            declared = guard.declared
            if declared is not None and 0 < declared <= CHUNK_SIZE:
                # the loop's first read (see _read_all_sync)
                chunk = await read(declared)
                if len(chunk) == declared:
                    self._body = chunk
                    return chunk
                chunks.append(guard.check(chunk))
            while size := guard.next_size():
                chunk = guard.check(await read(size))
                if not chunk:
                    break
                chunks.append(chunk)
            self._body = _join(chunks)
        return self._body

    async def _text_async(self) -> str:
        return self._decode(await self._body_async())

    async def _json_async(self) -> Any:
        if self._json is _UNSET:
            self._json = _parse_json(await self._body_async())
        return self._json

    async def _form_async(self, parse: Any, *args: Any) -> FormData:
        if self._form is None:
            self._form = await parse(*args)
        return self._form

    def _decode(self, body: bytes) -> str:
        _, params = parse_options_header(self.content_type)
        charset = params.get("charset") or "utf-8"
        try:
            return body.decode(charset)
        except LookupError:
            raise HTTPException(400, f"Unknown charset {charset!r}") from None
        except UnicodeDecodeError:
            raise HTTPException(400, f"The body is not valid {charset}") from None

    def _close(self) -> None:
        """Release what the request holds (form files) once the response is done."""
        form = self._form
        if form is not None:
            self._form = None
            form.close()


# A coroutine is named after its function: named after the call the user wrote,
# Python's warning for a forgotten await says "coroutine 'Request.json' was
# never awaited", and a handler that returns one is told to await request.json().
for _name in ("body", "text", "json", "form"):
    getattr(Request, f"_{_name}_async").__qualname__ = f"Request.{_name}"
del _name

_UNSET: Any = object()


def _join(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):  # 1e999: not representable, not sendable back
        raise ValueError(f"number out of range: {text}")
    return value


_INF = float("inf")
_fast_decode = msgspec.json.Decoder().decode
#: Strict JSON: no NaN/Infinity, no infinite floats.
_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
_c_make_scanner = getattr(json.scanner, "c_make_scanner", None)
_scan = _c_make_scanner(_decoder) if _c_make_scanner is not None else None


def _parse_json(body: bytes) -> Any:
    """Parse a request body as JSON: UTF-8 only (RFC 8259), strict; else 400.

    msgspec parses what it accepts (most bodies) with no Python call per
    value; the json module decides the rest, as it always did (it accepts a
    lone escaped surrogate, ``"\\ud800"``, which msgspec refuses). Wherever
    msgspec accepts a body, the two give the same value.
    """
    try:
        return _fast_decode(body)
    except (msgspec.DecodeError, RecursionError):  # (ValidationError: a number out of range)
        pass
    try:
        text = body.decode("utf-8")
        if _scan is not None and text[:1] in ("{", "["):
            # the common case, without json's whitespace regex (a few µs a request)
            value, end = _scan(text, 0)
            if end != len(text) and text[end:].strip(" \t\n\r"):
                raise ValueError("extra data after the JSON value")
            return value
        return _decoder.decode(text)
    except (ValueError, RecursionError, StopIteration):  # (ValueError: also bad UTF-8)
        raise HTTPException(400, "Invalid JSON body") from None


class _BodyGuard:
    """Counts body bytes against the declared length and the size limit.

    The limit is enforced while reading, so a body without Content-Length
    stops at `max_size` (413) and a handler never sees a truncated body.
    """

    __slots__ = ("declared", "max_size", "total")

    def __init__(self, declared: int | None, max_size: int) -> None:
        self.declared = declared
        self.max_size = max_size
        self.total = 0
        if declared is not None and declared > max_size:
            raise HTTPException(413)

    def next_size(self) -> int:
        """How much to ask for next: 0 once the declared length has arrived."""
        if self.declared is None:
            return CHUNK_SIZE
        left = self.declared - self.total
        return CHUNK_SIZE if left > CHUNK_SIZE else left

    def check(self, chunk: bytes) -> bytes:
        if not chunk:
            if self.declared is not None and self.total < self.declared:
                raise HTTPException(400, "Request body ended before its Content-Length")
            return chunk
        self.total += len(chunk)
        if self.total > self.max_size:
            raise HTTPException(413)
        if self.declared is not None and self.total > self.declared:
            raise HTTPException(400, "Request body longer than its Content-Length")
        return chunk
