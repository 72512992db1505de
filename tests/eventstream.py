"""A small ``text/event-stream`` reader for the tests, written from the HTML spec.

It reads a response's chunks as they arrive and yields each block (the lines
up to a blank line) as soon as it is complete, with the fields a browser's
``EventSource`` would see: ``data`` (the data lines joined by LF), ``event``,
``id``, ``retry`` and the comment lines.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_LINE = re.compile(r"\r\n|\r|\n")


@dataclass
class Block:
    """A blank-line-terminated block: an event, or only comments (a ping)."""

    lines: list[tuple[str, str]]  # (field, value) in order; comments have the field ""
    at: float = field(default_factory=time.monotonic)  # when the block was complete
    wall: float = field(default_factory=time.time)  # the same moment, on the wall clock

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.lines if key == name]

    @property
    def comments(self) -> list[str]:
        return self.values("")

    @property
    def is_comment(self) -> bool:
        return all(key == "" for key, _ in self.lines)

    @property
    def data(self) -> str | None:
        """The event's data as ``MessageEvent.data`` (None without a data field)."""
        lines = self.values("data")
        return "\n".join(lines) if lines else None

    @property
    def event(self) -> str | None:
        values = self.values("event")
        return values[-1] if values else None

    @property
    def id(self) -> str | None:
        values = self.values("id")
        return values[-1] if values else None

    @property
    def retry(self) -> int | None:
        values = [v for v in self.values("retry") if v.isascii() and v.isdigit()]
        return int(values[-1]) if values else None


def _parse_line(line: str) -> tuple[str, str]:
    if line.startswith(":"):
        value = line[1:]
        return "", value[1:] if value.startswith(" ") else value
    name, colon, value = line.partition(":")
    if colon and value.startswith(" "):
        value = value[1:]
    return name, value


def blocks(chunks: Iterable[bytes]) -> Iterator[Block]:
    """Each block of the stream, as soon as its terminating blank line arrives."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    text = ""
    lines: list[tuple[str, str]] = []

    def complete_lines(final: bool) -> Iterator[str]:
        nonlocal text
        while match := _LINE.search(text):
            # a CR at the very end may be the first half of a CRLF: wait for more
            if not final and match.group() == "\r" and match.end() == len(text):
                return
            line, text = text[: match.start()], text[match.end() :]
            yield line

    for chunk in _with_end(chunks):
        text += decoder.decode(chunk or b"", final=chunk is None)
        for line in complete_lines(final=chunk is None):
            if line:
                lines.append(_parse_line(line))
            elif lines:
                yield Block(lines)
                lines = []
    # an unterminated block at the end of the stream is discarded, as browsers do


def _with_end(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


def events(chunks: Iterable[bytes]) -> list[Block]:
    """All the blocks of a finished stream."""
    return list(blocks(chunks))
