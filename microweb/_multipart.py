"""Streaming multipart/form-data, driven chunk by chunk through `PushMultipartParser`.

The reader is fed the body as it arrives (from ``wsgi.input`` or ASGI
``receive``), so memory holds at most one chunk, the text fields and the
in-memory head of each file: file parts spool to a temporary file beyond
`SPOOL_THRESHOLD`. Every limit of the app applies while streaming (413); a
malformed stream, a bad boundary, undecodable text or an unknown charset
is a 400. In async code, writes that reach the disk are batched and handed
to the channel's `offload` (a worker thread), so the event loop never
blocks on the file system.
"""

from __future__ import annotations

import codecs
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import multipart  # type: ignore[import-untyped]

from ._parsers import parse_options_header
from .datastructures import FormData, Headers, UploadFile
from .exceptions import HTTPException

if TYPE_CHECKING:
    from .requests import Request

__all__ = ["SPOOL_THRESHOLD", "MultipartReader", "parse_boundary"]

#: A file part stays in memory up to this size, then moves to a temporary file.
SPOOL_THRESHOLD = 512 * 1024
#: Under ASGI, file data is written to disk in batches of this size.
_WRITE_BATCH = 256 * 1024
#: RFC 2046: a boundary is 1 to 70 of these characters, not ending in a space.
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_MAX_PART_HEADER = 8 * 1024
_MAX_EPILOGUE = 1024
_MAX_PREAMBLE = 1024
#: The parser's "end of stream reached" state (looked up defensively: private).
_COMPLETE = getattr(multipart, "_COMPLETE", object())


def parse_boundary(content_type: str | None) -> str:
    """The boundary of a multipart Content-Type; HTTPException(400) when it is bad."""
    if not content_type:
        raise HTTPException(400, "Missing multipart boundary")
    try:
        _, params = parse_options_header(content_type, strict=True)
    except ValueError:
        raise HTTPException(400, "Duplicate multipart boundary") from None
    boundary = params.get("boundary")
    if not boundary:
        raise HTTPException(400, "Missing multipart boundary")
    if len(boundary) > 70 or boundary.endswith(" ") or not _BCHARS.issuperset(boundary):
        raise HTTPException(400, "Invalid multipart boundary")
    return boundary


def _filename_star(value: str) -> str:
    """Decode an RFC 5987 ``filename*`` value: ``charset'lang'percent-encoded``."""
    charset, sep, rest = value.partition("'")
    _, sep2, encoded = rest.partition("'")
    if not sep or not sep2:  # malformed: never silently a text field instead of a file
        raise HTTPException(400, "Invalid filename* in a multipart part")
    try:
        return unquote_to_bytes(encoded).decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        raise HTTPException(400, "Invalid filename* in a multipart part") from None


class _Part:
    __slots__ = (
        "charset",
        "content_type",
        "file",
        "filename",
        "headers",
        "lead",
        "name",
        "size",
        "text",
    )

    def __init__(self, segment: multipart.MultipartSegment, is_file: bool) -> None:
        self.name: str = segment.name or ""
        self.content_type: str | None = segment.header("Content-Type")
        self.charset: str | None = segment.charset
        self.headers = Headers([(k.lower(), v) for k, v in segment.headerlist])
        self.filename: str | None = None
        self.file: IO[bytes] | None = UploadFile.spooled(SPOOL_THRESHOLD) if is_file else None
        self.text: list[bytes] | None = None if is_file else []
        self.size = 0
        #: The body's last bytes (see MultipartReader._check_lead).
        self.lead = b"\n"


