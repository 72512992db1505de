"""Bundled middleware, added with ``app.add_middleware(obj)``.

Each is written once, on microweb's hook model (inline hooks: microweb's own
code that never blocks runs on whichever thread the request is on), so it
works the same under `app.wsgi` and `app.asgi`. The parameter names are
Starlette's.
"""

from .cors import CORS
from .gzip import GZip
from .sessions import Sessions
from .trustedhost import TrustedHost

__all__ = ["CORS", "GZip", "Sessions", "TrustedHost"]
