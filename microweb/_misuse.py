"""What a server gets when it is pointed at the wrong object.

`App` itself is no server application, and `app.wsgi` is no ASGI one. When a
server calls them anyway (``uvicorn mod:app``, ``gunicorn mod:app``,
``uvicorn mod:app.wsgi``), they raise a TypeError whose message says exactly
what to serve instead; called for an ASGI lifespan, they fail its startup
with that message, so uvicorn refuses to start and prints it. Nothing here
runs for an app that is served as documented.

Strategy: the protocol is told by the call's shape: WSGI is
``(environ, start_response)``, ASGI 3 ``(scope, receive, send)``, and ASGI 2
(which uvicorn uses for any callable whose ``__call__`` is not ``async def``)
``(scope)``, then ``(receive, send)`` on what that returns.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .applications import App

__all__ = ["app_called", "wsgi_called_by_asgi"]


def app_called(app: App, args: tuple[Any, ...]) -> Any:
    """`App.__call__`: raise (or fail the lifespan) with what to serve instead."""
    module, name = _where(app)
    first = args[0] if args else None
    if isinstance(first, dict) and len(args) in (1, 3) and "type" in first:
        message = (
            f"{module}:{name} is a microweb App, not an ASGI application: serve its "
            f"ASGI entry point instead, e.g. `uvicorn {module}:{name}.asgi`"
        )
        return _refuse_asgi(first, args[1:], message)
    if isinstance(first, dict) and len(args) == 2:
        software = str(first.get("SERVER_SOFTWARE", ""))
        message = f"{module}:{name} is a microweb App, not a WSGI application: serve its "
        if software.startswith("gunicorn"):
            # gunicorn's importer takes a plain name only (no mod:app.wsgi)
            message += (
                f"WSGI entry point {name}.wsgi instead, under a name of its own: write "
                f"`wsgi = {name}.wsgi` in {module} and run `gunicorn {module}:wsgi`"
            )
        elif software.startswith("waitress"):
            message += (
                "WSGI entry point instead: "
                f"`waitress-serve --listen=127.0.0.1:8000 {module}:{name}.wsgi`"
            )
        else:
            message += f"WSGI entry point instead: {module}:{name}.wsgi"
        raise TypeError(message)
    raise TypeError(
        f"{module}:{name} is a microweb App, not itself a server application: serve "
        f"{name}.asgi with an ASGI server (`uvicorn {module}:{name}.asgi`) or {name}.wsgi "
        f"with a WSGI server (`waitress-serve --listen=127.0.0.1:8000 {module}:{name}.wsgi`)"
    )


def wsgi_called_by_asgi(app: App, scope: Any) -> Any:
    """`app.wsgi` called as ASGI 2 (``uvicorn mod:app.wsgi``): name `app.asgi` instead."""
    module, name = _where(app)
    message = (
        f"{module}:{name}.wsgi is the WSGI entry point, called here by an ASGI server: "
        f"serve the ASGI entry point instead, e.g. `uvicorn {module}:{name}.asgi`"
    )
    if not isinstance(scope, dict):
        raise TypeError(message)
    return _refuse_asgi(scope, (), message)


def _refuse_asgi(scope: dict[str, Any], rest: tuple[Any, ...], message: str) -> Any:
    """An ASGI call's answer: a lifespan whose startup fails with `message`
    (the server prints it and stops); for any other scope, TypeError(message)."""
    if scope.get("type") != "lifespan":
        raise TypeError(message)

    async def fail_startup(receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        event = await receive()
        if event.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": message})

    if len(rest) == 2:  # ASGI 3: awaited by the server
        coroutine: Coroutine[Any, Any, None] = fail_startup(*rest)
        return coroutine
    return fail_startup  # ASGI 2: called with (receive, send), then awaited


def _where(app: App) -> tuple[str, str]:
    """The module and the variable that hold `app` (``("myapp", "app")``), for
    messages that say exactly what to write; placeholders when none does.

    The module that made the app is looked at first; then every plain module
    (a lazily loaded one is never made to load). Found once, then kept.
    """
    cached: tuple[str, str] | None = getattr(app, "_misuse_where", None)
    if cached is not None:
        return cached
    made_in = app._made_in
    modules = list(sys.modules.items())
    if made_in is not None and made_in in sys.modules:
        modules.insert(0, (made_in, sys.modules[made_in]))
    found: tuple[str, str] | None = None
    for module_name, module in modules:
        if type(module) is not types.ModuleType:  # lazy modules, odd entries: left alone
            continue
        for attr, value in list(vars(module).items()):
            if value is app and not attr.startswith("_"):
                if module_name != "__main__":
                    found = (module_name, attr)
                    break
                found = found or (module_name, attr)
        else:
            continue
        break
    where = found or ("myapp", "app")
    app._misuse_where = where  # type: ignore[attr-defined]
    return where
