"""The shape of the package: an I/O-free core and an explicit public API."""

from __future__ import annotations

import ast
from pathlib import Path

import microweb

PACKAGE = Path(microweb.__file__).parent

#: The protocol-free core (STYLE.md): it must not know event loops or servers.
CORE = [
    "_typed",
    "_typed_forms",
    "params",
    "background",
    "routing",
    "_matching",
    "requests",
    "responses",
    "datastructures",
    "exceptions",
    "_pipeline",
]
FORBIDDEN = {
    "asyncio",
    "anyio",
    "sniffio",
    "trio",
    "threading",
    "socket",
    "wsgiref",
    "microweb.wsgi",
    "microweb.asgi",
    "microweb._concurrency",
    "microweb._streaming",
    "microweb.websockets",
    "microweb.testing",
}


def _imports(module: str) -> set[str]:
    """Every module `module` imports, anywhere in its source (absolute names)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):  # imports for type checkers only do not count
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "microweb" + (f".{base}" if base else "")
                found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return found


def test_core_imports_no_event_loop_and_no_protocol() -> None:
    # the core and every microweb module it reaches, transitively
    todo, seen = [f"microweb.{m}" for m in CORE], set()
    while todo:
        name = todo.pop()
        if name in seen or not (PACKAGE / f"{name.removeprefix('microweb.')}.py").exists():
            continue
        seen.add(name)
        imported = _imports(name.removeprefix("microweb."))
        bad = {m for m in imported if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN}
        assert not bad, f"{name} imports {sorted(bad)}"
        todo.extend(m for m in imported if m.startswith("microweb."))
    assert {"microweb.forms", "microweb._multipart", "microweb._parsers"} <= seen


def test_exported_names_are_the_documented_ones() -> None:
    assert sorted(microweb.__all__) == sorted(
        [
            "App",
            "BackgroundTask",
            "BackgroundTasks",
            "Body",
            "Cookie",
            "EventSourceResponse",
            "Form",
            "Header",
            "Path",
            "Query",
            "FileResponse",
            "FormData",
            "HTMLResponse",
            "HTTPException",
            "JSONResponse",
            "PlainTextResponse",
            "RedirectResponse",
            "Request",
            "Response",
            "Router",
            "StreamingResponse",
            "UploadFile",
            "WebSocket",
            "WebSocketDisconnect",
            "abort",
        ]
    )
    for name in microweb.__all__:
        assert getattr(microweb, name) is not None
    assert isinstance(microweb.__version__, str)


def test_entry_points_are_attributes_created_once() -> None:
    app = microweb.App()
    assert app.wsgi is app.wsgi
    assert app.asgi is app.asgi
    # uvicorn treats a bound method as ASGI 2: app.asgi must be an instance
    import inspect

    assert not inspect.ismethod(app.asgi)
    assert inspect.iscoroutinefunction(type(app.asgi).__call__)
