"""`FileResponse`: a file from disk, with validators, conditional requests and ranges.

The file is read in chunks as it is sent (memory stays flat for any size);
under WSGI a full-file answer goes through the server's ``wsgi.file_wrapper``
when it offers one. Conditional requests follow RFC 9110 §13.2.2 (If-None-Match,
then If-Modified-Since) and `Range` §14: one range gets a 206 with
Content-Range; several non-overlapping ones (at most `MAX_RANGES`) a
``multipart/byteranges`` 206; overlapping ones the whole file (200); more
than `MAX_RANGES`, or none satisfiable, a 416. A syntactically invalid Range
header is ignored (200). Every parser here is linear in its input.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import os
import secrets
import stat
import unicodedata
from collections.abc import Iterator, Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .responses import Response

if TYPE_CHECKING:
    from .background import BackgroundTask
    from .requests import HTTPConnection

__all__ = ["MAX_RANGES", "FileResponse", "content_disposition", "parse_range"]

#: The most ranges one request may ask for; more get a 416.
MAX_RANGES = 10
CHUNK_SIZE = 64 * 1024
_MAX_DIGITS = 19  # larger than any file; int() of longer digit strings is never run
#: What a 304 leaves out. Not Content-Location, which §15.4.5 keeps, nor the
#: validators (ETag, Last-Modified) that guide the cache's update; and not
#: Accept-Ranges: it says the resource takes ranges (RFC 9110 §14.3), not what
#: this representation is, and a cache refreshing its 200 from the 304 keeps
#: a value that agrees with it.
_REPRESENTATION_METADATA = frozenset(
    {
        "content-type",
        "content-length",
        "content-range",
        "content-encoding",
        "content-language",
        "content-disposition",
    }
)


def parse_range(header: str, size: int) -> list[tuple[int, int]] | int | None:
    """Parse a ``Range`` header against a file of `size` bytes.

    Returns the satisfiable ranges as inclusive ``(first, last)`` pairs; None
    when the header is to be ignored (not ``bytes=``, malformed: RFC 9110
    says a server may ignore it); 416 (the int) when no range is satisfiable
    or more than `MAX_RANGES` are asked for.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",", MAX_RANGES)  # bounded: never splits a huge header fully
    if len(parts) > MAX_RANGES:
        return 416
    ranges: list[tuple[int, int]] = []
    for part in parts:
        first_s, dash, last_s = part.strip(" \t").partition("-")
        if not dash or not _digits(first_s, allow_empty=True) or not _digits(last_s, True):
            return None
        if not first_s:  # suffix range: the last N bytes
            if not last_s:
                return None
            n = int(last_s)
            if n == 0 or size == 0:
                continue
            ranges.append((max(0, size - n), size - 1))
            continue
        first = int(first_s)
        if last_s and int(last_s) < first:
            return None  # "5-2": not a range at all
        if first >= size:
            continue  # unsatisfiable: starts past the end
        last = int(last_s) if last_s else size - 1
        ranges.append((first, min(last, size - 1)))
    return ranges or 416


def _digits(text: str, allow_empty: bool) -> bool:
    if not text:
        return allow_empty
    return text.isdigit() and text.isascii() and len(text) <= _MAX_DIGITS


