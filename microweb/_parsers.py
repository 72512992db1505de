"""Parsers for the untrusted text of a request: query strings, cookies, header options.

Every parser here is linear in its input, never raises on malformed input
(except where a caller must turn the error into a 400), and imports no I/O.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "PLAIN_PATH",
    "decode_path",
    "encode_path",
    "encode_query",
    "origin_form",
    "parse_content_length",
    "parse_cookies",
    "parse_options_header",
    "parse_qsl",
    "quote_cookie",
    "quote_path",
    "strip_root_path",
]


def _decode_component(raw: str) -> str:
    """Form-decode one query component (``+`` is a space; bad escapes kept as typed)."""
    if "+" in raw:
        raw = raw.replace("+", " ")
    if "%" in raw or not raw.isascii():
        return unquote_to_bytes(raw.encode("latin-1", "replace")).decode("utf-8", "replace")
    return raw


def parse_qsl(qs: str, max_fields: int | None = None) -> list[tuple[str, str]]:
    """Parse a query string or urlencoded body into ``(key, value)`` pairs.

    `qs` is Latin-1 text as a WSGI server gives it (an ASGI query string decoded
    as Latin-1 is the same text). Only ``&`` separates pairs (``;`` does not:
    CVE-2021-23336); blank values are kept; a pair without ``=`` has the value
    ``""``. With `max_fields`, more pairs than that raise OverflowError.
    """
    out: list[tuple[str, str]] = []
    if not qs:
        return out
    if max_fields is None and "%" not in qs and "+" not in qs and qs.isascii():
        # nothing to decode (most query strings): the same pairs, at half the cost
        for pair in qs.split("&"):
            if pair:
                key, _, value = pair.partition("=")
                out.append((key, value))
        return out
    for pair in qs.split("&"):
        if not pair:
            continue
        if max_fields is not None and len(out) >= max_fields:
            raise OverflowError("too many fields")
        key, _, value = pair.partition("=")
        out.append((_decode_component(key), _decode_component(value)))
    return out


def _unquote_cookie(value: str) -> str:
    """Undo cookie quoting: ``"..."`` with backslash escapes and octal-escaped UTF-8 bytes."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    value = value[1:-1]
    if "\\" not in value:
        return value
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "\\" and i + 1 < n:
            octal = value[i + 1 : i + 4]
            if len(octal) == 3 and octal[0] in "0123" and all(ch in "01234567" for ch in octal):
                out.append(int(octal, 8))
                i += 4
                continue
            c = value[i + 1]
            i += 1
        out += c.encode("latin-1") if c <= "\xff" else c.encode("utf-8", "surrogatepass")
        i += 1
    return out.decode("utf-8", "replace")


#: RFC 6265 cookie-octet: what a cookie value may hold without quoting.
_COOKIE_OCTETS = frozenset(chr(c) for c in range(0x21, 0x7F) if chr(c) not in {'"', ",", ";", "\\"})


def quote_cookie(value: str) -> str:
    """Quote a cookie value that holds characters outside cookie-octet.

    Such values are sent as ``"..."`` with every other byte (of the UTF-8
    encoding) octal-escaped, which `parse_cookies` reverses.
    """
    if _COOKIE_OCTETS.issuperset(value):
        return value
    out = ['"']
    for ch in value:
        if ch in _COOKIE_OCTETS:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8", "surrogatepass"))
    out.append('"')
    return "".join(out)


