"""`App`: registration, url_for, lifespan hooks and the two entry points."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Generator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ._matching import Converter, Matcher, compile_template, default_converters
from ._pipeline import Step
from .datastructures import State
from .exceptions import HTTPException
from .routing import (
    ASYNC,
    Handler,
    Hook,
    Registrar,
    Route,
    Router,
    RouteSpec,
)

if TYPE_CHECKING:
    from .asgi import ASGIAdapter
    from .wsgi import WSGIAdapter

__all__ = ["App"]

logger = logging.getLogger("microweb")

MiB = 1024 * 1024
_NOKW: dict[str, Any] = {}


class App(Registrar):
    """A microweb application, served by `app.wsgi` (PEP 3333) and `app.asgi` (ASGI 3).

    Keyword options: `debug` (tracebacks in 500 responses), `redirect_slashes`
    (308 between ``/x`` and ``/x/``), `max_body_size` (bytes; larger bodies get
    413), the form limits `max_form_fields`, `max_form_files` and
    `max_form_field_size`, `thread_limit` (worker threads for ``def`` handlers
    under ASGI) and `lifespan` (``fn(app)`` returning an async context manager).

    The OpenAPI document (`openapi`) has the `title`, `version` and
    `description` given; it is served at `openapi_url` and its interactive
    docs (Swagger UI) at `docs_url` (``None`` turns either off; the docs need
    the document). Routes of your own on those paths take precedence.

    All but `lifespan` are kept as attributes of the same name; `app.state` is
    a namespace for your application-wide objects.
    """

    def __init__(
        self,
        *,
        debug: bool = False,
        redirect_slashes: bool = True,
        max_body_size: int = 16 * MiB,
        max_form_fields: int = 1000,
        max_form_files: int = 100,
        max_form_field_size: int = 1 * MiB,
        thread_limit: int = 100,
        lifespan: Callable[[App], Any] | None = None,
        title: str = "microweb",
        version: str = "0.1.0",
        description: str | None = None,
        openapi_url: str | None = "/openapi.json",
        docs_url: str | None = "/docs",
    ) -> None:
        if thread_limit < 1:
            raise ValueError("thread_limit must be at least 1")
        self.debug = debug
        #: The module that made the app (for messages that say what to write).
        self._made_in: str | None = sys._getframe(1).f_globals.get("__name__")
        self.redirect_slashes = redirect_slashes
        self.max_body_size = max_body_size
        self.max_form_fields = max_form_fields
        self.max_form_files = max_form_files
        self.max_form_field_size = max_form_field_size
        self.thread_limit = thread_limit
        self.title = title
        self.version = version
        self.description = description
        self.openapi_url = openapi_url
        self.docs_url = docs_url if openapi_url is not None else None
        self.state = State()
        self._lifespan = lifespan
        self._lifespan_cm: Any = None
        self._matcher = Matcher()
        self._converters: dict[str, Converter] = default_converters()
        self._routes: list[Route] = []
        self._names: dict[str, Route] = {}
        self._before: tuple[Hook, ...] = ()
        self._after: tuple[Hook, ...] = ()
        self._middleware: tuple[Hook, ...] = ()
        #: True while no hook or middleware is registered (handlers may run directly).
        self._hookless = True
        self._status_handlers: dict[int, Hook] = {}
        self._class_handlers: dict[type[BaseException], Hook] = {}
        self._has_error_handlers = False
        #: Set by the Sessions middleware: what loads `request.session` on first use.
        self._session_loader: Any = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        #: Set once startup has run (per process); guarded by `_start_lock`.
        self._started = False
        #: Set when startup failed (per process): requests get 500, startup is not retried.
        self._startup_error: BaseException | None = None
        self._start_lock = threading.Lock()
        #: The OpenAPI document, built on first use; a route added later drops it.
        self._openapi: dict[str, Any] | None = None
        #: The paths of the docs routes (less a trailing slash) that routes of the app took.
        self._docs_taken: set[str] = set()
        self._docs_paths = {u.rstrip("/") for u in (openapi_url, self.docs_url) if u is not None}
        if self._docs_paths:
            from ._docs import docs_matcher

            # kept out of `routes`, and consulted only when no route of the app matches
            self._matcher.fallback = docs_matcher(self, self._docs_taken)

    # ------------------------------------------------------------ entry points
    @cached_property
    def wsgi(self) -> WSGIAdapter:
        """The PEP 3333 callable: ``waitress-serve --listen=127.0.0.1:8000 mod:app.wsgi``;
        ``wsgi = app.wsgi`` in the module for ``gunicorn mod:wsgi``."""
        from .wsgi import WSGIAdapter

        return WSGIAdapter(self)

    @cached_property
    def asgi(self) -> ASGIAdapter:
        """The ASGI 3 application: ``uvicorn mod:app.asgi``."""
        from .asgi import ASGIAdapter

        return ASGIAdapter(self)

    def __call__(self, *args: Any) -> Any:
        """An App is not itself a server application: a server that calls it
        (``uvicorn mod:app``, ``gunicorn mod:app``) gets a TypeError that says
        which entry point to serve instead (uvicorn refuses to start)."""
        from ._misuse import app_called

        return app_called(self, args)

    # ---------------------------------------------------------------- routes
    def _add(self, spec: RouteSpec) -> None:
        segments = compile_template(spec.path, self._converters)
        name = spec.name or getattr(spec.endpoint, "__name__", None) or spec.path
        route = Route(
            spec.path,
            spec.endpoint,
            methods=spec.methods,
            name=name,
            segments=segments,
            websocket=spec.websocket,
            before=spec.before,
            after=spec.after,
            status=spec.status,
            doc=spec.doc,
            analysed=spec.analysed,
        )
        existing = self._names.get(name)
        if existing is not None and not (
            existing.handler is spec.endpoint and existing.path == spec.path
        ):
            raise ValueError(
                f"two routes are named {name!r} ({existing.path} and {spec.path}); "
                "give one of them another name="
            )
        self._names.setdefault(name, route)
        self._routes.append(route)
        self._matcher.add(route)
        self._openapi = None
        bare = spec.path.rstrip("/")
        if bare in self._docs_paths and bare not in self._docs_taken:
            from ._docs import docs_matcher

            # a route of the app's own on a docs path (or its slash twin) replaces it
            self._docs_taken.add(bare)
            self._matcher.fallback = docs_matcher(self, self._docs_taken)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the app's HTTP routes, as a dict.

        Built on first use and kept (a route added later rebuilds it): changes
        made to the dict are what `openapi_url` serves.
        """
        doc = self._openapi
        if doc is None:
            from ._openapi import build

            doc = self._openapi = build(self)
        return doc

    @property
    def routes(self) -> list[Route]:
        """Every registered route, in registration order."""
        return list(self._routes)

    def include_router(self, router: Router, prefix: str = "") -> None:
        """Add `router`'s routes under `prefix` (e.g. ``"/api"``), with its hooks."""
        for spec in router.prefixed_specs(prefix):
            self._add(spec)

    def add_converter(
        self,
        name: str,
        regex: str,
        to_python: Callable[[str], Any] = str,
        to_url: Callable[[Any], str] = str,
    ) -> None:
        """Add a path converter usable as ``{param:name}`` in routes registered after it."""
        if not name.isidentifier():
            raise ValueError(f"converter name must be an identifier: {name!r}")
        self._converters[name] = Converter(regex, to_python, to_url)

    def static(
        self,
        prefix: str,
        directory: str | os.PathLike[str],
        html: bool = False,
        name: str | None = None,
    ) -> None:
        """Serve the files under `directory` at ``{prefix}/...`` (GET and HEAD).

        The route is named `name`, or after the prefix (``"/static"`` →
        ``"static"``): ``url_for("static", path="css/site.css")``. With `html`,
        a directory serves its ``index.html``.
        """
        from .staticfiles import StaticFiles

        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"a static prefix must start with '/': {prefix!r}")
        route_name = name or prefix.strip("/") or "static"
        files = StaticFiles(directory, html=html)
        methods = ["GET", "HEAD"]
        hidden = False  # files are not operations of the API
        self.route(prefix + "/{path:path}", methods, route_name, include_in_schema=hidden)(
            files.serve
        )
        self.route(prefix + "/", methods, f"{route_name}:index", include_in_schema=hidden)(
            files.index
        )
        if prefix:
            self.route(prefix, methods, f"{route_name}:bare", include_in_schema=hidden)(files.bare)

    def url_for(self, name: str, /, **params: Any) -> str:
        """The path of the route called `name`, its parameters converted and encoded."""
        route = self._names.get(name)
        if route is None:
            raise LookupError(f"no route named {name!r}")
        return route.url_path(params)

    # ----------------------------------------------------------------- hooks
    def before_request(self, fn: Handler) -> Handler:
        """Run ``fn(request)`` before each handler; a non-None return answers instead."""
        self._before = (*self._before, Hook.of(fn))
        self._hookless = False
        return fn

    def after_request(self, fn: Handler) -> Handler:
        """Run ``fn(request, response)`` after each request; a Response return replaces it."""
        self._after = (*self._after, Hook.of(fn))
        self._hookless = False
        return fn

    def add_middleware(self, middleware: Any) -> None:
        """Add a bundled middleware (`microweb.middleware`) or any object with
        ``install(app)``; like hooks, middleware runs in the order it is added."""
        install = getattr(middleware, "install", None)
        if install is None:
            raise TypeError(
                f"{type(middleware).__name__} is not a microweb middleware (no install(app)); "
                "to use ASGI or WSGI middleware, wrap app.asgi or app.wsgi with it"
            )
        install(self)

    def _add_hooks(self, before: Hook | None = None, after: Hook | None = None) -> None:
        """Register hooks already made (a middleware's inline ones)."""
        if before is not None:
            self._before = (*self._before, before)
            self._hookless = False
        if after is not None:
            self._after = (*self._after, after)
            self._hookless = False

    def middleware(self, fn: Handler) -> Handler:
        """Wrap the handler: ``async def fn(request, call_next)`` returns a response."""
        self._middleware = (*self._middleware, Hook.of(fn))
        self._hookless = False
        return fn

    def exception_handler(self, key: int | type[BaseException]) -> Callable[[Handler], Handler]:
        """Register ``handler(request, exc)`` for a status code or an exception class."""
        if isinstance(key, int) and not isinstance(key, bool):
            if not 400 <= key <= 599:
                raise ValueError(f"exception handlers are for 4xx/5xx statuses, not {key}")
        elif not (isinstance(key, type) and issubclass(key, Exception)):
            raise TypeError("exception_handler() takes a status code or an Exception class")

        def decorator(fn: Handler) -> Handler:
            hook = Hook.of(fn)
            if isinstance(key, int):
                self._status_handlers[key] = hook
            else:
                self._class_handlers[key] = hook
            self._has_error_handlers = True
            return fn

        return decorator

    def _error_handler_for(self, exc: Exception) -> Hook | None:
        if isinstance(exc, HTTPException):
            hook = self._status_handlers.get(exc.status)
            if hook is not None:
                return hook
            # HTTPExceptions are answered by their own JSON unless a handler names
            # HTTPException (or a subclass): an Exception handler is for failures.
            for cls in type(exc).__mro__:
                hook = self._class_handlers.get(cls)
                if hook is not None:
                    return hook
                if cls is HTTPException:
                    return None
            return None
        for cls in type(exc).__mro__:
            hook = self._class_handlers.get(cls)
            if hook is not None:
                return hook
        return self._status_handlers.get(500)

    # -------------------------------------------------------------- lifespan
    def on_startup(self, fn: Handler) -> Handler:
        """Run ``fn()`` (def or async def) once before the first request."""
        self._startup.append(Hook.of(fn))
        return fn

    def on_shutdown(self, fn: Handler) -> Handler:
        """Run ``fn()`` (def or async def) when the server shuts down."""
        self._shutdown.append(Hook.of(fn))
        return fn

    def _startup_flow(self, holder: Callable[[Any], Any]) -> Generator[Step, Any, None]:
        """Startup as pipeline steps: the lifespan context is entered, then the hooks.

        `holder` wraps the lifespan context (an adapter's): it keeps it open in
        one task of its own, so it is entered and exited in the same task (an
        anyio task group in it works), whatever tasks startup and shutdown run in.
        A hook that fails leaves the context again before its error goes on.
        """
        held = None
        if self._lifespan is not None:
            held = holder(self._lifespan(self))
            yield (held.enter, (), _NOKW, ASYNC)
        try:
            for hook in self._startup:
                yield (hook.fn, (), _NOKW, hook.kind)
        except Exception:
            if held is not None:
                try:
                    yield (held.exit, (), _NOKW, ASYNC)
                except Exception:
                    logger.exception("Error while leaving the lifespan after a failed startup")
            raise
        self._lifespan_cm = held

    def _shutdown_flow(self) -> Generator[Step, Any, None]:
        """Shutdown as pipeline steps: the hooks, then the lifespan context is left."""
        error: Exception | None = None
        for hook in self._shutdown:
            try:
                yield (hook.fn, (), _NOKW, hook.kind)
            except Exception as exc:
                error = error or exc
        held, self._lifespan_cm = self._lifespan_cm, None
        if held is not None:
            yield (held.exit, (), _NOKW, ASYNC)
        if error is not None:
            raise error

    # ------------------------------------------------------------------- run
    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        server: str | None = None,
        workers: int = 1,
    ) -> None:
        """Serve the app from a script: uvicorn on `asgi` by default, or
        ``server="waitress"`` / ``"gunicorn"`` on `wsgi` (blocks until stopped)."""
        from .cli import serve

        serve(self, host=host, port=port, server=server or "uvicorn", workers=workers)
