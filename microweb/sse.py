"""`EventSourceResponse`: Server-Sent Events from a sync or async iterable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .responses import HeadersArg, StreamingResponse

if TYPE_CHECKING:
    from .background import BackgroundTask

__all__ = ["EventSourceResponse", "format_event"]

Event = str | bytes | Mapping[str, Any]


def _field(name: str, value: Any) -> str:
    text = str(value)
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"an SSE {name} cannot hold CR, LF or NUL: {text!r}")
    return f"{name}: {text}\n"


def format_event(event: Event) -> bytes:
    """One event in the ``text/event-stream`` format.

    A str (or bytes) is the event's data; a mapping may have ``data`` (a str,
    else it is sent as JSON), ``event``, ``id``, ``retry`` (milliseconds) and
    ``comment``. Multi-line data becomes one ``data:`` line per line.
    """
    if isinstance(event, bytes):
        event = event.decode("utf-8")
    if isinstance(event, str):
        fields: Mapping[str, Any] = {"data": event}
    elif isinstance(event, Mapping):
        fields = event
        unknown = set(fields) - {"data", "event", "id", "retry", "comment"}
        if unknown:
            raise ValueError(f"unknown SSE field(s): {', '.join(sorted(unknown))}")
    else:
        raise TypeError(f"an SSE event is a str or a dict, not {type(event).__name__}")
    out: list[str] = []
    comment = fields.get("comment")
    if comment is not None:
        out.extend(f": {line}\n" for line in str(comment).splitlines() or [""])
    if fields.get("event") is not None:
        out.append(_field("event", fields["event"]))
    if fields.get("id") is not None:
        out.append(_field("id", fields["id"]))
    if fields.get("retry") is not None:
        retry = fields["retry"]
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"SSE retry must be a non-negative int (ms), not {retry!r}")
        out.append(f"retry: {retry}\n")
    if "data" in fields:
        data = fields["data"]
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        elif not isinstance(data, str):
            data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        # every line ending (CRLF, CR, LF) starts a new data line, as the parser reads it
        lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        out.extend(f"data: {line}\n" for line in lines)
    out.append("\n")
    return "".join(out).encode("utf-8")


class EventSourceResponse(StreamingResponse):
    """Server-Sent Events: each item of `events` is sent as it is produced.

    `events` is a sync or async iterable of str or dicts (see `format_event`).
    A comment line is sent after `ping` seconds without an event (None: never),
    so proxies keep the connection open. ``Cache-Control: no-cache`` and
    ``X-Accel-Buffering: no`` (for nginx) are set.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Iterable[Event] | AsyncIterable[Event],
        status: int = 200,
        headers: HeadersArg = None,
        ping: float | None = 15.0,
        background: BackgroundTask | None = None,
    ) -> None:
        if isinstance(events, AsyncIterable):
            content: Any = _format_async(events)
        elif isinstance(events, Iterable) and not isinstance(events, str | bytes | Mapping):
            content = _format_sync(events)
        else:
            raise TypeError("EventSourceResponse takes an iterable or async iterable of events")
        super().__init__(content, status, headers, background=background)
        self.headers.setdefault("cache-control", "no-cache")
        self.headers.setdefault("x-accel-buffering", "no")
        if ping is not None and ping <= 0:
            raise ValueError("ping must be a positive number of seconds, or None")
        self.keepalive = ping
        self.keepalive_chunk = b": ping\n\n"


def _format_sync(events: Iterable[Event]) -> Iterator[bytes]:
    it = iter(events)
    try:
        for event in it:
            yield format_event(event)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


async def _format_async(events: AsyncIterable[Event]) -> AsyncIterator[bytes]:
    it = events.__aiter__()
    try:
        async for event in it:
            yield format_event(event)
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
