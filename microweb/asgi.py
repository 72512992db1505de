"""The ASGI adapter: `app.asgi`, an ASGI 3 application (http, websocket, lifespan).

Async code is awaited on the server's loop. Sync code (``def`` handlers and
hooks) runs in the app's `WorkerPool`, a run of consecutive sync steps in one
hop; a small body is read on the loop before that hop, a larger one is read
from the thread through the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from ._concurrency import (
    Job,
    LifespanHolder,
    WorkerPool,
    _bridge,
    call_on_loop,
    running_loop,
)
from ._parsers import (
    PLAIN_PATH,
    decode_path,
    encode_path,
    origin_form,
    parse_content_length,
    quote_path,
    strip_root_path,
)
from ._pipeline import (
    Done,
    NotOriginForm,
    Step,
    advance,
    dispatch,
    drive_async,
    handle_error,
    not_found,
    plain_not_found,
    server_error,
    target_response,
    unrouted_response,
)
from .background import BackgroundTask, log_failure, tasks_of
from .datastructures import Headers
from .exceptions import HTTPException
from .requests import _UNSET, Request
from .responses import Response, to_response, wire_headers_bytes

if TYPE_CHECKING:
    from ._streaming import Listener
    from .applications import App

__all__ = ["ASGIAdapter"]

logger = logging.getLogger("microweb")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

_get_running_loop = asyncio._get_running_loop

#: Bodies up to this size are read on the loop before a sync handler's thread
#: hop, so reading them there costs no round trip through the loop.
PREREAD_LIMIT = 64 * 1024


def scope_headers(scope: Scope) -> Headers:
    """A scope's header fields as `Headers`."""
    return ScopeHeaders(scope["headers"])


class ScopeHeaders(Headers):
    """Request headers read from the scope's list of byte pairs: a lookup by
    name decodes only what it finds; the full list is decoded only when
    something asks for it. (ASGI servers send lower-case names.)"""

    __slots__ = ("_fields", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._fields: list[tuple[str, str]] | None = None

    @property  # computed, in place of the base's slot
    def _list(self) -> list[tuple[str, str]]:  # type: ignore[override]
        fields = self._fields
        if fields is None:
            fields = self._fields = [
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in self._raw
            ]
        return fields

    def get(self, key: str, default: object = None) -> Any:
        name = key.lower().encode("latin-1", "replace")
        for k, v in self._raw:
            if k == name:
                return v.decode("latin-1")
        return default

    def getall(self, key: str) -> list[str]:
        name = key.lower().encode("latin-1", "replace")
        return [v.decode("latin-1") for k, v in self._raw if k == name]

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key.lower())
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name = key.lower().encode("latin-1", "replace")
        return any(k == name for k, _ in self._raw)


