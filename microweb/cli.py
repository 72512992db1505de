"""The ``microweb`` command line (also ``python -m microweb``).

    microweb run mod:app [--server uvicorn|waitress|gunicorn] [--host H] [--port P]
                         [--workers N] [--threads N] [--reload]
    microweb routes mod:app
    microweb openapi mod:app [--indent N]

`run` serves ``app.asgi`` with uvicorn (the default) or ``app.wsgi`` with
waitress or gunicorn (through gunicorn's embedding API, so no ``wsgi =
app.wsgi`` line is needed). ``--reload`` restarts the server when a ``.py``
file under the current directory changes (for development).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .applications import App

__all__ = ["load_app", "main", "openapi_json", "routes_table", "serve"]

SERVERS = ("uvicorn", "waitress", "gunicorn")


def load_app(target: str) -> App:
    """Import ``module:attribute`` (the current directory is importable) and return its App."""
    from .applications import App

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: expected module:app (e.g. myapp:app), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name.split(".")[0] or exc.name == module_name:
            raise SystemExit(f"error: cannot import {module_name!r}: {exc}") from None
        raise
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"error: {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise SystemExit(f"error: {target} is a {type(obj).__name__}, not a microweb App")
    return obj


def _missing(server: str) -> SystemExit:
    return SystemExit(
        f"error: the {server} server is not installed; install it with: pip install {server}"
    )


def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = 8000,
    server: str = "uvicorn",
    workers: int = 1,
    threads: int = 8,
    target: str | None = None,
) -> None:
    """Serve `app` in this process with `server` (blocks until it stops).

    `target` (``module:app``) is needed by uvicorn to run several workers.
    """
    if workers < 1 or threads < 1:
        raise SystemExit("error: --workers and --threads must be at least 1")
    if server == "uvicorn":
        try:
            import uvicorn
        except ImportError:
            raise _missing("uvicorn") from None
        if workers > 1:
            if target is None:
                raise SystemExit("error: several uvicorn workers need the app as module:app")
            uvicorn.run(f"{target}.asgi", host=host, port=port, workers=workers)
        else:
            uvicorn.run(app.asgi, host=host, port=port)
    elif server == "waitress":
        try:
            import waitress  # type: ignore[import-untyped]
        except ImportError:
            raise _missing("waitress") from None
        if workers > 1:
            raise SystemExit("error: waitress runs one process: use --threads, not --workers")
        # as waitress-serve does: its INFO lines ("Serving on http://...") are shown,
        # unless the app set the logger's level itself
        waitress_logger = logging.getLogger("waitress")
        if waitress_logger.level == logging.NOTSET:
            waitress_logger.setLevel(logging.INFO)
        waitress.serve(app.wsgi, host=host, port=port, threads=threads)
    elif server == "gunicorn":
        _gunicorn(app, host, port, workers, threads)
    else:
        raise SystemExit(f"error: unknown server {server!r} (choose from {', '.join(SERVERS)})")


def _gunicorn(app: App, host: str, port: int, workers: int, threads: int) -> None:
    try:
        from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
    except ImportError:
        raise _missing("gunicorn") from None

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = self.cfg.settings
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            if threads > 1:
                self.cfg.set("worker_class", "gthread")
                self.cfg.set("threads", threads)
            if "control_socket_disable" in settings:  # gunicorn >= 25.1
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app.wsgi

    Gunicorn().run()


def routes_table(app: App) -> str:
    """Every route of `app` as a text table: methods, path, name, handler, protocols."""
    rows = [("METHODS", "PATH", "NAME", "HANDLER", "SERVED BY")]
    for route in app.routes:
        fn = route.endpoint
        module = getattr(fn, "__module__", None) or "?"
        handler = f"{module}:{getattr(fn, '__qualname__', repr(fn))}"
        if route.websocket:
            methods, served = "WEBSOCKET", "asgi only"
        else:
            names = set(route.methods)
            if "GET" in names:
                names.add("HEAD")
            methods, served = ",".join(sorted(names)), "wsgi, asgi"
        rows.append((methods, route.path, route.name, handler, served))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def openapi_json(app: App, indent: int | None = 2) -> str:
    """The OpenAPI document of `app` as JSON text (`indent` None: on one line)."""
    import json

    separators = (",", ":") if indent is None else None
    return json.dumps(app.openapi(), indent=indent, ensure_ascii=False, separators=separators)


#: Signals that stop ``microweb run --reload``, and its server with it.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _reload_loop(argv: Sequence[str]) -> int:
    """Run this command without --reload in a child; restart it when a .py file changes.

    Lifecycle rules: the child (the server) never outlives this process. A
    SIGINT (Ctrl-C), SIGTERM or SIGHUP sent to this process stops the child
    with SIGTERM, the graceful stop of every server (SIGHUP would make
    gunicorn reload, and SIGINT after the terminal's own would make uvicorn
    skip its graceful shutdown), then waits for it to exit (killing it after
    `_stop_child`'s deadline) and returns 0. A child that exits by itself
    ends this process with its exit code.
    """
    child_argv = [sys.executable, "-m", "microweb", *(a for a in argv if a != "--reload")]
    stopping: list[int] = []  # a handler only records the signal: the loop below acts
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: stopping.append(signum))

    def snapshot() -> dict[Path, float]:
        files = {}
        for path in Path.cwd().rglob("*.py"):
            if any(part.startswith(".") or part == "__pycache__" for part in path.parts):
                continue
            try:
                files[path] = path.stat().st_mtime
            except OSError:
                pass
        return files

    while True:
        seen = snapshot()
        child = _start_child(child_argv)
        while child.poll() is None and not stopping:
            time.sleep(0.5)  # the development reloader polls the file system
            if snapshot() != seen:
                print("microweb: a file changed, restarting", file=sys.stderr)
                break
        else:
            if not stopping:
                return child.returncode
        _stop_child(child)
        if stopping:
            return 0


def _start_child(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start the server in a process group of its own: what it starts (uvicorn's
    workers, say) can be ended with it, and a terminal's Ctrl-C reaches only this
    process, which stops the child gracefully."""
    return subprocess.Popen(argv, start_new_session=True, **options)


def _stop_child(child: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM `child` and wait for it; after `timeout`, SIGKILL its whole process
    group. Whatever of the group is left once the child is gone is killed too:
    no worker of the server outlives it."""
    if child.poll() is None:
        child.terminate()
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="microweb",
        description="Run a microweb app, list its routes, or print its OpenAPI document.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve an app (uvicorn on app.asgi by default)")
    run.add_argument("app", help="the app, as module:attribute (e.g. myapp:app)")
    run.add_argument("--server", default="uvicorn", choices=SERVERS)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--workers", type=int, default=1, help="processes (uvicorn, gunicorn)")
    run.add_argument("--threads", type=int, default=8, help="threads (waitress, gunicorn)")
    run.add_argument("--reload", action="store_true", help="restart when a .py file changes")
    routes = sub.add_parser("routes", help="list the routes of an app")
    routes.add_argument("app", help="the app, as module:attribute")
    openapi = sub.add_parser("openapi", help="print the OpenAPI document of an app as JSON")
    openapi.add_argument("app", help="the app, as module:attribute")
    openapi.add_argument(
        "--indent", type=int, default=2, help="spaces per level; 0 prints one line (default 2)"
    )
    args = parser.parse_args(args_list)
    if args.command == "routes":
        print(routes_table(load_app(args.app)))
        return 0
    if args.command == "openapi":
        print(openapi_json(load_app(args.app), args.indent or None))
        return 0
    if args.reload:
        return _reload_loop(args_list)
    app = load_app(args.app)
    serve(app, args.host, args.port, args.server, args.workers, args.threads, target=args.app)
    return 0
