"""TrustedHost: refuse requests for a host the app does not serve."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import HTTPException
from ..routing import Hook

if TYPE_CHECKING:
    from ..applications import App
    from ..requests import Request

__all__ = ["TrustedHost"]

#: A host (reg-name, IPv4 or [IPv6]) and an optional port; the first class has
#: no ":" or "[", so the match is linear.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::[0-9]{1,5})?")


class TrustedHost:
    """Answer 400 to a request whose ``Host`` is not one of `allowed_hosts`.

    A pattern is an exact name (``"example.com"``), a wildcard for the
    subdomains (``"*.example.com"``, which does not match the bare domain)
    or ``"*"`` (any host). The port is ignored; a ``Host`` header that is
    missing or not a valid host at all is refused.
    """

    def __init__(self, allowed_hosts: Sequence[str] = ("*",)) -> None:
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts is a list of host names, e.g. ['example.com']")
        self.allow_any = "*" in allowed_hosts
        self.exact = frozenset(h.lower() for h in allowed_hosts if not h.startswith("*"))
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    def install(self, app: App) -> None:
        """Add this middleware's hooks to `app` (``app.add_middleware(...)`` calls it)."""
        app._add_hooks(before=Hook.inline(self.check))

    def allowed(self, host_header: str | None) -> bool:
        """Whether a ``Host`` header value names one of the allowed hosts."""
        if self.allow_any:
            return True
        if not host_header:
            return False
        m = _HOST.fullmatch(host_header)
        if m is None:
            return False
        host = m.group(1).lower().rstrip(".")
        return host in self.exact or any(host.endswith(s) for s in self.suffixes)

    def check(self, request: Request) -> None:
        """The before-hook: HTTPException(400) when the request's host is not allowed."""
        if not self.allowed(request.headers.get("host")):
            raise HTTPException(400, "Invalid host header")