class LoopRunner:
    """Runs the pipeline's steps for code on one event loop (the `Runner` protocol)."""

    __slots__ = ("_loop", "_pool")

    def __init__(self, pool: WorkerPool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop

    def on_loop(self) -> bool:
        return _get_running_loop() is self._loop

    def call_async(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        # from a pool thread: the coroutine's own sync work comes back to this
        # thread (its bridge), so nested calls never wait for another pool thread
        return call_on_loop(self._loop, fn, args, kw, self._pool)

    def run_segment(self, gen: Generator[Step, Any, Any], step: Step) -> Awaitable[Step | Done]:
        return self.to_thread(advance, gen, step)

    def to_thread(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Run blocking ``fn(*args)``: in the pool thread waiting for this code, if
        one is (no second thread for nested work), else in a pool thread. In a
        copy of this context, whose changes are set here when it returns; if
        this is cancelled meanwhile, only after ``fn`` has returned.

        Not a coroutine itself: it returns the job's (one coroutine less per hop).
        """
        bridge = _bridge.get()
        if bridge is not None:
            return bridge.call_in_thread(fn, *args)
        job = Job(fn, args, self._loop)
        self._pool.submit(job)
        return job.wait()


class ASGIChannel(LoopRunner):
    """A request's view of its scope and `receive`; also its `Runner`.

    Made for every request: the state below starts as the class's (no slots),
    so making one sets four attributes, not eight.
    """

    protocol = "asgi"
    environ = None
    #: The body is read natively by async code (see `Request.form`).
    native_async = True
    #: Whether body messages may still come.
    more_body = True
    #: Whether the client has left (``http.disconnect`` received).
    disconnected = False
    #: The request, while it is answered (`run_segment` pre-reads its body).
    request: Request | None = None
    #: While a response streams, what receives the messages (the body included).
    listener: Listener | None = None
    scope: Scope
    receive: Receive

    def __init__(
        self, scope: Scope, receive: Receive, pool: WorkerPool, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._pool = pool  # LoopRunner's fields, set here: this runs per request
        self._loop = loop
        self.scope = scope
        self.receive = receive

    # -- Channel
    def headers(self) -> Headers:
        return scope_headers(self.scope)

    def content_length(self) -> int | None:
        fields = None
        for k, v in self.scope["headers"]:
            if k == b"content-length":
                if fields is None:
                    fields = [v.decode("latin-1")]
                else:
                    fields.append(v.decode("latin-1"))
        return None if fields is None else parse_content_length(fields)

    def server(self) -> str:
        server = self.scope.get("server")
        if not server:
            return ""
        host, port = server[0], server[1]
        scheme = self.scope.get("scheme", "http")
        if port is None or (scheme, port) in (("http", 80), ("https", 443)):
            return str(host)
        return f"{host}:{port}"

    def client(self) -> tuple[str, int] | None:
        client = self.scope.get("client")
        return (client[0], client[1]) if client else None

    async def read_async(self, size: int) -> bytes:
        if self.listener is not None:
            return await self.listener.read()
        while self.more_body:
            message = await self.receive()
            kind = message["type"]
            if kind == "http.request":
                self.more_body = message.get("more_body", False)
                body: bytes = message.get("body", b"")
                if body:
                    return body
            elif kind == "http.disconnect":
                self.more_body = False
                self.disconnected = True
                raise HTTPException(400, "The client disconnected before sending the whole body")
        return b""

    def read_sync(self, size: int) -> bytes:
        return asyncio.run_coroutine_threadsafe(self.read_async(size), self._loop).result()

    def offload(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return self.to_thread(fn, *args)

    # -- Runner
    def run_segment(self, gen: Generator[Step, Any, Any], step: Step) -> Awaitable[Step | Done]:
        return self.run_segment_call(advance, gen, step)

    def run_segment_call(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """`to_thread` for request code, its small body read first (on the loop)."""
        request = self.request
        if (
            request is not None
            and request._body is None
            and not request._streamed
            and self.more_body
        ):
            declared = request._declared
            if type(declared) is int and 0 < declared <= PREREAD_LIMIT:
                return self._preread_then(fn, *args)
        return self.to_thread(fn, *args)

    async def _preread_then(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Read the (small) body on the loop, then run ``fn(*args)`` in a thread."""
        request = self.request
        assert request is not None
        try:
            await request._read_all_async()
        except HTTPException:  # the sync code meets the same error when it reads
            request._streamed = False
        return await self.to_thread(fn, *args)


def _paths(scope: Scope) -> tuple[str, list[str] | None, str, str]:
    """(decoded path, segments with %2F or None, raw path, root path) from a scope.

    The raw path comes from ``raw_path`` (made plain ASCII: a server may pass
    raw non-ASCII bytes), else from ``path`` encoded again. The root path is
    decoded text and the raw path is not, so the prefix is compared decoded.

    Raises NotOriginForm for a target that is not a path: uvicorn passes
    ``GET @evil.com/x`` through, and an h11-based server an absolute-form
    target (``http://host/x``) verbatim, whose path is taken.
    """
    root_path: str = scope.get("root_path", "")
    raw: bytes | None = scope.get("raw_path")
    if raw is not None:
        target = raw.decode("latin-1").partition("?")[0]
        raw_s = origin_form(target)
        if raw_s is None:
            raise NotOriginForm(target)
        if root_path:
            raw_s = strip_root_path(raw_s, root_path) or raw_s
        path, segments = decode_path(raw_s)
        return path, segments, encode_path(raw_s, keep_escapes=True), root_path
    decoded: str = scope["path"]
    found = origin_form(decoded)
    if found is None:
        raise NotOriginForm(decoded)
    if root_path and (found == root_path or found.startswith(root_path + "/")):
        found = found[len(root_path) :] or "/"
    return found, None, quote_path(found), root_path


class ASGIAdapter:
    """`app.asgi`: serve the app to an ASGI 3 server (``uvicorn mod:app.asgi``).

    An instance, not a bound method: uvicorn takes bound methods for ASGI 2.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.pool = WorkerPool(app.thread_limit)
        #: Threads for sync streams' chunks: held one chunk at a time, never the
        #: handlers'. Wider than theirs: a sync event source that waits for its
        #: next event holds one while it waits (async sources hold none).
        self.stream_pool = WorkerPool(max(4 * app.thread_limit, 400))
        self._startup_task: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # http is handled here, not in a method of its own: one coroutine less
        # on every request
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        app = self.app
        if not app._started:
            running_loop()  # a clear error under trio
            failure = await self._lazy_startup()
            if failure is not None:
                await _send_plain(send, failure, scope["method"])
                return
        raw: bytes | None = scope.get("raw_path")
        try:
            if raw is not None and not scope.get("root_path"):
                path = raw_path = raw.decode("latin-1")
                segments = None
                root_path = ""
                # %-escapes, a query, odd bytes; not origin-form
                if not path.startswith("/") or not PLAIN_PATH.issuperset(path):
                    path, segments, raw_path, root_path = _paths(scope)
            else:
                path, segments, raw_path, root_path = _paths(scope)
        except NotOriginForm as exc:  # never routed, never in a URL
            method = scope["method"]
            await _send_plain(send, target_response(app, method, exc.target), method)
            return
        method = scope["method"]
        route, params, leaves = app._matcher.match(method, path, segments)
        declares_length = False
        for name, _ in scope["headers"]:  # (measured: cheaper than a map() over the names)
            if name == b"content-length":
                declares_length = True
                break
        response: Response | None = None
        raised: BaseException | None = None
        if route is None:
            if not declares_length and plain_not_found(app, path, leaves):
                await _send_plain(send, not_found(), method)
                return
        elif (
            not route.needs_conn
            and route.is_async
            and route.plain
            and app._hookless
            and not declares_length
        ):
            # Nothing but the handler runs, and it takes nothing from the request
            # but its path parameters: no Request is made, unless the handler
            # fails or its response needs one (a stream, a file).
            try:
                rv = await route.invoke(None, params)
                response = rv if isinstance(rv, Response) else to_response(rv)
            except (Exception, asyncio.CancelledError) as exc:
                raised = exc  # answered below, as if raised there
            else:
                if response.stream is None and not response._finalizes:
                    try:
                        headers, has_body = wire_headers_bytes(response)
                        await send(
                            {
                                "type": "http.response.start",
                                "status": response.status,
                                "headers": headers,
                            }
                        )
                        body = response.body if has_body and method != "HEAD" else b""
                        await send({"type": "http.response.body", "body": body})
                    finally:
                        if response.background is not None:
                            await self._run_background(response.background)
                    return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = running_loop()  # raises the error that says what is wrong
        channel = ASGIChannel(scope, receive, self.pool, loop)
        qs: bytes = scope.get("query_string", b"")
        request = Request(
            app,
            channel,
            method,
            path,
            raw_path,
            qs.decode("latin-1") if qs else "",
            root_path,
            scope.get("scheme", "http"),
            route,
            params,
        )
        if not declares_length:
            # no length to check: what `content_length` would find
            request._declared = None
        channel.request = request
        try:
            try:
                if response is not None:
                    pass  # the handler's, made above: sent with the request it needs
                elif raised is not None:
                    try:
                        if not isinstance(raised, Exception):
                            raise raised  # (a CancelledError: see below)
                        response = await drive_async(handle_error(app, request, raised), channel)
                    finally:
                        raised = None  # no frame <-> traceback cycle left behind
                elif route is None:
                    response = unrouted_response(app, request, leaves) or await drive_async(
                        dispatch(app, request, channel, leaves), channel
                    )
                elif route.is_async and route.plain and app._hookless:
                    # nothing but the handler runs: call it here (see _pipeline.is_direct)
                    try:
                        if request._declared is _UNSET:
                            request._check_length()
                        rv = await route.invoke(request, params)
                        response = rv if isinstance(rv, Response) else to_response(rv)
                    except Exception as exc:
                        response = await drive_async(handle_error(app, request, exc), channel)
                elif route.plain and app._hookless:
                    # a def handler and nothing else: one hop, to call it and make the
                    # response, without driving the pipeline (see _pipeline.is_direct)
                    try:
                        if request._declared is _UNSET:
                            request._check_length()
                        args, kwargs = route.arguments(request, request.path_params)
                        response = await channel.run_segment_call(
                            _respond, route.endpoint, args, kwargs
                        )
                    except Exception as exc:
                        response = await drive_async(handle_error(app, request, exc), channel)
                elif route.body_first and route.is_async and app._hookless:
                    # the same for a typed body, read first (on the loop, as the pipeline would)
                    try:
                        if request._declared is _UNSET:
                            request._check_length()
                        await request.body()
                        response = to_response(await route.invoke(request, params))
                    except Exception as exc:
                        response = await drive_async(handle_error(app, request, exc), channel)
                else:
                    response = await drive_async(dispatch(app, request, channel, leaves), channel)
            except asyncio.CancelledError as exc:
                if _really_cancelled():
                    raise
                # user code awaited something that was cancelled: an error of that
                # code (a 500, as under WSGI), not a cancellation of this request
                logger.error(
                    "Exception while handling %s %r", request.method, request.path, exc_info=exc
                )
                response = server_error(app, RuntimeError("an awaited task was cancelled"))
            if response._finalizes:
                response._finalize(request)
            headers, has_body = wire_headers_bytes(response)
            start = {"type": "http.response.start", "status": response.status, "headers": headers}
            await send(start)
            stream = response.stream
            if stream is None:
                body = response.body if has_body and request.method != "HEAD" else b""
                await send({"type": "http.response.body", "body": body})
            elif has_body and request.method != "HEAD":
                from ._streaming import stream_asgi

                await stream_asgi(response, channel, send, self.stream_pool)
            else:
                await _aclose(stream)
                await send({"type": "http.response.body", "body": b""})
        finally:
            channel.request = None  # no request <-> channel cycle left for the GC
            if request._form is not None:
                request._close()
            # in `finally`: they run also when the client left or the stream failed
            if response is not None and response.background is not None:
                await self._run_background(response.background)

    async def _run_background(self, background: BackgroundTask) -> None:
        """Run a response's tasks in order, after it was sent: ``async def`` ones
        awaited here, in the request's task, ``def`` ones in the worker pool, as
        handlers are; each in the request's context. A task that raises is
        logged and the next one runs."""
        if _being_cancelled():  # the server cancels the request (it is shutting down)
            logger.warning("Background tasks not run, the request was cancelled: %r", background)
            return
        for task in tasks_of(background):
            try:
                if task.is_async:
                    await task.func(*task.args, **task.kwargs)
                else:
                    rv = await self.pool.run(_call, task.func, task.args, task.kwargs)
                    if inspect.isawaitable(rv):  # a def that returns a coroutine: run it too
                        await rv
            except asyncio.CancelledError as exc:
                if _really_cancelled():
                    raise
                log_failure(task, exc)  # it awaited something that was cancelled
            except Exception as exc:
                log_failure(task, exc)

    def _not_http(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # not a coroutine: what it returns is awaited by __call__ itself (an idle
        # WebSocket holds one coroutine frame less)
        kind = scope["type"]
        if kind == "websocket":
            from .websockets import serve_websocket

            return serve_websocket(self, scope, receive, send)
        if kind == "lifespan":
            return self._lifespan(receive, send)
        raise ValueError(f"unsupported ASGI scope type {kind!r}")

    # ---------------------------------------------------------------- lifespan
    async def _run_flow(self, flow: Generator[Step, Any, None]) -> None:
        runner = LoopRunner(self.pool, running_loop())
        await drive_async(flow, runner)

    async def startup(self) -> None:
        """Run the app's startup (raises what a hook raised).

        A failed startup is not run again (see `WSGIAdapter.startup`).
        """
        app = self.app
        if app._startup_error is not None:
            raise RuntimeError("the application's startup failed earlier") from app._startup_error
        try:
            await self._run_flow(app._startup_flow(LifespanHolder))
        except Exception as exc:
            app._startup_error = exc
            raise
        app._started = True

    async def shutdown(self) -> None:
        """Run the app's shutdown hooks."""
        if self.app._started:
            self.app._started = False
            await self._run_flow(self.app._shutdown_flow())

    async def _lazy_startup(self) -> Response | None:
        """Startup for a server that runs no lifespan: once, before the first request.

        It runs as a task of its own: what it sets in the context is seen by
        no request (as when the lifespan protocol runs it), and a request
        cancelled while it waits (a client that leaves) does not cancel it,
        so it is never started twice.
        """
        app = self.app
        task = self._startup_task
        if task is None:
            if app._startup_error is not None:
                logger.error("Not serving the request: the application's startup failed")
                return server_error(app, app._startup_error)
            task = self._startup_task = asyncio.ensure_future(self.startup())
            task.add_done_callback(_log_startup_failure)
        await asyncio.wait({task})
        if task.cancelled():  # the loop is shutting down
            return server_error(app, RuntimeError("the application's startup was cancelled"))
        exc = task.exception()
        return None if exc is None else server_error(app, exc)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                try:
                    await self.startup()
                except BaseException as exc:
                    logger.error("Application startup failed", exc_info=exc)
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    if not isinstance(exc, Exception):
                        raise
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    logger.error("Application shutdown failed", exc_info=exc)
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


def _respond(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response:
    return to_response(fn(*args, **kwargs))


# A WSGI server handed app.asgi (``waitress-serve mod:app.asgi``) calls it with
# (environ, start_response), and Python refuses the call before any of its code
# runs. Its TypeError names the function by this qualname: so it says what to do.
# (The name is true where it shows otherwise too: in task reprs of a served app.)
ASGIAdapter.__call__.__qualname__ = "app.asgi [the ASGI entry point; a WSGI server serves app.wsgi]"


def _log_startup_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("Application startup failed", exc_info=exc)


def _really_cancelled() -> bool:
    """Whether the running task itself is being cancelled (Python 3.11+ can tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or bool(cancelling())


def _being_cancelled() -> bool:
    """Whether the running task is known to be cancelled (never known before 3.11)."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is not None and bool(cancelling())


async def _send_plain(send: Send, response: Response, method: str = "") -> None:
    """Send a complete response that no Request was made for."""
    headers, has_body = wire_headers_bytes(response)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body = response.body if has_body and method != "HEAD" else b""
    await send({"type": "http.response.body", "body": body})


async def _aclose(stream: Iterable[Any] | AsyncIterable[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(stream, "close", None)
    if close is not None:
        close()
