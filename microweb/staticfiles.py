"""Static files: `App.static(prefix, directory)` serves the files under a directory.

Only files under the directory are reachable: a request path is split into
names, and a name that is empty, ``.``, ``..``, a dotfile, or holds a
backslash, NUL or ``:`` is refused before the file system is touched; the
resolved path (symlinks followed) must still lie under the directory. No
directory listings; with ``html=True`` a directory serves its ``index.html``
(``/dir`` redirects to ``/dir/``) and a missing file a ``404.html`` if there
is one. Everything refused is a plain 404.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from ._parsers import encode_query, quote_path
from .exceptions import HTTPException
from .files import FileResponse
from .responses import RedirectResponse, Response

if TYPE_CHECKING:
    from .requests import Request

__all__ = ["StaticFiles"]

_MAX_PATH = 1024  # bytes of a request path below the prefix
_MAX_NAME = 255  # bytes of one name (most file systems)


class StaticFiles:
    """Serves the files under `directory` (the handlers behind `App.static`)."""

    def __init__(self, directory: str | os.PathLike[str], html: bool = False) -> None:
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise ValueError(f"static directory does not exist: {os.fspath(directory)!r}")
        self.root = root
        self.html = html

    def _resolve(self, path: str) -> tuple[str, os.stat_result] | None:
        """The real path and stat of `path` below the root, or None when refused."""
        if len(path.encode("utf-8", "surrogatepass")) > _MAX_PATH:
            return None
        names = path.split("/")
        if names and names[-1] == "":
            names.pop()  # a trailing slash
        for name in names:
            if (
                not name
                or name.startswith(".")
                or "\\" in name
                or "\0" in name
                or ":" in name
                or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME
            ):
                return None
        real = os.path.realpath(os.path.join(self.root, *names))
        if real != self.root and not real.startswith(self.root + os.sep):
            return None  # a symlink out of the directory
        try:
            return real, os.stat(real)
        except (OSError, ValueError):
            return None

    def serve(self, request: Request, path: str = "") -> Response:
        """The file at `path` below the root (the ``{prefix}/{path:path}`` route)."""
        found = self._resolve(path)
        if found is not None:
            real, st = found
            if stat.S_ISREG(st.st_mode) and not path.endswith("/"):
                return FileResponse(real, stat_result=st)
            if stat.S_ISDIR(st.st_mode) and self.html:
                if not request.path.endswith("/"):
                    location = quote_path(request.root_path) + request.raw_path + "/"
                    if request.query_string:
                        location += "?" + encode_query(request.query_string)
                    return RedirectResponse(location, 308)
                index = self._resolve(f"{path.rstrip('/')}/index.html" if path else "index.html")
                if index is not None and stat.S_ISREG(index[1].st_mode):
                    return FileResponse(index[0], stat_result=index[1])
        return self._not_found()

    def index(self, request: Request) -> Response:
        """The directory itself (the ``{prefix}/`` route)."""
        return self.serve(request, "")

    def bare(self, request: Request) -> Response:
        """The prefix without its slash: to ``{prefix}/`` when directories are served."""
        if self.html:
            location = quote_path(request.root_path) + request.raw_path + "/"
            return RedirectResponse(location, 308)
        return self._not_found()

    def _not_found(self) -> Response:
        if self.html:
            page = self._resolve("404.html")
            if page is not None and stat.S_ISREG(page[1].st_mode):
                return FileResponse(page[0], status=404, stat_result=page[1])
        raise HTTPException(404)