class MultipartReader:
    """Parses one multipart body fed in chunks into `FormData`."""

    def __init__(self, request: Request) -> None:
        app = request.app
        boundary = parse_boundary(request.content_type)
        #: Runs a blocking call off the event loop (the protocol adapter decides how).
        self.offload = request._channel.offload
        self.max_fields = app.max_form_fields
        self.max_files = app.max_form_files
        self.max_field_size = app.max_form_field_size
        declared = request.content_length
        try:
            self.parser = multipart.PushMultipartParser(
                boundary,
                content_length=-1 if declared is None else declared,
                max_header_size=_MAX_PART_HEADER,
                max_header_count=8,
                max_segment_count=self.max_fields + self.max_files,
                strict=True,
            )
        except multipart.MultipartError:
            raise HTTPException(400, "Invalid multipart boundary") from None
        self.items: list[tuple[str, str | UploadFile]] = []
        self.files: list[IO[bytes]] = []
        self.part: _Part | None = None
        self.n_fields = 0
        self.n_files = 0
        self.delimiter = b"--" + boundary.encode("latin-1")
        self.head: bytes | None = b""  # the body's start, until the first delimiter
        self.complete = False  # the closing delimiter has been parsed
        self.epilogue = 0
        self.pending: list[bytes] = []  # async: file data not yet written
        self.pending_size = 0
        self.spooled_size = 0

    # ------------------------------------------------------------- feeding
    def feed(self, chunk: bytes) -> None:
        """Parse `chunk`, writing file data at once (for threads that may block)."""
        for event in self._parse(chunk):
            data = self._handle(event)
            if data:
                self._write_file(data)

    async def feed_async(self, chunk: bytes) -> None:
        """Parse `chunk` on an event loop; writes that reach the disk go to a thread."""
        for event in self._parse(chunk):
            if event is None and self.pending:
                await self._flush_async()
            data = self._handle(event)
            if data:
                self.pending.append(data)
                self.pending_size += len(data)
                if self.pending_size >= _WRITE_BATCH:
                    await self._flush_async()

    async def _flush_async(self) -> None:
        data = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        if self.spooled_size + len(data) <= SPOOL_THRESHOLD:
            self._write_file(data)  # stays in memory: cheap
        else:
            await self.offload(self._write_file, data)

    def finish(self) -> FormData:
        """End of the body: check the stream is complete and return the form."""
        self.complete = False
        for event in self._parse(b""):
            self._handle(event)
        if not self.parser.closed or self.part is not None:
            raise HTTPException(400, "Incomplete multipart body")
        for f in self.files:
            f.seek(0)
        return FormData(self.items)

    def abort(self) -> None:
        """Close (and so delete) every temporary file: on an error."""
        for f in self.files:
            f.close()
        self.files = []

    # ------------------------------------------------------------ internals
    def _parse(self, chunk: bytes) -> list[Any]:
        if self.head is not None:
            # Before the first delimiter: the strict parser takes a preamble only
            # in the first chunk it sees, so the body's start is gathered until
            # the delimiter shows (a preamble is allowed up to _MAX_PREAMBLE,
            # however the network cut the body), then fed at once.
            self.head += chunk
            found = self.head.find(self.delimiter)
            if found < 0:
                if len(self.head) > _MAX_PREAMBLE + len(self.delimiter) or not chunk:
                    raise HTTPException(400, "Malformed multipart body: no boundary")
                return []
            if found > _MAX_PREAMBLE:
                raise HTTPException(400, "Too much data before the multipart body")
            chunk, self.head = self.head, None
        if self.complete:
            # after the closing delimiter (not fed to the strict parser, which
            # refuses data in a later chunk but ignores it in the same one)
            self._epilogue(len(chunk))
            return []
        try:
            events = list(self.parser.parse(chunk))
            if chunk and getattr(self.parser, "_state", None) is _COMPLETE:
                self.complete = True  # what this chunk held past the end:
                self._epilogue(len(getattr(self.parser, "_buffer", b"")))
            return events
        except multipart.ParserLimitReached:
            raise HTTPException(413, "Multipart limits exceeded") from None
        except multipart.MultipartError:
            raise HTTPException(400, "Malformed multipart body") from None

    def _epilogue(self, size: int) -> None:
        """RFC 2046 allows text after the closing delimiter: a little, not a flood."""
        self.epilogue += size
        if self.epilogue > _MAX_EPILOGUE:
            raise HTTPException(400, "Too much data after the end of the multipart body")

    def _handle(self, event: Any) -> bytes | None:
        """Account for one parser event; return file data to be written."""
        if event is None:
            self._end_part()
            return None
        if isinstance(event, bytes | bytearray):
            part = self.part
            assert part is not None
            self._check_lead(part, event)
            part.size += len(event)
            if part.text is None:
                return bytes(event)
            if part.size > self.max_field_size:
                raise HTTPException(413, "A form field is too large")
            part.text.append(bytes(event))
            return None
        self._start_part(event)
        return None

    def _check_lead(self, part: _Part, data: bytes | bytearray) -> None:
        """Refuse a part whose body holds the delimiter after a bare CR or LF.

        The strict parser ends a part only at CRLF + delimiter; Werkzeug also
        at LF or CR + delimiter, and at a delimiter right after the part's
        headers (``name="a"\r\n\r\n--B\r\n...``). Read by the first, the
        next part's headers are this part's body; by the second, a field the
        first never saw. Two readings of one body are how a field gets past
        one parser into another: 400. `part.lead` keeps the last bytes seen
        (at first b"\n", the end of the headers) for a delimiter cut in two.
        """
        delimiter = self.delimiter
        n = len(delimiter)
        lead = part.lead or b""
        seam = lead + bytes(data[:n])
        found = b"\n" + delimiter in seam or b"\r" + delimiter in seam
        i = data.find(delimiter, 1)
        while i >= 0 and not found:
            found = data[i - 1] in (10, 13)  # LF, CR
            i = data.find(delimiter, i + 1)
        if found:
            raise HTTPException(400, "A multipart delimiter after a bare CR or LF in a part")
        part.lead = bytes(data[-n:]) if len(data) >= n else (lead + bytes(data))[-n:]

    def _start_part(self, segment: multipart.MultipartSegment) -> None:
        dispositions = [v for k, v in segment.headerlist if k == "Content-Disposition"]
        if len(dispositions) != 1:
            raise HTTPException(400, "A multipart part needs one Content-Disposition")
        try:  # a name or filename given twice is ambiguous: refused
            kind, params = parse_options_header(dispositions[0], strict=True)
        except ValueError:
            raise HTTPException(400, "Ambiguous Content-Disposition in a part") from None
        if kind != "form-data" or "name" not in params:
            raise HTTPException(400, "A multipart part lacks a form-data name")
        filename = segment.filename
        if "filename*" in params:
            filename = _filename_star(params["filename*"])
        is_file = filename is not None
        if is_file:
            self.n_files += 1
            if self.n_files > self.max_files:
                raise HTTPException(413, "Too many files in the form")
        else:
            self.n_fields += 1
            if self.n_fields > self.max_fields:
                raise HTTPException(413, "Too many form fields")
        part = _Part(segment, is_file)
        part.filename = filename
        if part.file is not None:
            self.files.append(part.file)
        self.part = part
        self.spooled_size = 0

    def _write_file(self, data: bytes) -> None:
        part = self.part
        if not data:
            return
        assert part is not None and part.file is not None
        part.file.write(data)
        self.spooled_size += len(data)

    def _end_part(self) -> None:
        part = self.part
        assert part is not None
        self.part = None
        if part.text is not None:
            charset = part.charset or "utf-8"
            try:
                codecs.lookup(charset)
                value: Any = b"".join(part.text).decode(charset)
            except LookupError:
                raise HTTPException(400, f"Unknown charset {charset!r} in a form field") from None
            except UnicodeDecodeError:
                raise HTTPException(400, f"A form field is not valid {charset}") from None
            self.items.append((part.name, value))
        else:
            assert part.file is not None
            upload = UploadFile(
                part.file,
                name=part.name,
                filename=part.filename,
                content_type=part.content_type,
                headers=part.headers,
                size=part.size,
            )
            self.items.append((part.name, upload))
