"""The WSGI adapter: `app.wsgi`, a PEP 3333 callable.

Sync code runs in the server's thread. Async code runs on the process's one
shared loop (`_shared_loop.shared_loop`) while the server's thread waits,
serving the loop's requests for sync calls and ``wsgi.input`` reads.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from ._concurrency import LifespanHolder, current_bridge
from ._misuse import wsgi_called_by_asgi
from ._parsers import (
    PLAIN_PATH,
    decode_path,
    encode_path,
    origin_form,
    parse_content_length,
    strip_root_path,
)
from ._pipeline import (
    Done,
    NotOriginForm,
    Step,
    advance,
    dispatch,
    drive_async,
    drive_sync,
    handle_error,
    loop_first,
    not_found,
    plain_not_found,
    server_error,
    target_response,
    unrouted_response,
)
from ._shared_loop import shared_loop
from ._wsgi_bodies import AsyncBody, SyncBody, WithBackground, close_iterable
from .datastructures import Headers
from .exceptions import HTTPException, reason_phrase
from .files import FileResponse
from .requests import _UNSET, Request
from .responses import Response, to_response, wire_headers

if TYPE_CHECKING:
    from .applications import App
    from .routing import Route

__all__ = ["WSGIAdapter"]

logger = logging.getLogger("microweb")
_copy_context = contextvars.copy_context

StartResponse = Callable[..., Any]
_STATUS_LINES: dict[int, str] = {}
_NOKW: dict[str, Any] = {}


def status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = f"{status} {reason_phrase(status) or 'Unknown'}"
    return line


class WSGIChannel:
    """A request's view of its environ; also the pipeline's `Runner` under WSGI."""

    __slots__ = ("environ",)

    protocol = "wsgi"
    scope = None
    #: The body is read natively by blocking code (see `Request.form`).
    native_async = False

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    # -- Channel
    def headers(self) -> Headers:
        return EnvironHeaders(self.environ)

    def content_length(self) -> int | None:
        env = self.environ
        value = env.get("CONTENT_LENGTH")
        if not value:
            return None
        if "HTTP_TRANSFER_ENCODING" in env and not env.get("wsgi.input_terminated"):
            # Framed twice, and the server passed the chunks through undecoded
            # (wsgiref; gunicorn and waitress decode them and say so with
            # wsgi.input_terminated): read by the length, the body would be
            # chunk syntax, and what follows it a second, smuggled request.
            raise HTTPException(400, "A body framed by both Content-Length and Transfer-Encoding")
        return parse_content_length([value])

    def server(self) -> str:
        env = self.environ
        name = env.get("SERVER_NAME", "")
        port = env.get("SERVER_PORT", "")
        scheme = env.get("wsgi.url_scheme", "http")
        if not port or (scheme, port) in (("http", "80"), ("https", "443")):
            return str(name)
        return f"{name}:{port}"

    def client(self) -> tuple[str, int] | None:
        env = self.environ
        addr = env.get("REMOTE_ADDR")
        if not addr:
            return None
        port = env.get("REMOTE_PORT", "")
        return (addr, int(port) if port.isdigit() else 0)

    def on_loop(self) -> bool:
        return shared_loop.on_loop()

    def read_sync(self, size: int) -> bytes:
        if size <= 0:
            return b""
        env = self.environ
        if not env.get("CONTENT_LENGTH") and not env.get("wsgi.input_terminated"):
            return b""  # no length, and the server does not mark the end: no body
        try:
            data: bytes = env["wsgi.input"].read(size)
        except Exception as exc:
            raise HTTPException(400, "Could not read the request body") from exc
        return data

    # Async code under WSGI runs on the shared loop while the server's thread
    # waits for it: blocking work goes back to that thread, through its bridge.
    async def read_async(self, size: int) -> bytes:
        return await _back_to_thread(self.read_sync, size)  # type: ignore[no-any-return]

    async def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await _back_to_thread(fn, *args)

    # -- Runner
    def call_async(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        return shared_loop.call(fn, args, kw)

    async def run_segment(self, gen: Generator[Step, Any, Any], step: Step) -> Step | Done:
        return await _back_to_thread(advance, gen, step)  # type: ignore[no-any-return]


async def _back_to_thread(fn: Callable[..., Any], *args: Any) -> Any:
    bridge = current_bridge()
    if bridge is None:  # not code a WSGI thread waits for (a task it spawned): a spare thread
        return await shared_loop.pool.run(fn, *args)
    return await bridge.call_in_thread(fn, *args)


@functools.lru_cache(maxsize=512)
def _environ_key(name: str) -> str:
    """The environ key of a header name: ``User-Agent`` -> ``HTTP_USER_AGENT``.

    A name with ``_`` has none: servers map ``X-A`` and ``X_A`` to one key, and
    under ASGI ``x_a`` never finds an ``X-A`` field either.
    """
    if "_" in name:
        return "microweb.no-such-header"
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


class EnvironHeaders(Headers):
    """Request headers read straight from the environ: a lookup by name is one
    dict lookup; the full list is built only when something asks for it."""

    __slots__ = ("_environ", "_fields")

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ
        self._fields: list[tuple[str, str]] | None = None

    @property  # computed, in place of the base's slot
    def _list(self) -> list[tuple[str, str]]:  # type: ignore[override]
        fields = self._fields
        if fields is None:
            fields = []
            for key, value in self._environ.items():
                if key.startswith("HTTP_"):
                    fields.append((key[5:].replace("_", "-").lower(), value))
                elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                    fields.append((key.replace("_", "-").lower(), value))
            self._fields = fields
        return fields

    def _value(self, key: str) -> str | None:
        env_key = _environ_key(key)
        value: str | None = self._environ.get(env_key)
        if value == "" and not env_key.startswith("HTTP_"):
            return None  # wsgiref sets CONTENT_LENGTH='' for "no body"
        return value

    def get(self, key: str, default: object = None) -> Any:
        value = self._value(key)
        return default if value is None else value

    def getall(self, key: str) -> list[str]:
        value = self._value(key)
        return [] if value is None else [value]

    def __getitem__(self, key: str) -> str:
        value = self._value(key)
        if value is None:
            raise KeyError(key.lower())
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._value(key) is not None


def _paths(environ: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    """The decoded path, its segments (when one holds %2F) and the raw path.

    PATH_INFO is decoded by the server, which loses the difference between
    ``/`` and ``%2F``; the raw target (RAW_URI from gunicorn, REQUEST_URI from
    waitress) keeps it, so it is used when it agrees with PATH_INFO. Without
    it, the raw path is PATH_INFO encoded again. Either way the raw path is
    plain ASCII (it goes into `request.url` and redirects).

    Raises NotOriginForm for a target that is not a path: waitress and wsgiref
    pass ``GET @evil.com/x`` through as PATH_INFO ``@evil.com/x``.
    """
    path_info: str = environ.get("PATH_INFO") or "/"
    if not path_info.startswith("/"):
        raise NotOriginForm(path_info)
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        target = raw.partition("?")[0].partition("#")[0]
        raw = origin_form(target)  # (absolute-form: the path after the authority)
        if raw is None:
            raise NotOriginForm(target)
        script = environ.get("SCRIPT_NAME", "")
        if script:  # (decoded, like PATH_INFO: compared with the raw path decoded)
            raw = strip_root_path(raw, _decode_latin1_path(script)) or raw
        if raw == path_info and PLAIN_PATH.issuperset(raw):
            return raw, None, raw
        path, segments = decode_path(raw)
        if path == _decode_latin1_path(path_info):
            return path, segments, encode_path(raw, keep_escapes=True)
    return _decode_latin1_path(path_info), None, encode_path(path_info, keep_escapes=False)


def _decode_latin1_path(path_info: str) -> str:
    """PATH_INFO's Latin-1 text of raw bytes, decoded as UTF-8 (bad bytes: U+FFFD)."""
    if path_info.isascii():
        return path_info
    return path_info.encode("latin-1", "replace").decode("utf-8", "replace")


