"""Property tests: the parsers of untrusted text never raise and keep their invariants.

Each property says, in its comment, what breakage it catches; each was checked
by breaking the code on purpose. Hypothesis runs a bounded number of examples
(no deadline: the machine may be busy); the explicit ``@example``s pin the
cases that matter most.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl as stdlib_parse_qsl
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microweb._parsers import (
    decode_path,
    parse_content_length,
    parse_cookies,
    parse_options_header,
    parse_qsl,
    quote_cookie,
)
from microweb.datastructures import Headers, MutableHeaders

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Text as a server hands it over: the Latin-1 decoding of arbitrary bytes.
latin1 = st.text(st.characters(max_codepoint=0xFF))
#: Any text at all (surrogates excluded, as no decoder produces them).
anytext = st.text()


def syntax(chars: str, max_size: int = 40) -> st.SearchStrategy[str]:
    """Short strings dense in the characters a parser treats specially."""
    return st.text(st.sampled_from(chars), max_size=max_size)


# --------------------------------------------------------------------------
# parse_qsl
# --------------------------------------------------------------------------

QS_SYNTAX = "ab=&;+%2Ffz0 \x00é#?"


@SETTINGS
@given(st.one_of(anytext, latin1, syntax(QS_SYNTAX)))
def test_parse_qsl_never_raises(qs: str) -> None:
    # Catches: an exception on a bad escape or on text that is not Latin-1
    # (e.g. encode("latin-1") without "replace", or a strict UTF-8 decode), and
    # ";" used as a separator (more pairs than "&"-separated chunks).
    pairs = parse_qsl(qs)
    assert all(type(k) is str and type(v) is str for k, v in pairs)
    assert len(pairs) <= qs.count("&") + 1


@SETTINGS
@given(st.lists(st.tuples(anytext, anytext), max_size=8))
def test_parse_qsl_inverts_urlencode(pairs: list[tuple[str, str]]) -> None:
    # Catches: "+" not read as a space, "%2B" read as a space, blank values
    # dropped, a value cut at a second "=", a wrong charset for escapes.
    assert parse_qsl(urlencode(pairs)) == pairs


@SETTINGS
@given(syntax("ab=&;+%2FfZz0 \x00#?"))
@example("a=%zz&b=%&c=%4&d=%%41")
@example("a;b=1;c")
def test_parse_qsl_agrees_with_the_stdlib_on_ascii(qs: str) -> None:
    # The stdlib, told to keep blank values and to split on "&" only, is the
    # reference on ASCII input. Catches: invalid escapes not kept literally,
    # "a" without "=" dropped, ";" splitting, empty chunks kept as pairs.
    expected = stdlib_parse_qsl(qs, keep_blank_values=True, errors="replace", separator="&")
    assert parse_qsl(qs) == expected


@SETTINGS
@given(st.one_of(syntax("a=&"), anytext), st.integers(0, 12))
def test_parse_qsl_max_fields(qs: str, max_fields: int) -> None:
    # Catches an off-by-one in the limit (>= against >) and a limit that
    # counts empty chunks ("a=1&&&") as fields.
    count = len(parse_qsl(qs))
    if count > max_fields:
        with pytest.raises(OverflowError):
            parse_qsl(qs, max_fields=max_fields)
    else:
        assert len(parse_qsl(qs, max_fields=max_fields)) == count


# --------------------------------------------------------------------------
# Cookies
# --------------------------------------------------------------------------

COOKIE_SYNTAX = 'ab=; "\\\t,0137é€\x00\xff'


@SETTINGS
@given(st.one_of(anytext, latin1, syntax(COOKIE_SYNTAX, 60)))
@example('a="\\')
@example('a="\\"')
@example('a="\\777"')
@example('a="\\\u20ac"')
def test_parse_cookies_never_raises(header: str) -> None:
    # Catches: an exception out of the octal unquoting (int("8", 8), an index
    # past a trailing backslash, encode("latin-1") of a character above
    # U+00FF), and a nameless cookie stored under "".
    cookies = parse_cookies(header)
    for name, value in cookies.items():
        assert type(name) is str and type(value) is str
        assert name and name == name.strip()
        assert ";" not in name and "=" not in name


#: A chunk with no name: "=value", " = value", or a bare value.
nameless = st.one_of(
    st.builds(lambda ws, v: ws + "=" + v, syntax(" \t", 3), syntax('ab=" \\', 10)),
    syntax('ab" \\', 10),
)
cookie_octets = syntax("abcXYZ019!#$%&'()*+-./:<=>?@[]^_`{|}~", 20)


@SETTINGS
@given(st.lists(nameless, max_size=4), st.lists(nameless, max_size=4), cookie_octets)
@example(["=session=evil"], [], "good")
def test_a_nameless_cookie_never_shadows_a_named_one(
    before: list[str], after: list[str], value: str
) -> None:
    # CVE-2023-23934: "=session=evil" must not become session="evil". Catches:
    # nameless pairs kept under "" or split at the wrong "=".
    header = "; ".join([*before, f"session={value}", *after])
    cookies = parse_cookies(header)
    assert cookies.get("session") == value
    assert "" not in cookies


@SETTINGS
@given(cookie_octets, cookie_octets)
def test_the_first_cookie_of_a_name_wins(first: str, second: str) -> None:
    # Catches a later duplicate overwriting the first (a cookie-tossing vector).
    assert parse_cookies(f"k={first}; k={second}")["k"] == first


@SETTINGS
@given(st.one_of(anytext, latin1, syntax(COOKIE_SYNTAX)))
@example("\xc3\xa9")  # Latin-1 text that is also the UTF-8 bytes of "é"
@example("\\303\\251")
@example('"')
@example(" x ")
@example("")
def test_quote_cookie_round_trips_through_parse_cookies(value: str) -> None:
    # What Response.set_cookie sends comes back as request.cookies. Catches:
    # escapes not undone, quoting skipped for ";" or a space, and a value
    # decoded twice (an unquoted value re-read as UTF-8 bytes).
    assert parse_cookies("k=" + quote_cookie(value)) == {"k": value}


@SETTINGS
@given(st.one_of(anytext, syntax(COOKIE_SYNTAX)))
def test_quote_cookie_output_is_header_safe(value: str) -> None:
    # Catches an unescaped ";", ",", space or control character, which would
    # split the cookie or end the header.
    quoted = quote_cookie(value)
    assert quoted.isascii() and quoted.isprintable()
    assert not any(c in quoted for c in ";, ")


# --------------------------------------------------------------------------
# Content-Length
# --------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def reference_content_length(values: list[str]) -> int | None:
    """RFC 9110 §8.6, strictly: ASCII digits; a folded list of equal values; a
    field with whitespace at its ends (which servers strip) is refused."""
    found: int | None = None
    for field in values:
        if field != field.strip(" \t"):
            raise ValueError(field)
        for item in field.split(","):
            item = item.strip(" \t")
            if not _DIGITS.fullmatch(item) or len(item) > 18:
                raise ValueError(item)
            if found is not None and int(item) != found:
                raise ValueError(item)
            found = int(item)
    return found


length_fields = st.one_of(
    st.integers(0, 10**18).map(str),
    syntax("0123456789", 25),
    syntax("0123456789+-_ \t,.e\uff13\u0663\u00b3\x0b\xa0\n", 8),
    anytext,
)


@SETTINGS
@given(st.lists(length_fields, max_size=3))
@example(["+3"])
@example(["0_3"])
@example(["\uff13"])
@example(["-1"])
@example(["3\x0b"])
@example(["3", "3"])
@example(["3", "4"])
@example(["3,4"])
@example(["9" * 5000])
def test_parse_content_length_accepts_plain_ascii_digits_only(values: list[str]) -> None:
    # Only ValueError may escape (the adapters turn it into a 400). Catches
    # int()'s leniency coming back ("+3", "0_3", fullwidth 3, "-1", str.strip()
    # eating "\x0b"), disagreeing duplicates accepted, int() of 5,000 digits.
    try:
        expected: Any = reference_content_length(values)
    except ValueError:
        expected = ValueError
    try:
        got: Any = parse_content_length(values)
    except ValueError:
        got = ValueError
    assert got == expected


def test_parse_content_length_without_a_field() -> None:
    assert parse_content_length([]) is None


# --------------------------------------------------------------------------
# parse_options_header
# --------------------------------------------------------------------------

OPTION_SYNTAX = 'a/;="\\ \tCE'


@SETTINGS
@given(st.one_of(anytext, syntax(OPTION_SYNTAX, 60)))
@example('a; b="\\')
@example('a; b="c')
@example(";=")
def test_parse_options_header_never_raises(value: str) -> None:
    # Catches: an index error on a trailing backslash or an unterminated quote,
    # a scan that stops advancing (the test would hang), names not lower-cased.
    main, params = parse_options_header(value)
    assert main == main.strip().lower() and ";" not in main
    for name, param in params.items():
        assert type(param) is str
        assert name and name == name.strip().lower()
        assert ";" not in name and "=" not in name


token = st.text(st.sampled_from("abcxyzABC019-.+!#$&^_`|~"), min_size=1, max_size=8)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@SETTINGS
@given(
    token,
    token,
    st.dictionaries(token.map(str.lower), st.one_of(token, syntax('ab ;=,"\\', 12)), max_size=4),
)
def test_parse_options_header_round_trip(type_: str, subtype: str, params: dict[str, str]) -> None:
    # Catches: a ";" or "=" inside a quoted value splitting it, backslash escapes
    # not undone, parameter values lower-cased, a later duplicate winning.
    field = f"{type_}/{subtype}" + "".join(f"; {k}={_quoted(v)}" for k, v in params.items())
    assert parse_options_header(field) == (f"{type_}/{subtype}".lower(), params)
    if params:
        first = next(iter(params))
        assert parse_options_header(f"{field}; {first}=later")[1][first] == params[first]


# --------------------------------------------------------------------------
# decode_path
# --------------------------------------------------------------------------


@SETTINGS
@given(st.one_of(latin1, syntax("/a%2fF0ez\x00.\xff", 40)))
@example("/%2F")
@example("/a%2fb/%")
def test_decode_path_never_raises(raw: str) -> None:
    # Catches: a strict UTF-8 decode (bad bytes must become U+FFFD), segments
    # that do not put the path back together, a %2F lost or invented.
    path, segments = decode_path(raw)
    assert type(path) is str
    if "%" not in raw:
        assert segments is None
        if raw.isascii():
            assert path == raw
    if segments is not None:
        assert "/".join(segments) == path
        assert len(segments) == raw.count("/") + 1
        assert any("/" in s for s in segments)
    else:
        assert path.count("/") == raw.count("/")


@SETTINGS
@given(st.lists(anytext, min_size=1, max_size=5))
@example(["", "a/b"])
@example(["", "%41"])
def test_decode_path_inverts_quoting(segments: list[str]) -> None:
    # A client percent-encodes each segment (a "/" inside one as %2F): the
    # decoded path and, when a segment holds "/", the segments come back.
    # Catches splitting at a decoded %2F and double decoding ("%2541" → "A").
    raw = "/".join(quote(s, safe="") for s in segments)
    path, got = decode_path(raw)
    assert path == "/".join(segments)
    assert got == (segments if any("/" in s for s in segments) else None)


# --------------------------------------------------------------------------
# Headers and MutableHeaders
# --------------------------------------------------------------------------

header_names = st.one_of(token, syntax("Aa-_", 6).filter(bool))


@SETTINGS
@given(st.lists(st.tuples(header_names, latin1), max_size=8), header_names)
def test_headers_are_a_case_insensitive_multidict(
    fields: list[tuple[str, str]], probe: str
) -> None:
    # Catches a case-sensitive lookup, getall losing the order or a repeated
    # field, get not giving the first one.
    as_dict = dict(fields)
    for pairs, headers in (
        (fields, Headers(tuple(fields))),
        (fields, Headers(iter(fields))),
        (list(as_dict.items()), Headers(as_dict)),
    ):
        wanted = [v for k, v in pairs if k.lower() == probe.lower()]
        for key in (probe, probe.upper(), probe.lower()):
            assert headers.getall(key) == wanted
            assert headers.get(key) == (wanted[0] if wanted else None)
            assert (key in headers) == bool(wanted)
        assert len(headers) == len(pairs)
        assert headers.keys() == list(dict.fromkeys(k.lower() for k, _ in pairs))


def test_headers_from_a_list_are_case_insensitive_too() -> None:
    # Headers is public (microweb.datastructures): a list of pairs is the
    # obvious thing to pass, and must not skip the lower-casing the docstring
    # promises.
    headers = Headers([("Content-Type", "text/plain")])
    assert headers.get("content-type") == "text/plain"
    assert "content-type" in headers


def _is_token(name: str) -> bool:
    return bool(re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name))


def _is_safe_value(value: str) -> bool:
    # no C0 control character (CR, LF, NUL, tab...) nor DEL: what wsgiref's
    # validator and h11 refuse to send; and Latin-1
    return all(0x20 <= ord(c) <= 0xFF and c != "\x7f" for c in value)


@SETTINGS
@given(
    st.one_of(header_names, anytext, syntax("Ab-:\r\n \x00", 6)),
    st.one_of(latin1, anytext, syntax("ab\r\n\x00 \té€", 12)),
)
@example("X-A", "ok\r\nSet-Cookie: x=1")
@example("X-A", "a\x00b")
@example("X-A", "\u20ac")
@example("X-A\r\n", "1")
def test_mutable_headers_refuse_what_cannot_go_on_the_wire(name: str, value: str) -> None:
    # A name must be a token; a value must hold no control character and be
    # Latin-1 (what the adapters encode to). ValueError is the only error, at
    # set time, through every setter. Catches: dropping a check (e.g. NUL), a
    # non-Latin-1 value accepted that would crash the adapter at send time.
    good = _is_token(name) and _is_safe_value(value)
    setters: list[Callable[[MutableHeaders], object]] = [
        lambda h: h.__setitem__(name, value),
        lambda h: h.append(name, value),
        lambda h: h.setdefault(name, value),
        lambda h: h.update({name: value}),
        lambda h: MutableHeaders([(name, value)]),
    ]
    for setter in setters:
        headers = MutableHeaders({"x-other": "1"})
        if good:
            setter(headers)
        else:
            with pytest.raises(ValueError):
                setter(headers)
            assert headers.items() == [("x-other", "1")]
    if good:
        headers = MutableHeaders([("x-other", "1")])
        headers[name] = value
        assert headers.getall(name.upper()) == [value]
        for k, v in headers.items():
            k.encode("latin-1")
            v.encode("latin-1")


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(["X-A", "x-a", "X-B", "Set-Cookie"]), token), max_size=8),
    st.sampled_from(["x-a", "X-A", "set-cookie"]),
    token,
)
def test_mutable_headers_set_replaces_every_field_of_the_name(
    fields: list[tuple[str, str]], name: str, value: str
) -> None:
    # Catches a replacement that leaves a second field of the name behind (two
    # Location or Content-Type fields), or that disturbs the other fields.
    headers = MutableHeaders(fields)
    headers[name] = value
    assert headers.getall(name) == [value]
    others = [(k.lower(), v) for k, v in fields if k.lower() != name.lower()]
    assert [kv for kv in headers.items() if kv[0] != name.lower()] == others
