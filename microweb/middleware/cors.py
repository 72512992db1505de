"""CORS: answer preflights, and mark allowed cross-origin responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import HTTPException
from ..responses import PlainTextResponse, Response
from ..routing import Hook

if TYPE_CHECKING:
    from ..applications import App
    from ..requests import Request

__all__ = ["CORS"]

ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
#: Request headers a browser may always send cross-origin (CORS-safelisted).
SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type"})


class CORS:
    """Cross-Origin Resource Sharing.

    Preflight requests (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``) are answered here, before routing:
    200 with the allowed methods and headers, or 400 when the origin, method
    or headers are not allowed. Other requests from an allowed origin get
    ``Access-Control-Allow-Origin`` (and credentials / exposed headers as
    configured); a disallowed origin gets no CORS headers at all.
    ``"*"`` in `allow_origins`, `allow_methods` or `allow_headers` allows any.
    """

    def __init__(
        self,
        allow_origins: Sequence[str] = (),
        allow_methods: Sequence[str] = ("GET",),
        allow_headers: Sequence[str] = (),
        allow_credentials: bool = False,
        expose_headers: Sequence[str] = (),
        max_age: int = 600,
    ) -> None:
        self.allow_all_origins = "*" in allow_origins
        self.allow_origins = frozenset(allow_origins)
        methods = ALL_METHODS if "*" in allow_methods else [m.upper() for m in allow_methods]
        self.allow_methods = frozenset(methods)
        self.allow_all_headers = "*" in allow_headers
        self.allow_headers = frozenset(h.lower() for h in allow_headers) | SAFELISTED
        self.allow_credentials = allow_credentials
        self.expose_headers = ", ".join(expose_headers)
        self._preflight_base = {
            "access-control-allow-methods": ", ".join(sorted(self.allow_methods)),
            "access-control-max-age": str(int(max_age)),
        }
        if allow_credentials:
            self._preflight_base["access-control-allow-credentials"] = "true"
        if not self.allow_all_headers:
            self._preflight_base["access-control-allow-headers"] = ", ".join(
                sorted(self.allow_headers)
            )

    def install(self, app: App) -> None:
        """Add this middleware's hooks to `app` (``app.add_middleware(...)`` calls it)."""
        app._add_hooks(before=Hook.inline(self.preflight), after=Hook.inline(self.mark))

    def _origin_allowed(self, origin: str) -> bool:
        return self.allow_all_origins or origin in self.allow_origins

    def _allow_origin_value(self, origin: str) -> str:
        # "*" cannot go with credentials: then the origin itself is echoed
        if self.allow_all_origins and not self.allow_credentials:
            return "*"
        return origin

    def preflight(self, request: Request) -> Response | None:
        """Answer a preflight request; let every other request through."""
        if request.method != "OPTIONS":
            return None
        headers = request.headers
        origin = headers.get("origin")
        method = headers.get("access-control-request-method")
        if origin is None or method is None:
            return None  # a plain OPTIONS request
        problems = []
        if not self._origin_allowed(origin):
            problems.append("origin")
        if method.upper() not in self.allow_methods:
            problems.append("method")
        requested = headers.get("access-control-request-headers", "")
        names = [h.strip().lower() for h in requested.split(",") if h.strip()]
        if not self.allow_all_headers and any(h not in self.allow_headers for h in names):
            problems.append("headers")
        if problems:
            raise HTTPException(400, f"Disallowed CORS {', '.join(problems)}", {"Vary": "Origin"})
        response = PlainTextResponse("OK", status=200, headers=self._preflight_base)
        response.headers["access-control-allow-origin"] = self._allow_origin_value(origin)
        if self.allow_all_headers and requested:
            response.headers["access-control-allow-headers"] = requested
        response.headers.add_vary("Origin")
        return response

    def mark(self, request: Request, response: Response) -> None:
        """Add the CORS headers to a response for an allowed origin."""
        headers = request.headers
        origin = headers.get("origin")
        if origin is None or not self._origin_allowed(origin):
            return
        if request.method == "OPTIONS" and "access-control-request-method" in headers:
            return  # a preflight: `preflight` made its answer
        h = response.headers
        value = self._allow_origin_value(origin)
        h["access-control-allow-origin"] = value
        if value != "*":
            h.add_vary("Origin")
        if self.allow_credentials:
            h["access-control-allow-credentials"] = "true"
        if self.expose_headers:
            h["access-control-expose-headers"] = self.expose_headers
