"""microweb's errors: one root, each error carrying its data."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import NoReturn

__all__ = ["HTTPException", "MicrowebError", "WebSocketDisconnect", "abort", "reason_phrase"]


_PHRASES = {s.value: s.phrase for s in HTTPStatus}
# RFC 9110's names, whatever the Python version's http module says
_PHRASES.update(
    {
        413: "Content Too Large",
        414: "URI Too Long",
        416: "Range Not Satisfiable",
        422: "Unprocessable Content",
    }
)


def reason_phrase(status: int) -> str:
    """The standard reason phrase of `status`, or ``""`` for an unregistered code."""
    return _PHRASES.get(status, "")


class MicrowebError(Exception):
    """The root of every error microweb raises on purpose."""


class HTTPException(MicrowebError):
    """An error that becomes an HTTP response: ``{"detail": ...}`` with `status`.

    Raise it anywhere in a handler, hook or middleware; `detail` defaults to the
    status's reason phrase and may be any JSON-serialisable value; `headers` are
    added to the error response (a 405 carries ``Allow`` this way).
    """

    def __init__(
        self,
        status: int,
        detail: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if type(status) is not int or not 100 <= status <= 599:
            raise ValueError(f"HTTP status must be an int in 100..599, not {status!r}")
        self.status = status
        self.detail = _PHRASES.get(status, "") if detail is None else detail
        if headers:
            from .datastructures import check_header_name, check_header_value

            for name, value in headers.items():  # header injection fails here, at the raise
                check_header_name(name)
                check_header_value(value)
        self.headers = dict(headers) if headers else None
        super().__init__(status, self.detail)

    @property
    def status_code(self) -> int:
        """Alias of `status`, for Starlette habits."""
        return self.status

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, detail={self.detail!r})"


class WebSocketDisconnect(MicrowebError):
    """The WebSocket peer went away; `code` is its close code."""

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(code, reason)


def abort(status: int, detail: object = None) -> NoReturn:
    """Stop handling the request with an error response: ``raise HTTPException(...)``."""
    raise HTTPException(status, detail)
