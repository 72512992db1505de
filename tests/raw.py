"""Call `app.wsgi` / `app.asgi` with raw environs and scopes (no client that normalises).

The WSGI side goes through ``wsgiref.validate.validator``. The ASGI side takes
a `receive` of the caller's (a list of messages by default, then a wait for a
disconnect that never comes unless `disconnect` is set).
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.validate import validator

from microweb import App

Message = dict[str, Any]


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def environ(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    **extra: Any,
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers:
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    env.update(extra)
    return env


def call_wsgi(app: App, env: dict[str, Any] | None = None, **kwargs: Any) -> Answer:
    """One request through ``validator(app.wsgi)``, its body read whole and closed."""
    env = environ(**kwargs) if env is None else env
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    result = validator(app.wsgi)(env, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    status, headers = started[-1]
    return Answer(int(status[:3]), list(headers), body)


def scope(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
    }
    s.update(extra)
    return s


async def call_asgi(
    app: App,
    s: dict[str, Any] | None = None,
    body: bytes = b"",
    receive: Callable[[], Awaitable[Message]] | None = None,
    **kwargs: Any,
) -> Answer:
    """One request through ``app.asgi`` on the running loop."""
    if s is None:
        if body:
            kwargs["headers"] = [*kwargs.get("headers", ()), ("content-length", str(len(body)))]
        s = scope(**kwargs)
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_body() -> Message:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: the client waits for its answer
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app.asgi(s, receive or receive_body, send)
    start = sent[0]
    return Answer(
        start["status"],
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]],
        b"".join(m.get("body", b"") for m in sent[1:]),
    )