def _no_start_response(*args: Any) -> Any:
    """The default of `WSGIAdapter.__call__`'s start_response: no WSGI server's."""
    raise TypeError("start_response is required")


class WSGIAdapter:
    """`app.wsgi`: serve the app to a PEP 3333 server."""

    def __init__(self, app: App) -> None:
        self.app = app
        #: Whether the WebSocket-routes warning was logged (at the first serve,
        #: not here: a module served by uvicorn may well say ``wsgi = app.wsgi``).
        self._warned = False
        #: Per route: whether its pipeline is driven from the loop (see `_loop_first`).
        self._plans: dict[Route, tuple[Any, Any, Any, bool]] = {}
        _apps.add(app)

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse = _no_start_response
    ) -> Iterable[bytes]:
        # Each request runs in a context of its own (a copy of the server thread's):
        # what its steps set is seen by its later steps, never by the thread's next
        # request. Async steps run in copies on the shared loop; what they set comes
        # back into this context when they return (see _concurrency.call_on_loop).
        if not self.app._started:
            if start_response is _no_start_response:
                # one argument: an ASGI 2 call (``uvicorn mod:app.wsgi``), never
                # a WSGI server's; checked here, off the started app's path
                return wsgi_called_by_asgi(self.app, environ)  # type: ignore[no-any-return]
            # in a context of its own: what startup sets is seen by no request
            # (as under an ASGI server, where the lifespan is a task of its own)
            failure = _copy_context().run(self.startup)
            if failure is not None:
                return self._respond(failure, environ, start_response, None)
        return _copy_context().run(self._serve, environ, start_response)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        app = self.app
        path = environ.get("PATH_INFO") or "/"
        if (
            "RAW_URI" in environ
            or "REQUEST_URI" in environ
            or path[0] != "/"
            or not PLAIN_PATH.issuperset(path)
        ):
            try:
                path, segments, raw_path = _paths(environ)
            except NotOriginForm as exc:  # never routed, never in a URL
                answer = target_response(app, environ["REQUEST_METHOD"], exc.target)
                return self._respond(answer, environ, start_response, None)
        else:
            segments, raw_path = None, path
        method = environ["REQUEST_METHOD"]
        route, params, leaves = app._matcher.match(method, path, segments)
        declares_length = bool(environ.get("CONTENT_LENGTH"))
        response: Response | None = None
        failure: Exception | None = None
        if route is None:
            if not declares_length and plain_not_found(app, path, leaves):
                return self._respond(not_found(), environ, start_response, None)
        elif (
            not route.needs_conn
            and not route.is_async
            and route.plain
            and app._hookless
            and not declares_length
        ):
            # Nothing but the handler runs, and it takes nothing from the request
            # but its path parameters: no Request is made, unless the handler
            # fails or its response needs one (a stream, a file).
            try:
                rv = route.invoke(None, params)
                response = rv if isinstance(rv, Response) else to_response(rv)
            except Exception as exc:
                failure = exc
            else:
                if response.stream is None and not response._finalizes:
                    return self._respond(response, environ, start_response, None)
        channel = WSGIChannel(environ)
        request = Request(
            app,
            channel,
            method,
            path,
            raw_path,
            environ.get("QUERY_STRING", ""),
            _decode_latin1_path(script) if (script := environ.get("SCRIPT_NAME")) else "",
            environ.get("wsgi.url_scheme", "http"),
            route,
            params,
        )
        if not declares_length:
            # no length to check: what `content_length` would find, without its
            # three calls (a tenth of a small request's cost)
            request._declared = None
        if response is not None:
            pass  # the handler's, made above: sent with the request it needs
        elif failure is not None:
            try:
                response = drive_sync(handle_error(app, request, failure), channel.call_async)
            finally:
                failure = None  # no frame <-> traceback cycle left behind
        elif route is None:
            response = unrouted_response(app, request, leaves) or drive_sync(
                dispatch(app, request, channel, leaves), channel.call_async
            )
        elif not route.is_async and route.plain and app._hookless:
            # nothing but the handler runs: call it here (see _pipeline.is_direct)
            try:
                if request._declared is _UNSET:
                    request._check_length()
                rv = route.invoke(request, params)
                response = rv if isinstance(rv, Response) else to_response(rv)
            except Exception as exc:
                response = drive_sync(handle_error(app, request, exc), channel.call_async)
        elif route.plain and app._hookless:
            # an async handler alone: the same, on the shared loop (one hop)
            try:
                if request._declared is _UNSET:
                    request._check_length()
                args, kwargs = route.arguments(request, request.path_params)
                response = to_response(shared_loop.call(route.endpoint, args, kwargs))
            except Exception as exc:
                response = drive_sync(handle_error(app, request, exc), channel.call_async)
        elif route.body_first and not route.is_async and app._hookless:
            # the same for a typed body, read first (in this thread, as the pipeline would)
            try:
                if request._declared is _UNSET:
                    request._check_length()
                request.body()
                response = to_response(route.invoke(request, params))
            except Exception as exc:
                response = drive_sync(handle_error(app, request, exc), channel.call_async)
        elif self._loop_first(route):
            # async steps mostly: the whole pipeline on the loop, in one hop
            # (its sync steps come back to this thread through the bridge)
            response = shared_loop.call(
                drive_async, (dispatch(app, request, channel, leaves), channel), _NOKW
            )
        else:
            response = drive_sync(dispatch(app, request, channel, leaves), channel.call_async)
        return self._respond(response, environ, start_response, request)

    def _loop_first(self, route: Route) -> bool:
        """`_pipeline.loop_first` for `route`, worked out again only when the app's
        hooks or middleware change."""
        app = self.app
        plan = self._plans.get(route)
        if (
            plan is None
            or plan[0] is not app._before
            or plan[1] is not app._after
            or plan[2] is not app._middleware
        ):
            plan = (app._before, app._after, app._middleware, loop_first(app, route))
            self._plans[route] = plan
        return plan[3]

    def _respond(
        self,
        response: Response,
        environ: dict[str, Any],
        start_response: StartResponse,
        request: Request | None,
    ) -> Iterable[bytes]:
        if request is not None and response._finalizes:
            response._finalize(request)
        headers, has_body = wire_headers(response)
        status = response.status
        start_response(_STATUS_LINES.get(status) or status_line(status), headers)
        stream = response.stream
        if stream is None:
            if request is not None and request._form is not None:
                request._close()
            body: Iterable[bytes] = (
                [] if not has_body or environ["REQUEST_METHOD"] == "HEAD" else [response.body]
            )
            if response.background is None:
                return body
            # waitress writes the headers with the first non-empty chunk, or after
            # close() when there is none (HEAD, 204, a redirect): tasks run there
            # would keep the client waiting for its answer
            detach = "waitress.client_disconnected" in environ and not any(body)
        else:
            body = self._stream(response, stream, has_body, environ, request)
            if response.background is None:
                return body
            # waitress writes the end of a chunked body (one without a length)
            # after close(): tasks run there would keep the client waiting
            detach = "waitress.client_disconnected" in environ and not any(
                k == "content-length" for k, _ in headers
            )
        # run by close(), which the server calls once it has sent the body (in
        # a copy of this, the request's, context: the tasks see what it set)
        return WithBackground(body, response.background, _copy_context(), detach)

    def _stream(
        self,
        response: Response,
        stream: Iterable[bytes | str] | AsyncIterable[bytes | str],
        has_body: bool,
        environ: dict[str, Any],
        request: Request | None,
    ) -> Iterable[bytes]:
        if not has_body or environ["REQUEST_METHOD"] == "HEAD":
            close_iterable(stream)
            if request is not None:
                request._close()
            return []
        if isinstance(stream, AsyncIterable):
            assert isinstance(request, Request)
            return AsyncBody(stream, request, response.keepalive, response.keepalive_chunk)
        wrapper = environ.get("wsgi.file_wrapper")
        if (
            wrapper is not None
            and isinstance(response, FileResponse)
            and response.whole_file
            # waitress sends a file wrapper itself, and closes it without telling
            # the app when: a response with background work is iterated instead
            and response.background is None
        ):
            close_iterable(stream)  # not started: the server sends the file itself
            if request is not None and request._form is not None:
                request._close()
            return wrapper(open(response.path, "rb"), response.chunk_size)  # type: ignore[no-any-return]
        # the stream runs in a copy of the request's context (made here, in it):
        # it sees what every step set; the server iterates it after this returns
        return SyncBody(
            stream, request, _copy_context(), response.keepalive, response.keepalive_chunk
        )

    # ---------------------------------------------------------------- lifespan
    def startup(self) -> Response | None:
        """Run the app's startup once per process (thread-safe); a 500 if it fails.

        A failed startup is not run again: every request gets the 500 (a
        lifespan context entered again per request would leak what it opens).
        """
        app = self.app
        with app._start_lock:
            if app._started:
                return None
            if not self._warned:
                self._warned = True
                ws = [r.path for r in app.routes if r.websocket]
                if ws:
                    logger.warning(
                        "WebSocket routes are served only by the ASGI entry point (app.asgi); "
                        "under app.wsgi they answer 501: %s",
                        ", ".join(ws),
                    )
            if app._startup_error is not None:
                logger.error("Not serving the request: the application's startup failed")
                return server_error(app, app._startup_error)
            try:
                drive_sync(app._startup_flow(LifespanHolder), _call_async_standalone)
            except Exception as exc:
                app._startup_error = exc
                logger.error("Application startup failed", exc_info=exc)
                return server_error(app, exc)
            app._started = True
            _register_exit()
        return None

    def shutdown(self, *, at_exit: bool = False) -> None:
        """Run the app's shutdown hooks (at interpreter exit, or from a test client)."""
        app = self.app
        with app._start_lock:
            if not app._started:
                return
            app._started = False
            call_async = _call_async_at_exit if at_exit else _call_async_standalone
            try:
                drive_sync(app._shutdown_flow(), call_async)
            except Exception as exc:
                logger.error("Application shutdown failed", exc_info=exc)


def _call_async_standalone(
    fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
) -> Any:
    return shared_loop.call(fn, args, kw)


def _call_async_at_exit(fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
    """`_call_async_standalone` at interpreter exit, where Python 3.12+ refuses to
    start threads: the shared loop if it runs, else a loop of its own in this thread."""
    if shared_loop.running():
        return shared_loop.call(fn, args, kw)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fn(*args, **kw))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


# ------------------------------------------------------------------ processes

_apps: weakref.WeakSet[App] = weakref.WeakSet()
_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        atexit.register(_shutdown_all)


def _shutdown_all() -> None:
    for app in list(_apps):
        if app._started:
            app.wsgi.shutdown(at_exit=True)


def _after_fork_in_child() -> None:
    # startup state does not cross a fork: each worker runs its own startup
    for app in list(_apps):
        app._started = False
        app._startup_error = None
        app._start_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