def _overlap(ranges: list[tuple[int, int]]) -> bool:
    ordered = sorted(ranges)
    return any(a[1] >= b[0] for a, b in itertools.pairwise(ordered))


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment; filename="..."`` with an ASCII fallback and RFC 5987 ``filename*``."""
    fallback = "".join(
        c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_"
        for c in unicodedata.normalize("NFKD", filename)
        if not unicodedata.combining(c)  # "é" -> "e", not "_"
    )
    value = f'{disposition}; filename="{fallback or "download"}"'
    if fallback != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe="!#$&+-.^_`|~")
    return value


def _http_date(text: str | None) -> float | None:
    """A timestamp from an HTTP date, or None (garbage is ignored, never raised)."""
    if not text or len(text) > 64:
        return None
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_matches(header: str, etag: str, weak: bool) -> bool:
    """Whether `etag` is in an If-None-Match / If-Range list (weak or strong compare)."""
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            if not weak:
                continue
            candidate = candidate[2:]
        if candidate == ours:
            return True
    return False


class FileResponse(Response):
    """The file at `path`, streamed; `filename` makes it a download.

    Sets Content-Type (from `media_type`, else guessed from the name),
    Content-Length, Last-Modified, a strong ETag and ``Accept-Ranges: bytes``;
    answers ``Range``, ``If-Range``, ``If-None-Match`` and ``If-Modified-Since``.
    Raises FileNotFoundError (or IsADirectoryError) at once when `path` is not
    a readable regular file.
    """

    chunk_size = CHUNK_SIZE

    def __init__(
        self,
        path: str | os.PathLike[str],
        filename: str | None = None,
        media_type: str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        *,
        stat_result: os.stat_result | None = None,
    ) -> None:
        self.path = os.fspath(path)
        st = stat_result if stat_result is not None else os.stat(self.path)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"not a regular file: {self.path!r}")
        if media_type is None:
            guessed, encoding = mimetypes.guess_type(filename or self.path)
            media_type = guessed if guessed and not encoding else "application/octet-stream"
        super().__init__(b"", status, headers, media_type, background)
        self.size = st.st_size
        self.mtime = st.st_mtime
        tag = f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}".encode()
        self.etag = '"' + hashlib.md5(tag, usedforsecurity=False).hexdigest() + '"'
        h = self.headers
        h.setdefault("last-modified", formatdate(st.st_mtime, usegmt=True))
        h.setdefault("etag", self.etag)
        h.setdefault("accept-ranges", "bytes")
        if filename is not None:
            h.setdefault("content-disposition", content_disposition(filename))
        #: What is sent: (first, last) ranges of the file, None for all of it.
        self.ranges: list[tuple[int, int]] | None = None
        self._boundary: str | None = None
        self._part_type = ""
        self.stream = self._chunks()

    # ------------------------------------------------------------ preparing
    def _finalize(self, request: HTTPConnection) -> None:
        """Answer the request's conditional and range headers (called before sending)."""
        if self.status != 200 or request.method not in ("GET", "HEAD"):
            self._set_length(self.size)
            return
        headers = request.headers
        inm = headers.get("if-none-match")
        if inm is not None:
            if _etag_matches(inm, self.etag, weak=True):
                return self._not_modified()
        else:
            since = _http_date(headers.get("if-modified-since"))
            if since is not None and int(self.mtime) <= since:
                return self._not_modified()
        range_header = headers.get("range")
        if range_header is None or request.method != "GET" or not self._if_range(headers):
            self._set_length(self.size)
            return
        ranges = parse_range(range_header, self.size)
        if ranges is None or (isinstance(ranges, list) and _overlap(ranges)):
            self._set_length(self.size)
            return
        if isinstance(ranges, int):
            self.status = 416
            self.headers["content-range"] = f"bytes */{self.size}"
            self.stream = None
            self.body = b""
            self._set_length(0)
            return
        self.status = 206
        self.ranges = ranges
        if len(ranges) == 1:
            first, last = ranges[0]
            self.headers["content-range"] = f"bytes {first}-{last}/{self.size}"
            self._set_length(last - first + 1)
            return
        self._boundary = secrets.token_hex(16)
        part_type = self.headers.get("content-type") or "application/octet-stream"
        self.headers["content-type"] = f"multipart/byteranges; boundary={self._boundary}"
        self._part_type = part_type
        parts = sum(len(head) + (b - a + 1) + 2 for head, (a, b) in self._part_heads())
        self._set_length(parts + len(self._closing()))

    def _if_range(self, headers: Any) -> bool:
        """Whether If-Range (if any) still names this file (strong compare)."""
        value = headers.get("if-range")
        if value is None:
            return True
        value = value.strip()
        if value.startswith('"') or value.startswith("W/"):
            return _etag_matches(value, self.etag, weak=False)
        date = _http_date(value)
        return date is not None and int(self.mtime) == int(date)

    def _not_modified(self) -> None:
        self.status = 304
        self.stream = None
        self.body = b""
        # RFC 9110 §15.4.5: a 304 drops the representation's metadata (the
        # client's cached copy describes its body) and keeps every other field,
        # such as the Set-Cookie of a session, X-Request-Id or CORS headers set
        # by the handler, its hooks or middleware.
        drop = _REPRESENTATION_METADATA
        fields = self.headers._list
        fields[:] = [kv for kv in fields if kv[0] not in drop]

    def _set_length(self, length: int) -> None:
        self.headers["content-length"] = str(length)

    def _part_heads(self) -> list[tuple[bytes, tuple[int, int]]]:
        assert self.ranges is not None and self._boundary is not None
        return [
            (
                (
                    f"--{self._boundary}\r\nContent-Type: {self._part_type}\r\n"
                    f"Content-Range: bytes {a}-{b}/{self.size}\r\n\r\n"
                ).encode("latin-1"),
                (a, b),
            )
            for a, b in self.ranges
        ]

    def _closing(self) -> bytes:
        return f"--{self._boundary}--\r\n".encode("latin-1")

    # --------------------------------------------------------------- sending
    def _chunks(self) -> Iterator[bytes]:
        """The body, read as it is sent (the file is opened only if it is)."""
        with open(self.path, "rb") as f:
            if self.ranges is None:
                yield from _read(f, 0, self.size, self.chunk_size)
            elif self._boundary is None:
                first, last = self.ranges[0]
                yield from _read(f, first, last - first + 1, self.chunk_size)
            else:
                for head, (first, last) in self._part_heads():
                    yield head
                    yield from _read(f, first, last - first + 1, self.chunk_size)
                    yield b"\r\n"
                yield self._closing()

    @property
    def whole_file(self) -> bool:
        """True when the body is the whole file (what ``wsgi.file_wrapper`` can send)."""
        return self.status == 200 and self.ranges is None


def _read(f: Any, offset: int, length: int, chunk: int) -> Iterator[bytes]:
    f.seek(offset)
    while length > 0:
        data = f.read(min(chunk, length))
        if not data:  # the file shrank while being sent: stop short
            return
        length -= len(data)
        yield data
