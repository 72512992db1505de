"""Sessions: a dict per client, kept in a signed cookie (HMAC-SHA256)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..routing import Hook

if TYPE_CHECKING:
    from ..applications import App
    from ..requests import HTTPConnection, Request
    from ..responses import Response

__all__ = ["Session", "Sessions"]

logger = logging.getLogger("microweb")

#: The longest cookie value looked at (browsers keep at most about 4 KiB).
_MAX_COOKIE = 8192


class Session(dict[str, Any]):
    """`request.session`: a dict that knows whether it was read or changed."""

    def __init__(self, data: dict[str, Any], had_cookie: bool) -> None:
        super().__init__(data)
        self.accessed = False
        self.modified = False
        self.had_cookie = had_cookie
        #: The data as loaded, to notice changes made inside values (a list
        #: appended to); only needed, and only computed, when a value can change.
        self.original = _canonical(data) if _has_containers(data) else None

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.modified = True
        super().__delitem__(key)

    def clear(self) -> None:
        self.modified = True
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        self.modified = True
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.modified = True
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.modified = True
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.modified = True
        super().update(*args, **kwargs)


def _has_containers(data: dict[str, Any]) -> bool:
    return any(isinstance(v, dict | list) for v in data.values())


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=repr)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signed-cookie sessions: ``request.session`` is a dict of JSON values.

    The cookie holds the data and its expiry, signed with HMAC-SHA256 and
    compared in constant time. `secret_key` is a str or a list of str: the
    first signs, every one verifies (rotate keys by putting the new one
    first). A tampered, expired or garbled cookie is an empty session, never
    an error. The cookie is HttpOnly, ``SameSite`` as given, ``Secure`` with
    `https_only`, and is written only when the session changed; reading the
    session adds ``Vary: Cookie``. The data is signed, not encrypted: the
    client can read it.
    """

    def __init__(
        self,
        secret_key: str | Sequence[str],
        cookie_name: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        same_site: str = "lax",
        https_only: bool = False,
        path: str = "/",
        domain: str | None = None,
    ) -> None:
        keys = [secret_key] if isinstance(secret_key, str) else list(secret_key)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise ValueError("secret_key must be a non-empty str or a list of them")
        self.keys = [k.encode("utf-8") for k in keys]
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.same_site = same_site
        self.https_only = https_only
        self.path = path
        self.domain = domain

    def install(self, app: App) -> None:
        """Add this middleware's hooks to `app` (``app.add_middleware(...)`` calls it)."""
        if app._session_loader is not None:
            raise RuntimeError("the app has a Sessions middleware already")
        app._session_loader = self  # request.session loads on first use, in any hook
        app._add_hooks(after=Hook.inline(self.save))

    # -------------------------------------------------------------- cookie
    def encode(self, data: dict[str, Any], now: float | None = None) -> str:
        """The signed cookie value for `data`."""
        payload: dict[str, Any] = {"d": data}
        if self.max_age is not None:
            payload["e"] = int(now if now is not None else time.time()) + int(self.max_age)
        body = _b64(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return f"{body}.{self._sign(self.keys[0], body)}"

    def decode(self, value: str | None, now: float | None = None) -> dict[str, Any] | None:
        """The data of a cookie value, or None when it is missing, forged or expired."""
        if not value or len(value) > _MAX_COOKIE or not value.isascii():
            return None
        body, sep, signature = value.rpartition(".")
        if not sep:
            return None
        if not any(hmac.compare_digest(self._sign(key, body), signature) for key in self.keys):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("d"), dict):
            return None
        expires = payload.get("e")
        current = now if now is not None else time.time()
        if expires is not None and (not isinstance(expires, int) or expires < current):
            return None
        return payload["d"]  # type: ignore[no-any-return]

    @staticmethod
    def _sign(key: bytes, body: str) -> str:
        return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())

    # --------------------------------------------------------------- hooks
    def load(self, request: HTTPConnection) -> Session:
        """The session of `request`, from its cookie (empty when there is none valid)."""
        value = request.cookies.get(self.cookie_name)
        return Session(self.decode(value) or {}, had_cookie=value is not None)

    def save(self, request: Request, response: Response) -> None:
        """The after-hook: set (or delete) the cookie when the session changed."""
        session = request._session
        if not isinstance(session, Session):
            return  # never used: nothing to write, nothing to vary on
        response.headers.add_vary("Cookie")
        if not session.modified and (
            session.original is None or _canonical(session) == session.original
        ):
            return  # unchanged (values that could change in place are compared)
        if session:
            value = self.encode(dict(session))
            if len(value) > 4000:
                logger.warning("the session cookie is %d bytes: browsers may drop it", len(value))
            response.set_cookie(
                self.cookie_name,
                value,
                max_age=self.max_age,
                path=self.path,
                domain=self.domain,
                secure=self.https_only,
                httponly=True,
                samesite=self.same_site,
            )
        elif session.had_cookie:
            response.delete_cookie(self.cookie_name, path=self.path, domain=self.domain)
