"""The ``microweb`` command line: run an app on a server, list its routes."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .applications import App

__all__ = ["load_app", "main", "serve"]


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    from .applications import App

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"expected module:app, got {target!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, App):
        raise SystemExit(f"{target} is {type(obj).__name__}, not a microweb App")
    return obj


def serve(app: App, host: str = "127.0.0.1", port: int = 8000, server: str = "uvicorn") -> None:
    """Serve `app` in this process: uvicorn on app.asgi, or waitress on app.wsgi."""
    if server == "uvicorn":
        try:
            import uvicorn
        except ImportError:
            raise SystemExit("uvicorn is not installed: pip install uvicorn") from None
        uvicorn.run(app.asgi, host=host, port=port)
    elif server == "waitress":
        try:
            import waitress  # type: ignore[import-untyped]
        except ImportError:
            raise SystemExit("waitress is not installed: pip install waitress") from None
        waitress.serve(app.wsgi, host=host, port=port)
    else:
        raise SystemExit(f"unknown server {server!r} (uvicorn or waitress)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="microweb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve an app")
    run.add_argument("app", help="module:app")
    run.add_argument("--server", default="uvicorn", choices=["uvicorn", "waitress"])
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.command == "run":
        serve(load_app(args.app), args.host, args.port, args.server)
    return 0
