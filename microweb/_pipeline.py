"""The request pipeline, written once: hooks → middleware → handler → error handling.

Strategy: the pipeline is a generator (as httpx writes ``Auth.auth_flow``).
Wherever it needs to call user code it yields a *step* -- ``(fn, args,
kwargs, kind)``, the kind `SYNC`, `ASYNC` or `INLINE` -- and receives the
result (or the exception, thrown back in). It never calls user code itself,
so it neither blocks nor awaits, and two small drivers run it:

* `drive_sync` runs steps in the calling thread (a WSGI worker thread, or an
  ASGI worker thread); async steps go to a `call_async` function that blocks
  until the event loop has run them;
* `drive_async` awaits async steps on the event loop and hands each run of
  sync steps to ``runner.run_segment``, which drives the generator in another
  thread until it yields an async step again -- so a request with sync hooks
  and a sync handler costs one thread hop, not one per function.

What decides where code runs (threads, loops) lives in the adapters.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from ._matching import allowed_methods
from ._parsers import encode_query, quote_path
from .exceptions import HTTPException
from .forms import read_form_async, read_form_sync
from .requests import _UNSET
from .responses import Response, error_response, json_dumps, to_response
from .routing import ASYNC, INLINE, SYNC

if TYPE_CHECKING:
    from ._matching import _Leaf
    from .applications import App
    from .requests import Request
    from .routing import Hook, Route

__all__ = [
    "Done",
    "NotOriginForm",
    "Runner",
    "Step",
    "dispatch",
    "drive_async",
    "drive_sync",
    "is_direct",
    "loop_first",
    "not_found",
    "plain_not_found",
    "target_response",
    "unrouted_response",
]

logger = logging.getLogger("microweb")

Step = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], int]
Flow = Generator[Step, Any, Response]
_NOKW: dict[str, Any] = {}


class Done:
    """What `advance` returns when the generator has finished."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


CallAsync = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