def parse_cookies(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` header into a dict; the first cookie of a name wins.

    Never raises. A pair without a name (``=value`` or a bare ``value``) is
    skipped, so it can never shadow a named cookie (CVE-2023-23934).
    """
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        if name not in cookies:
            raw = value.strip()
            value = _unquote_cookie(raw)
            if value is raw and not value.isascii():  # raw UTF-8 bytes arrive as Latin-1 text
                try:
                    value = value.encode("latin-1").decode("utf-8")
                except UnicodeError:
                    pass
            cookies[name] = value
    return cookies


def parse_content_length(values: list[str]) -> int | None:
    """The declared body length from every ``Content-Length`` field, or None.

    Raises ValueError unless every field (and every comma-separated item in a
    field a server folded) is plain ASCII digits and all agree (RFC 9110 §8.6).
    """
    if len(values) == 1:
        field = values[0]
        if field.isdigit() and field.isascii() and len(field) <= 18:
            return int(field)  # the common case: one plain number
    found: int | None = None
    for field in values:
        if field != field.strip(" \t"):
            raise ValueError(f"invalid Content-Length {field!r}")
        for item in field.split(","):
            item = item.strip(" \t")
            if not item or not item.isascii() or not item.isdigit() or len(item) > 18:
                raise ValueError(f"invalid Content-Length {field!r}")
            n = int(item)
            if found is not None and n != found:
                raise ValueError("conflicting Content-Length values")
            found = n
    return found


def parse_options_header(value: str | None, strict: bool = False) -> tuple[str, dict[str, str]]:
    """Split ``text/html; charset="utf-8"`` into ``("text/html", {"charset": "utf-8"})``.

    The main value is lower-cased, as are parameter names; quoted parameter
    values keep their text; the first of two same-named parameters wins, or,
    with `strict`, raises ValueError (ambiguity fails closed). Linear scan, no
    regular expression.
    """
    if not value:
        return "", {}
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:  # each turn consumes rest[i:...] for good: linear
        semi = rest.find(";", i)
        end = n if semi < 0 else semi
        eq = rest.find("=", i, end)
        if eq < 0:  # a parameter without a value: skip it
            i = end + 1
            continue
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(rest[i])
                i += 1
            val = "".join(buf)
            semi = rest.find(";", i)
            i = n if semi < 0 else semi + 1
        else:
            val = rest[i:end].strip()
            i = end + 1
        if name in params:
            if strict:
                raise ValueError(f"parameter {name!r} given twice")
        elif name:
            params[name] = val
    return main.strip().lower(), params


#: Characters a raw path may hold as they are (RFC 3986 pchar and "/", no "%").
PLAIN_PATH = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
)
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def encode_path(text: str, keep_escapes: bool) -> str:
    """Percent-encode what must be encoded in a path (Latin-1 text of raw bytes).

    With `keep_escapes`, ``%XX`` sequences are left as they are (the text is a
    raw path); without, ``%`` itself is encoded (the text is a decoded path).
    """
    if PLAIN_PATH.issuperset(text):
        return text
    safe = _PATH_SAFE + "%" if keep_escapes else _PATH_SAFE
    return quote(text.encode("latin-1", "replace"), safe=safe)


def quote_path(text: str) -> str:
    """A decoded path (str, such as `request.root_path`) as it goes into a URL:
    percent-encoded as UTF-8 (``/my app`` -> ``/my%20app``)."""
    if PLAIN_PATH.issuperset(text):
        return text
    return quote(text, safe=_PATH_SAFE)


def origin_form(target: str) -> str | None:
    """The path of a request target (without its query): origin-form as it is,
    absolute-form (``http://host/path``) without scheme and authority; None for
    anything else (``@evil.com/x``, ``evil.com``, ``*``), which must not be routed
    nor put after a host in a URL (``http://host@evil.com/x``)."""
    if target.startswith("/"):
        return target
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        return "/" + rest.partition("/")[2]
    return None


def strip_root_path(raw: str, root_path: str) -> str | None:
    """The raw (percent-encoded) path `raw` without the mount prefix `root_path`
    (decoded), or None when `raw` is not under it.

    The prefix is compared segment by segment once decoded, never as raw text:
    servers give it encoded (``/my%20app/x``, hypercorn) or as typed
    (``/my app/x``, uvicorn), and either must match ``/my app``.
    """
    ours = root_path.rstrip("/").split("/")
    n = len(ours)
    theirs = raw.split("/", n)  # the prefix's segments, then the rest in one piece
    if len(theirs) < n:
        return None
    for mine, seg in zip(ours, theirs[:n], strict=True):
        if seg != mine and _decode_segment(seg) != mine:
            return None
    return "/" + theirs[n] if len(theirs) > n else "/"


def _decode_segment(raw: str) -> str:
    return unquote_to_bytes(raw.encode("latin-1", "replace")).decode("utf-8", "replace")


_QUERY_SAFE = "/?:@!$&'()*+,;=%-._~"
#: Characters a raw query string may hold as they are (no control, space or non-ASCII).
PLAIN_QUERY = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + _QUERY_SAFE
)


def encode_query(text: str) -> str:
    """A raw query string made safe for a ``Location``: anything odd percent-encoded."""
    if PLAIN_QUERY.issuperset(text):
        return text
    return quote(text.encode("latin-1", "replace"), safe=_QUERY_SAFE)


def decode_path(raw: str) -> tuple[str, list[str] | None]:
    """Decode a percent-encoded request path (Latin-1 text of the raw bytes).

    Returns the decoded path (UTF-8; bad bytes become U+FFFD, bad escapes stay
    as typed) and, when a segment held an encoded ``/`` (``%2F``), the list of
    decoded segments, since splitting the decoded path would cut it in two.
    """
    if "%" not in raw and raw.isascii():
        return raw, None
    segments = [
        _decode_segment(seg) if "%" in seg or not seg.isascii() else seg for seg in raw.split("/")
    ]
    path = "/".join(segments)
    if any("/" in seg for seg in segments):
        return path, segments
    return path, None
