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
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
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


class Parser:
    """The incremental reader: `feed` it each chunk, then None at the end of the stream."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._lines: list[tuple[str, str]] = []

    def feed(self, chunk: bytes | None) -> list[Block]:
        """The blocks `chunk` completes (None: the end; an unterminated block is dropped)."""
        final = chunk is None
        self._text += self._decoder.decode(chunk or b"", final=final)
        done: list[Block] = []
        while match := _LINE.search(self._text):
            # a CR at the very end may be the first half of a CRLF: wait for more
            if not final and match.group() == "\r" and match.end() == len(self._text):
                break
            line, self._text = self._text[: match.start()], self._text[match.end() :]
            if line:
                self._lines.append(_parse_line(line))
            elif self._lines:
                done.append(Block(self._lines))
                self._lines = []
        # an unterminated block at the end of the stream is discarded, as browsers do
        return done


def blocks(chunks: Iterable[bytes]) -> Iterator[Block]:
    """Each block of the stream, as soon as its terminating blank line arrives."""
    parser = Parser()
    for chunk in _with_end(chunks):
        yield from parser.feed(chunk)


async def ablocks(chunks: AsyncIterable[bytes]) -> AsyncIterator[Block]:
    """`blocks` of an async stream (httpx's ``response.aiter_raw()``)."""
    parser = Parser()
    async for chunk in chunks:
        for block in parser.feed(chunk):
            yield block
    for block in parser.feed(None):
        yield block


def _with_end(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


def events(chunks: Iterable[bytes]) -> list[Block]:
    """All the blocks of a finished stream."""
    return list(blocks(chunks))