class Runner(Protocol):
    """How an adapter runs the steps the other side of its event loop."""

    def call_async(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        """From a thread that may block: run ``await fn(*args, **kw)`` on the loop."""

    def run_segment(self, gen: Generator[Step, Any, Any], step: Step) -> Awaitable[Step | Done]:
        """From the loop: run `advance(gen, step)` in a thread that may block."""


# --------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------


def advance(
    gen: Generator[Step, Any, Any], step: Step | None, call_async: CallAsync | None = None
) -> Step | Done:
    """Run `gen`'s steps in this thread, starting with `step` (None: start `gen`).

    Async steps go to `call_async`; without one, the first async step is
    returned for the caller's event loop to run. Returns `Done` at the end.
    """
    try:
        if step is None:
            step = gen.send(None)
        while True:
            fn, args, kwargs, kind = step
            if kind == ASYNC:
                if call_async is None:
                    return step
                try:
                    value = call_async(fn, args, kwargs)
                except Exception as exc:
                    step = gen.throw(exc)
                    continue
            else:
                try:
                    value = fn(*args, **kwargs)
                except Exception as exc:
                    step = gen.throw(exc)
                    continue
            step = gen.send(value)
    except StopIteration as stop:
        return Done(stop.value)


def drive_sync(gen: Generator[Step, Any, Any], call_async: CallAsync) -> Any:
    """Run `gen` to the end in this thread and return its result."""
    done = advance(gen, None, call_async)
    assert type(done) is Done
    return done.value


async def drive_async(gen: Generator[Step, Any, Any], runner: Runner) -> Any:
    """Run `gen` to the end from the event loop and return its result."""
    try:
        step = gen.send(None)
        while True:
            fn, args, kwargs, kind = step
            if kind == SYNC:
                nxt = await runner.run_segment(gen, step)
                if type(nxt) is Done:
                    return nxt.value
                step = nxt  # type: ignore[assignment]
                continue
            try:
                value = await fn(*args, **kwargs) if kind == ASYNC else fn(*args, **kwargs)
            except Exception as exc:
                step = gen.throw(exc)
                continue
            step = gen.send(value)
    except StopIteration as stop:
        return stop.value


# --------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------


def is_direct(app: App, route: Route | None) -> bool:
    """True when nothing but the handler runs for `route`: no hooks, no middleware.

    Then an adapter may call the handler itself when it is of its own kind
    (``def`` under WSGI, ``async def`` under ASGI) and skip driving `dispatch`:
    the same semantics, minus the generator (about 1.5 µs a request).
    """
    return route is not None and app._hookless and route.plain


def plain_not_found(app: App, path: str, leaves: list[_Leaf]) -> bool:
    """Whether a request no route takes gets the shared 404 whatever else it holds:
    no route has its path (for another method), no slash redirect can apply, and no
    hook, middleware or error handler could change the answer. The adapters then
    send `not_found()` without making a Request, when the request declares no body
    length (a malformed or too large one gets its 400 or 413 first)."""
    return (
        not leaves
        and app._hookless
        and not app._has_error_handlers
        and not _may_redirect(app, path)
    )


def _may_redirect(app: App, path: str) -> bool:
    """Whether `path` may be redirected to the other form of its trailing slash."""
    return (
        app.redirect_slashes and path != "/" and (path.endswith("/") or app._matcher.slash_routes)
    )


def loop_first(app: App, route: Route) -> bool:
    """Whether a thread that waits for async steps (a WSGI server's) should drive
    `route`'s whole pipeline from the event loop, in one hop, rather than hop
    to the loop for each async step (`drive_sync`).

    Counted on the way most requests take (no error, no early answer): driven
    from the thread, each async step costs a hop; driven from the loop, one
    hop, plus a trip back to the thread for each run of consecutive sync
    steps. So an async before-hook and an async handler cost one hop instead
    of two. Not with middleware, where an async middleware's `call_next`
    already runs the rest of the chain on the loop.
    """
    if app._middleware:
        return False
    kinds = [h.kind for h in (*app._before, *route.before)]
    if route.reads_body:
        kinds.append(SYNC)  # (read where the protocol reads natively: the thread, under WSGI)
    kinds.append(ASYNC if route.is_async else SYNC)
    kinds += [h.kind for h in reversed((*app._after, *route.after))]
    steps = [k for k in kinds if k != INLINE]  # (inline steps run wherever the pipeline is)
    hops = steps.count(ASYNC)
    runs = sum(1 for i, k in enumerate(steps) if k == SYNC and (i == 0 or steps[i - 1] != SYNC))
    return 1 + runs < hops


def unrouted_response(app: App, request: Request, leaves: list[_Leaf]) -> Response | None:
    """The answer to a request no route takes (404, 405, OPTIONS, a slash redirect...)
    when no hook, middleware or error handler could change it; else None."""
    if not app._hookless or app._has_error_handlers:
        return None
    try:
        if request._declared is _UNSET:
            request._check_length()
        exc = _answer_no_route(app, request, leaves)
    except HTTPException as error:
        exc = error
    if exc is None:
        return not_found()  # nothing can change it: one shared response
    if type(exc) is _Redirect:
        return Response(b"", exc.status, exc.headers)
    return error_response(exc)


class NotOriginForm(Exception):
    """Raised by an adapter's path parsing: the request target is not a path."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def target_response(app: App, method: str, target: str) -> Response:
    """The answer to a request whose target is not origin-form (never routed).

    ``OPTIONS *`` asks about the server as a whole: 204 with every method the
    app serves in ``Allow``. Anything else (``GET @evil.com/x``) is a 400: put
    after the host in `request.url` or a redirect, it would name another host
    (``http://host@evil.com/x``; SECURITY.md §8).
    """
    if method == "OPTIONS" and target == "*":
        allowed = {"OPTIONS"}
        for route in app.routes:
            if not route.websocket:
                allowed |= route.methods
        if "GET" in allowed:
            allowed.add("HEAD")
        return Response(b"", 204, {"Allow": ", ".join(sorted(allowed))})
    return error_response(HTTPException(400, "The request target must be a path"))


_NOT_FOUND = error_response(HTTPException(404))


def not_found() -> Response:
    """The shared 404 response (one object: nothing ever changes it)."""
    return _NOT_FOUND


def dispatch(app: App, request: Request, runner: Runner, leaves: list[_Leaf]) -> Flow:
    """Answer a routed `request`: hooks, middleware, handler, error handlers."""
    route = request.route
    after: tuple[Hook, ...] = app._after
    try:
        if route is not None and route.after:
            after = after + route.after
        if request._declared is _UNSET:
            request._check_length()
        response = None
        before = app._before if route is None or not route.before else app._before + route.before
        for hook in before:
            rv = yield (hook.fn, (request,), _NOKW, hook.kind)
            if rv is not None:
                response = to_response(rv)
                break
        if response is None:
            if app._middleware:
                response = yield from _chain(app, request, runner, 0, leaves)
            elif route is None:
                response = yield from handle_error(app, request, _no_route(app, request, leaves))
            else:  # _endpoint(), inlined: this is the path of most requests
                if route.reads_body and request._body is None:
                    yield _read_body(request)
                args, kwargs = route.arguments(request, request.path_params)
                try:
                    response = to_response((yield (route.endpoint, args, kwargs, route.is_async)))
                except Exception as exc:
                    response = yield from handle_error(app, request, exc)
    except Exception as exc:
        response = yield from handle_error(app, request, exc)
    for hook in reversed(after):
        try:
            rv = yield (hook.fn, (request, response), _NOKW, hook.kind)
            if rv is not None:
                response = to_response(rv)
        except Exception as exc:
            response = yield from handle_error(app, request, exc)
    return response


def _chain(app: App, request: Request, runner: Runner, i: int, leaves: list[_Leaf]) -> Flow:
    """Middleware `i` around the rest of the chain (the handler after the last)."""
    middleware = app._middleware
    if i == len(middleware):
        return (yield from _endpoint(app, request, leaves))
    mw = middleware[i]
    call_next: Callable[[Request], Any]
    if mw.is_async:

        async def call_next(req: Request) -> Response:
            return await drive_async(_chain(app, req, runner, i + 1, leaves), runner)  # type: ignore[no-any-return]

    else:

        def call_next(req: Request) -> Response:
            return drive_sync(_chain(app, req, runner, i + 1, leaves), runner.call_async)  # type: ignore[no-any-return]

    rv = yield (mw.fn, (request, call_next), _NOKW, mw.kind)
    return to_response(rv)


def _endpoint(app: App, request: Request, leaves: list[_Leaf]) -> Flow:
    """The handler, with its exceptions turned into responses."""
    route = request.route
    try:
        if route is None:
            return (yield from handle_error(app, request, _no_route(app, request, leaves)))
        if route.reads_body and request._body is None:
            yield _read_body(request)
        args, kwargs = route.arguments(request, request.path_params)
        rv = yield (route.endpoint, args, kwargs, route.is_async)
        return to_response(rv)
    except Exception as exc:
        return (yield from handle_error(app, request, exc))


def _read_body(request: Request) -> Step:
    """The step that reads the whole body (or the form, for a ``Form()`` parameter)
    where the protocol reads it natively (on the loop under ASGI, in the server's
    thread under WSGI), for a typed body."""
    native = request._channel.native_async
    if request.route.reads_form:  # type: ignore[union-attr]
        if native:
            return (read_form_async, (request,), _NOKW, ASYNC)
        return (read_form_sync, (request,), _NOKW, SYNC)
    return (request.body, (), _NOKW, ASYNC if native else SYNC)


class _Redirect(HTTPException):
    """Not an error: the trailing-slash redirect, answered as an HTTPException would be."""


def _no_route(app: App, request: Request, leaves: list[_Leaf]) -> HTTPException:
    """The error for a request no route answers: 404, 405, OPTIONS, 426/501 or a redirect."""
    return _answer_no_route(app, request, leaves) or HTTPException(404)


def _answer_no_route(app: App, request: Request, leaves: list[_Leaf]) -> HTTPException | None:
    """`_no_route`, with None for a plain 404 (which `unrouted_response` shares)."""
    if leaves:
        allowed = allowed_methods(leaves)
        if not allowed and any(leaf.websocket is not None for leaf in leaves):
            if request.protocol == "wsgi":
                return HTTPException(
                    501,
                    "This is a WebSocket endpoint: WebSockets need the ASGI entry point "
                    "(app.asgi), e.g. uvicorn mod:app.asgi",
                )
            return HTTPException(426, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        allow = ", ".join(sorted(allowed))
        if request.method == "OPTIONS":
            return _Redirect(204, headers={"Allow": allow})
        return HTTPException(405, headers={"Allow": allow})
    path = request.path
    if _may_redirect(app, path):
        other = path[:-1] if path.endswith("/") else path + "/"
        route, _, other_leaves = app._matcher.match(request.method, other)
        if route is not None or other_leaves:
            raw = request.raw_path
            target = raw[:-1] if raw.endswith("/") else raw + "/"
            target = quote_path(request.root_path) + target
            if target.startswith("//") or target.startswith("/\\"):
                target = "/" + target.lstrip("/\\")  # never a scheme-relative URL
            if request.query_string:
                target = f"{target}?{encode_query(request.query_string)}"
            return _Redirect(308, headers={"Location": target})
    return None


def handle_error(app: App, request: Request, exc: Exception) -> Flow:
    """Turn `exc` into a response: a registered handler, the default JSON, or a 500."""
    if type(exc) is _Redirect:
        response = Response(b"", exc.status, exc.headers)
        return response
    handler = app._error_handler_for(exc) if app._has_error_handlers else None
    if handler is not None:
        http = exc if isinstance(exc, HTTPException) else None
        if http is None and handler is app._status_handlers.get(500):
            _log_error(request, exc)  # an unhandled failure, answered by the 500 handler
        try:
            rv = yield (handler.fn, (request, exc), _NOKW, handler.kind)
            response = to_response(rv)
            if not isinstance(rv, Response | tuple):
                # a bare body answers with the error's status, not 200
                response.status = 500 if http is None else http.status
        except Exception as exc2:
            _log_error(request, exc2)
            return server_error(app, exc2)
        if http is not None and http.headers:
            for k, v in http.headers.items():
                if k not in response.headers:
                    response.headers[k] = v
        return response
    if isinstance(exc, HTTPException):
        return error_response(exc)
    _log_error(request, exc)
    return server_error(app, exc)


def _log_error(request: Request, exc: BaseException) -> None:
    logger.error(
        "Exception while handling %s %r%s",
        request.method,
        request.path,
        _hint(exc),
        exc_info=exc,
    )


def _hint(exc: BaseException) -> str:
    """A likely fix, for the mistakes whose own message does not say it."""
    if isinstance(exc, TypeError | AttributeError) and "'coroutine' object" in str(exc):
        # ``data = request.json(); data["name"]`` in async def code
        return (
            " (a coroutine was used as a value: in async def code, await it, "
            "e.g. `data = await request.json()`)"
        )
    return ""


def server_error(app: App, exc: BaseException) -> Response:
    """The generic 500 (with the traceback only when the app is in debug mode)."""
    if app.debug:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return Response(
            json_dumps({"detail": "Internal Server Error", "error": repr(exc), "traceback": text}),
            500,
            media_type="application/json",
        )
    return error_response(HTTPException(500))
