"""Bad input gets a 4xx or a well-formed answer: never a 5xx, a crash or a leak.

The invariants are those of SECURITY.md, tested at three levels:

* through the `TestClient` under both protocols (`make_client`);
* raw: WSGI environs built by hand the way servers build them (gunicorn passes
  the raw target as ``RAW_URI``; wsgiref passes only the decoded ``PATH_INFO``
  and ``CONTENT_LENGTH=''``), run inside ``wsgiref.validate.validator``, and
  ASGI scopes with hand-made messages -- since httpx normalises ``../``,
  refuses some bytes and treats ``//evil.com`` as a host;
* differential: the same raw request through `app.wsgi` and `app.asgi` gives
  the same status and the same parsed values (invariant 6).

Multipart, Range, static files and WebSockets are tested with their features.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit
from wsgiref.validate import validator

import pytest

from microweb import (
    App,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    RedirectResponse,
    Request,
    Response,
    StreamingResponse,
)
from microweb.datastructures import MutableHeaders

from .conftest import MakeClient

GENERIC_500 = b'{"detail":"Internal Server Error"}'

# --------------------------------------------------------------------------
# Raw requests: one description, sent as a WSGI server or an ASGI server would
# --------------------------------------------------------------------------


@dataclass
class RawRequest:
    """A request as it comes off the wire: target and header bytes as sent."""

    target: bytes = b"/"
    method: str = "GET"
    headers: Sequence[tuple[bytes, bytes]] = ()
    #: The body as the server receives it, chunk by chunk. No Content-Length is
    #: added: give one in `headers` (without one, the body is "chunked").
    body: Sequence[bytes] = ()


@dataclass
class Raw:
    """A response as the server got it from the app."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: ASGI: how many of the request's messages the app asked for with ``receive()``.
    received: int = 0

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


#: How a raw request reaches the app: an ASGI server, a WSGI server that passes
#: the raw target (gunicorn's RAW_URI), one that passes only PATH_INFO (wsgiref).
VIA = ("asgi", "wsgi-gunicorn", "wsgi-wsgiref")


@pytest.fixture(params=VIA)
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _has_header(req: RawRequest, name: bytes) -> bool:
    return any(k.lower() == name for k, _ in req.headers)


def wsgi_environ(req: RawRequest, *, raw_uri: bool = True, stream: Any = None) -> dict[str, Any]:
    """The environ a WSGI server builds for `req` (PEP 3333: latin-1 text of the bytes)."""
    path, _, query = req.target.partition(b"?")
    body = b"".join(req.body)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "CONTENT_LENGTH": "",  # wsgiref's way of saying "none"
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if raw_uri:
        environ["RAW_URI"] = req.target.decode("latin-1")
    if req.body and not _has_header(req, b"content-length"):
        environ["wsgi.input_terminated"] = True  # a chunked body (gunicorn, waitress)
    if not _has_header(req, b"host"):
        environ["HTTP_HOST"] = "testserver"
    for name, value in req.headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        # servers fold repeated fields into one, comma-separated
        environ[key] = f"{environ[key]},{text}" if environ.get(key) else text
    return environ


def _validator_accepts(environ: dict[str, Any]) -> bool:
    # wsgiref.validate asserts int(CONTENT_LENGTH) >= 0 and a PATH_INFO that
    # starts with "/" before calling the app: checks on the server, which
    # wsgiref's own server and waitress do not make. Such an environ goes to
    # the bare app (which must still refuse it with a 400).
    path_info = environ.get("PATH_INFO")
    if path_info and not path_info.startswith("/"):
        return False
    length = environ.get("CONTENT_LENGTH")
    if not length:
        return True
    try:
        return int(length) >= 0
    except ValueError:
        return False


def run_wsgi(app: App, environ: dict[str, Any]) -> Raw:
    entry = validator(app.wsgi) if _validator_accepts(environ) else app.wsgi
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = headers
        return lambda data: None

    result = entry(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Raw(captured["status"], list(captured["headers"]), body)


def asgi_scope(req: RawRequest) -> dict[str, Any]:
    """The scope an ASGI server builds for `req`."""
    path, _, query = req.target.partition(b"?")
    headers = [(k.lower(), v) for k, v in req.headers]
    if not _has_header(req, b"host"):
        headers.insert(0, (b"host", b"testserver"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": unquote_to_bytes(path).decode("utf-8", "replace"),
        "raw_path": path,
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
        "extensions": {},
    }


def run_asgi(app: App, req: RawRequest, *, disconnect: bool = False) -> Raw:
    """Run `req` through ``app.asgi``; `disconnect`: the client leaves after its last chunk."""
    chunks = list(req.body) or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": disconnect or i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received < len(messages):
            received += 1
            return messages[received - 1]
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app.asgi(asgi_scope(req), receive, send))
    # ASGI 3 HTTP: one response start, then body messages, the last one final
    assert sent, "the app sent nothing"
    assert sent[0]["type"] == "http.response.start", sent[0]
    bodies = sent[1:]
    assert bodies and all(m["type"] == "http.response.body" for m in bodies), sent
    assert all(m.get("more_body") for m in bodies[:-1]), sent
    assert not bodies[-1].get("more_body", False), sent
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in sent[0]["headers"]]
    body = b"".join(m.get("body", b"") for m in bodies)
    return Raw(sent[0]["status"], headers, body, received)


def send(app: App, req: RawRequest, via: str, **kwargs: Any) -> Raw:
    """Send `req` to `app` the way `via` does; check the response head on the way."""
    try:
        if via == "asgi":
            raw = run_asgi(app, req, **kwargs)
        else:
            raw = run_wsgi(app, wsgi_environ(req, raw_uri=via == "wsgi-gunicorn", **kwargs))
    except AssertionError:
        raise
    except Exception as exc:  # invariant 1: nothing escapes to the server
        raise AssertionError(f"the app let {exc!r} escape to the server ({via})") from exc
    for name, value in raw.headers:  # invariant 5: the head is clean
        assert not any(c in name + value for c in "\r\n\0"), (name, value)
    return raw


def assert_4xx(raw: Raw, status: int | None = None) -> None:
    """A client error with microweb's JSON body (never a 5xx)."""
    if status is not None:
        assert raw.status == status, (raw.status, raw.body)
    assert 400 <= raw.status < 500, (raw.status, raw.body)
    assert "detail" in raw.json()


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def path_app() -> tuple[App, list[str]]:
    """Routes with every converter, and an /admin that hostile paths must not reach."""
    app = App()
    reached: list[str] = []
    app.add_converter("num", r"[0-9]+", to_python=int)

    @app.get("/admin")
    def admin() -> dict[str, Any]:
        reached.append("admin")
        return {"secret": True}

    @app.get("/files/{name}")
    def files(name: str) -> dict[str, Any]:
        return {"name": name}

    @app.get("/public/{rest:path}")
    def public(rest: str) -> dict[str, Any]:
        return {"rest": rest}

    @app.get("/n/{n:int}")
    def number(n: int) -> dict[str, Any]:
        return {"n": n}

    @app.get("/x/{x:float}")
    def real(x: float) -> dict[str, Any]:
        return {"x": x}

    @app.get("/c/{c:num}")
    def custom(c: int) -> dict[str, Any]:
        return {"c": c}

    return app, reached


HOSTILE_TARGETS = [
    b"/files/%zz",
    b"/files/%",
    b"/files/%f",
    b"/files/%00",
    b"/files/a%00b",
    b"/%00",
    b"/%00/",
    b"/admin%00",
    b"/files/%ff%fe",
    b"/files/%c3%28",
    b"/files/%ed%a0%80",  # a surrogate encoded as if UTF-8 (invalid UTF-8)
    b"/files/\xff\xfe",  # raw non-UTF-8 bytes in the target
    b"/files/%0d%0aSet-Cookie:%20x=1",
    b"/files/..%2f..%2fetc%2fpasswd",
    b"/public/../../../etc/passwd",
    b"/public/%2e%2e/%2e%2e/etc/passwd",
    b"/public/..%5c..%5cwindows",
    b"/../admin",
    b"//",
    b"///",
    b"//admin",
    b"/files//",
    b"/" + b"a/" * 2000,
    b"/n/" + b"9" * 5000,
    b"/x/" + b"9" * 5000,
    b"/x/1." + b"0" * 5000,
    b"/c/" + b"9" * 5000,
    b"/n/-1",
    b"/n/%EF%BC%93",
    b"/x/nan",
    b"/x/inf",
    b"/x/1e999",
]


@pytest.mark.parametrize("target", HOSTILE_TARGETS, ids=lambda t: repr(t[:40]))
def test_hostile_paths_get_a_4xx_or_an_answer(via: str, target: bytes) -> None:
    app, reached = path_app()
    raw = send(app, RawRequest(target), via)
    assert raw.status < 500, (raw.status, raw.body)
    assert raw.status in (200, 308, 404), raw.status
    if raw.status != 308:
        raw.json()  # a well-formed JSON body
    assert reached == []
    # invariant 2: the worker goes on serving
    assert send(app, RawRequest(b"/files/ok"), via).json() == {"name": "ok"}


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (b"/files/%zz", "%zz"),  # invalid escapes are kept as typed
        (b"/files/100%", "100%"),
        (b"/files/%4", "%4"),
        (b"/files/%%41", "%A"),
        (b"/files/%ff", "\ufffd"),  # invalid UTF-8 after decoding: U+FFFD, not a 500
        (b"/files/%c3%28", "\ufffd("),
        (b"/files/caf%C3%A9", "caf\xe9"),
        (b"/files/a+b", "a+b"),  # + is a space in queries only
        (b"/files/%2e%2e", ".."),  # dots are data inside a parameter
        (b"/files/..%2Fadmin", "../admin"),  # %2F does not split the segment
    ],
)
def test_path_parameters_are_decoded_safely(via: str, target: bytes, name: str) -> None:
    if via == "wsgi-wsgiref" and b"%2F" in target:
        # PATH_INFO alone cannot tell "/" from "%2F" (API.md: that needs the raw target)
        target = target.replace(b"%2F", b"%252F")
        name = name.replace("/", "%2F")
    app, reached = path_app()
    raw = send(app, RawRequest(target), via)
    assert (raw.status, raw.json()) == (200, {"name": name})
    assert reached == []


@pytest.mark.parametrize(
    "target", [b"/files/%00", b"/files/a%00b", b"/public/x%00.txt", b"/public/a/%00/b", b"/n/1%00"]
)
def test_a_decoded_nul_never_names_a_resource(via: str, target: bytes) -> None:
    app, _ = path_app()
    assert_4xx(send(app, RawRequest(target), via), 404)


@pytest.mark.parametrize(
    "target",
    [
        b"/public/../admin",
        b"/public/%2e%2e/admin",
        b"/public/%2E%2E%2Fadmin",
        b"/files/../admin",
        b"/files/..%2Fadmin",
        b"/./admin",
        b"/admin/.",
        b"/admin/..",
        b"/x/../admin",
        b"/%61dmin/../admin/x",
    ],
)
def test_dot_segments_never_reach_another_route(via: str, target: bytes) -> None:
    app, reached = path_app()
    raw = send(app, RawRequest(target), via)
    assert raw.status in (200, 404), raw.status
    assert reached == []
    if raw.status == 200:  # taken by a parameter route, with the dots as data
        assert "secret" not in raw.json()


@pytest.mark.parametrize(
    "target",
    [
        b"/n/" + b"9" * 5000,  # int() of 5,000 digits: slow, and raises past 4,300
        b"/n/" + b"9" * 65,
        b"/x/" + b"9" * 5000,
        b"/x/1." + b"9" * 5000,
        b"/c/" + b"9" * 5000,  # a custom int converter: int() raises ValueError
        b"/n/%D9%A1%D9%A2",  # Arabic-Indic digits
        b"/n/%C2%B2",  # superscript two: str.isdigit() says yes
        b"/n/%EF%BC%93",  # fullwidth three: int() says 3
        b"/n/1_000",
        b"/n/+1",
        b"/n/%201",
    ],
)
def test_huge_or_non_ascii_numbers_are_404(via: str, target: bytes) -> None:
    app, _ = path_app()
    assert_4xx(send(app, RawRequest(target), via), 404)


def test_numbers_of_a_sane_length_still_match(via: str) -> None:
    app, _ = path_app()
    # a control for the test above: the limit is about length, not magnitude
    assert send(app, RawRequest(b"/n/" + b"9" * 40), via).json() == {"n": int("9" * 40)}
    assert send(app, RawRequest(b"/n/007"), via).json() == {"n": 7}
    assert send(app, RawRequest(b"/x/2.5"), via).json() == {"x": 2.5}


def _browser_view(location: str) -> str:
    # the WHATWG URL parser drops ASCII tab and newlines anywhere in a URL and
    # trims C0 controls and spaces at both ends: "/\t/evil.com" is "//evil.com"
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "")
    return cleaned.strip("".join(map(chr, range(0x21))))


@pytest.mark.parametrize(
    "target",
    [
        b"//evil.com",
        b"///evil.com",
        b"//evil.com/x",
        b"/\\evil.com",
        b"/\\/evil.com",
        b"/%5Cevil.com",
        b"/%2F%2Fevil.com",
        b"/%2F/evil.com",
        b"/%09/evil.com",
        b"/%0A/evil.com",
        b"/%0D%0A/evil.com",
        b"/%20/evil.com",
        b"/%3F/evil.com",
        b"/%23/evil.com",
        b"/x/%3F/evil.com",
    ],
)
def test_slash_redirects_never_leave_the_site(via: str, target: bytes) -> None:
    app = App()

    @app.get("/{rest:path}/")  # "directory" pages: /a/b redirects to /a/b/
    def page(rest: str) -> dict[str, Any]:
        return {"rest": rest}

    raw = send(app, RawRequest(target), via)
    assert raw.status in (200, 308, 404), (raw.status, raw.body)
    if raw.status != 308:
        return
    location = raw.header("location")
    assert location is not None
    assert location.isascii() and location.isprintable() and " " not in location, location
    seen = _browser_view(location)
    assert not seen.startswith(("//", "\\\\", "/\\", "\\/")), location  # not scheme-relative
    parts = urlsplit(seen)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("", "", "", ""), location
    # and it names the same resource, one slash added (leading slashes collapsed)
    asked = unquote_to_bytes(target).decode("utf-8", "replace")
    assert unquote(parts.path).lstrip("/\\") == (asked + "/").lstrip("/\\"), location


def test_slash_redirect_keeps_the_query_verbatim(via: str) -> None:
    app = App()

    @app.get("/users")
    def users() -> dict[str, Any]:
        return {}

    raw = send(app, RawRequest(b"/users/?next=//evil.com&a=%0d%0a"), via)
    assert raw.status == 308
    assert raw.header("location") == "/users?next=//evil.com&a=%0d%0a"


def test_paths_through_the_client(make_client: MakeClient) -> None:
    app, reached = path_app()
    client = make_client(app)
    assert client.get("/files/a%20b").json() == {"name": "a b"}
    assert client.get("/files/a%2Fb").json() == {"name": "a/b"}
    assert client.get("/files/%00").status_code == 404
    assert client.get("/n/" + "9" * 5000).status_code == 404
    assert client.get("/files/%ff").json() == {"name": "\ufffd"}
    assert client.get("/public/%2e%2e/admin").json() == {"rest": "../admin"}
    assert reached == []


# --------------------------------------------------------------------------
# Query strings
# --------------------------------------------------------------------------


def query_app() -> App:
    app = App()

    @app.get("/q")
    def q(request: Request) -> dict[str, Any]:
        return {"items": request.query_params.multi_items()}

    return app


@pytest.mark.parametrize(
    ("query", "items"),
    [
        (b"a=1;b=2", [["a", "1;b=2"]]),  # ";" is not a separator (CVE-2021-23336)
        (b"a=1&b=2;c=3", [["a", "1"], ["b", "2;c=3"]]),
        (b"a=1+2&b=%2B&c=+", [["a", "1 2"], ["b", "+"], ["c", " "]]),
        (
            b"a=%zz&b=%&c=%4&d=%%41&e=100%",
            [["a", "%zz"], ["b", "%"], ["c", "%4"], ["d", "%A"], ["e", "100%"]],
        ),
        (b"a=&b&=c&&=", [["a", ""], ["b", ""], ["", "c"], ["", ""]]),  # blank values kept
        (b"a=1&a=2&A=3", [["a", "1"], ["a", "2"], ["A", "3"]]),
        (b"a=%ff&b=%c3", [["a", "\ufffd"], ["b", "\ufffd"]]),
        (b"k=%C3%A9&%E2%82%AC=1", [["k", "\xe9"], ["\u20ac", "1"]]),
        (b"k=\xc3\xa9", [["k", "\xe9"]]),  # raw UTF-8 bytes
        (b"a=%00&b=%0d%0a", [["a", "\x00"], ["b", "\r\n"]]),  # data, never a header
        (b"a==b=c", [["a", "=b=c"]]),
    ],
)
def test_query_string_parsing(via: str, query: bytes, items: list[list[str]]) -> None:
    raw = send(query_app(), RawRequest(b"/q?" + query), via)
    assert (raw.status, raw.json()) == (200, {"items": items})


def test_query_string_through_the_client(make_client: MakeClient) -> None:
    client = make_client(query_app())
    r = client.get("/q?a=1;b=2&c=x+y&d=")
    assert r.json() == {"items": [["a", "1;b=2"], ["c", "x y"], ["d", ""]]}


# --------------------------------------------------------------------------
# Cookies
# --------------------------------------------------------------------------


def cookie_app() -> App:
    app = App()

    @app.get("/c")
    def c(request: Request) -> dict[str, Any]:
        return {"cookies": request.cookies}

    return app


MALFORMED_COOKIES = [
    b"",
    b";",
    b"; ;;",
    b"=",
    b"==",
    b"=x",
    b"a",
    b'a="',
    b'a="x',
    b'a=x"',
    b'a="\\"',
    b'a="\\',
    b'a="\\777"',
    b'a="\\400"',
    b'a="\\3"',
    b'a="\\\\\\"',
    b"a=b=c",
    b"\xff\xfe=\xff",
    b"a=\xe9",
    b"a=%ff",
    b"a=" + b";" * 5000,
    b'a="' + b"\\" * 5001 + b'"',
    b"\x00=\x00",
    b" = ; =a; a= ; b ; c=1",
    b"a=1, b=2",
    b"$Version=1; a=1; $Path=/",
]


@pytest.mark.parametrize("header", MALFORMED_COOKIES, ids=lambda h: repr(h[:30]))
def test_malformed_cookies_never_raise(via: str, header: bytes) -> None:
    raw = send(cookie_app(), RawRequest(b"/c", headers=[(b"cookie", header)]), via)
    assert raw.status == 200, raw.body
    cookies = raw.json()["cookies"]
    assert "" not in cookies
    assert all(isinstance(v, str) for v in cookies.values())


@pytest.mark.parametrize(
    ("header", "cookies"),
    [
        # a nameless cookie never shadows a named one (CVE-2023-23934)
        (b"=evil; session=good", {"session": "good"}),
        (b"session=good; =evil", {"session": "good"}),
        (b" =evil ;session=good", {"session": "good"}),
        (b"=session=evil; session=good", {"session": "good"}),
        (b"session; session=good", {"session": "good"}),
        (b"session=good; session=evil", {"session": "good"}),  # the first one wins
        (b'a="hello world"', {"a": "hello world"}),
        (b'a="\\"q\\""', {"a": '"q"'}),
        (b'a="\\303\\251"', {"a": "\xe9"}),
        (b'a=""', {"a": ""}),
        (b'a="x;y"; b=1', {"a": '"x', "b": "1"}),
        (b"a=caf\xc3\xa9", {"a": "caf\xe9"}),  # raw UTF-8 bytes
        (b"a = 1 ;  b=2", {"a": "1", "b": "2"}),
    ],
)
def test_cookie_values(via: str, header: bytes, cookies: dict[str, str]) -> None:
    raw = send(cookie_app(), RawRequest(b"/c", headers=[(b"cookie", header)]), via)
    assert raw.json() == {"cookies": cookies}


def test_cookies_from_several_fields() -> None:
    # HTTP/2 sends each cookie in a field of its own; ASGI servers keep them apart
    headers = [(b"cookie", b"a=1; b=2"), (b"cookie", b"c=3")]
    raw = send(cookie_app(), RawRequest(b"/c", headers=headers), "asgi")
    assert raw.json() == {"cookies": {"a": "1", "b": "2", "c": "3"}}


COOKIE_VALUES = [
    "plain",
    "",
    "sp ace",
    " lead and trail ",
    "semi;colon",
    "com,ma",
    'quo"te',
    "back\\slash",
    "\\303\\251",  # looks like an escape: must come back as typed
    '"quoted"',
    "caf\xe9",
    "\xc3\xa9",  # Latin-1 text that happens to be the UTF-8 bytes of "é"
    "tab\there",
    "del\x7f",
]


@pytest.mark.parametrize("value", COOKIE_VALUES, ids=repr)
def test_set_cookie_values_come_back_unchanged(make_client: MakeClient, value: str) -> None:
    app = cookie_app()

    @app.get("/set")
    def set_it() -> Response:
        response = Response(b"")
        response.set_cookie("v", value)
        return response

    client = make_client(app)
    set_cookie = client.get("/set").headers["set-cookie"]
    pair = set_cookie.split(";")[0]  # the value is quoted: it holds no ";"
    client.cookies.clear()
    assert client.get("/c", headers={"Cookie": pair}).json() == {"cookies": {"v": value}}


# --------------------------------------------------------------------------
# JSON bodies
# --------------------------------------------------------------------------


def json_app(kind: str) -> App:
    app = App()
    if kind == "def":

        @app.post("/j")
        def j(request: Request) -> dict[str, Any]:
            return {"value": request.json()}

    else:

        @app.post("/j")
        async def aj(request: Request) -> dict[str, Any]:
            return {"value": await request.json()}

    return app


KIND = pytest.mark.parametrize("kind", ["def", "async"])

INVALID_JSON = [
    b"",
    b" ",
    b"{",
    b"[1,]",
    b"{'a': 1}",
    b'{"a":1}}',
    b"1 2",
    b"\x00",
    b"undefined",
    b"[" * 100_000,  # RecursionError inside json
    b'{"a":' * 100_000,
    b"[{" * 50_000,
    b"1" * 5000,  # int() past 4,300 digits raises
    b"[" + b"1" * 5000 + b"]",
    '"\xe9"'.encode("latin-1"),  # not UTF-8
    b'"\xed\xa0\x80"',  # an encoded surrogate is not UTF-8
    b'"\xc3"',
]


@KIND
@pytest.mark.parametrize("body", INVALID_JSON, ids=lambda b: repr(b[:20]))
def test_invalid_json_is_400(make_client: MakeClient, kind: str, body: bytes) -> None:
    client = make_client(json_app(kind))
    r = client.post("/j", content=body)
    assert (r.status_code, r.json()) == (400, {"detail": "Invalid JSON body"})
    assert client.post("/j", content=b'{"ok":[1]}').json() == {"value": {"ok": [1]}}


@KIND
@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)
def test_json_that_is_not_utf8_is_400(make_client: MakeClient, kind: str, encoding: str) -> None:
    # RFC 8259 §8.1: JSON between systems is UTF-8. json.loads(bytes) guesses
    # UTF-16/32 from the zero bytes, so request.text() and request.json() would
    # read one body two ways (and a UTF-8 filter in front would see neither).
    client = make_client(json_app(kind))
    r = client.post("/j", content='{"role":"admin"}'.encode(encoding))
    assert r.status_code == 400, r.text


@KIND
@pytest.mark.parametrize(
    "body", [b"NaN", b"[Infinity]", b'{"a":-Infinity}', b"[1e999]", b"-1e400", b'"\\ud800"']
)
def test_json_that_cannot_be_sent_back_never_gives_a_500(
    make_client: MakeClient, kind: str, body: bytes
) -> None:
    # NaN and Infinity are not JSON (RFC 8259 §6), but json.loads accepts them;
    # 1e999 becomes inf; "\ud800" a lone surrogate. A handler that sends back
    # what it got then meets JSONResponse (allow_nan=False, strict UTF-8):
    # bad input turned into a 500.
    client = make_client(json_app(kind))
    r = client.post("/j", content=body)
    assert r.status_code < 500, r.text


# --------------------------------------------------------------------------
# Content-Length and body limits
# --------------------------------------------------------------------------


def body_app(kind: str, **options: Any) -> tuple[App, list[str]]:
    """POST /b reads the body. `seen` records "called" and, after the read, the body."""
    app = App(**options)
    seen: list[str] = []
    if kind == "def":

        @app.post("/b")
        def b(request: Request) -> dict[str, Any]:
            seen.append("called")
            data = request.body()
            seen.append(f"body:{len(data)}")
            return {"n": len(data)}

    else:

        @app.post("/b")
        async def ab(request: Request) -> dict[str, Any]:
            seen.append("called")
            data = await request.body()
            seen.append(f"body:{len(data)}")
            return {"n": len(data)}

    return app, seen


BAD_LENGTHS = [
    "+3",  # int() accepts all of these
    "0_3",
    "\uff13",  # fullwidth 3
    "\u0663",  # Arabic-Indic 3
    "-1",
    "-0",
    " 3",  # SECURITY.md: plain ASCII digits only
    "3.0",
    "0x3",
    "3e0",
    "three",
    " ",
    ",",
    "3,",
    "3,,3",
    "3,4",  # conflicting values folded into one field by the server
    "3, 4",
    "9" * 19,
    "9" * 5000,
]


@KIND
@pytest.mark.parametrize("length", BAD_LENGTHS, ids=repr)
def test_bad_content_length_is_400(via: str, kind: str, length: str) -> None:
    app, seen = body_app(kind)
    header = (b"content-length", length.encode("utf-8"))
    raw = send(app, RawRequest(b"/b", "POST", [header], [b"abc"]), via)
    assert_4xx(raw, 400)
    assert seen == []  # refused before the handler ran


@pytest.mark.parametrize("length", ["x", "-1", "9" * 19, "11"], ids=repr)
def test_a_bad_or_too_large_length_is_refused_where_no_route_is(via: str, length: str) -> None:
    # a request no route takes gets the shared 404 without a Request made for it
    # only when it declares no length: one that does is checked first
    app = App(max_body_size=10)

    @app.get("/")
    def home() -> str:
        return "home"

    header = (b"content-length", length.encode())
    raw = send(app, RawRequest(b"/nope", "POST", [header], [b"x" * 11]), via)
    assert_4xx(raw, 413 if length == "11" else 400)


def test_a_head_request_no_route_takes_gets_no_body(via: str) -> None:
    app = App()

    @app.get("/")
    def home() -> str:
        return "home"

    for hooked in (False, True):  # the shared 404, and the pipeline's
        if hooked:
            app.before_request(lambda request: None)
        raw = send(app, RawRequest(b"/nope", "HEAD"), via)
        assert (raw.status, raw.body) == (404, b"")
        assert raw.header("content-length") == str(len(b'{"detail":"Not Found"}'))


@KIND
@pytest.mark.parametrize("length", ["\uff13", "\u0663", "\u00b3", "+3", " 3", "3\x0b"], ids=repr)
def test_a_wsgi_server_passing_a_lenient_length_through(kind: str, length: str) -> None:
    # a server that decodes headers as UTF-8, or passes them verbatim: int()
    # would read all of these as 3
    app, seen = body_app(kind)
    environ = wsgi_environ(RawRequest(b"/b", "POST", [(b"content-length", b"3")], [b"abc"]))
    environ["CONTENT_LENGTH"] = length
    assert_4xx(run_wsgi(app, environ), 400)
    assert seen == []


@KIND
def test_conflicting_content_length_fields_are_400(kind: str) -> None:
    # ASGI servers keep repeated fields apart (WSGI servers fold them: "3,4" above)
    app, seen = body_app(kind)
    headers = [(b"content-length", b"3"), (b"content-length", b"4")]
    assert_4xx(send(app, RawRequest(b"/b", "POST", headers, [b"abc"]), "asgi"), 400)
    headers = [(b"content-length", b"3"), (b"content-length", b"3")]
    assert send(app, RawRequest(b"/b", "POST", headers, [b"abc"]), "asgi").json() == {"n": 3}
    assert seen == ["called", "body:3"]


@KIND
@pytest.mark.parametrize("length", ["3", "003", "3,3", "3, 3"])
def test_good_content_length_is_read(via: str, kind: str, length: str) -> None:
    # the control for the tests above: the same request with a plain length works
    app, seen = body_app(kind)
    header = (b"content-length", length.encode())
    assert send(app, RawRequest(b"/b", "POST", [header], [b"abc"]), via).json() == {"n": 3}
    assert seen == ["called", "body:3"]


@KIND
def test_an_empty_content_length_field(kind: str) -> None:
    app, seen = body_app(kind)
    # under ASGI an empty field is a field, and not digits
    raw = send(app, RawRequest(b"/b", "POST", [(b"content-length", b"")], [b"abc"]), "asgi")
    assert_4xx(raw, 400)
    # under WSGI, CONTENT_LENGTH='' is how wsgiref says "no Content-Length"
    environ = wsgi_environ(RawRequest(b"/b", "POST"), raw_uri=False)
    environ["wsgi.input"] = io.BytesIO(b"abc")
    assert run_wsgi(app, environ).json() == {"n": 0}
    assert seen == ["called", "body:0"]


#: CL.TE smuggling: read by its Content-Length (4), this body is the chunk-size
#: line, and the rest is a second request the server would then answer.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: testserver\r\n\r\n"
CL_TE_BODY = b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"


def smuggling_app(kind: str) -> tuple[App, list[str]]:
    """`body_app`, plus /smuggled (which must never answer) and an unrouted 404."""
    app, seen = body_app(kind)

    @app.get("/smuggled")
    def smuggled() -> str:
        seen.append("smuggled")
        return "SMUGGLED"

    return app, seen


@KIND
@pytest.mark.parametrize("hooks", [False, True], ids=["direct", "pipeline"])
@pytest.mark.parametrize("target", [b"/b", b"/nowhere"])
def test_a_body_framed_by_length_and_chunks_is_400_under_wsgi(
    kind: str, hooks: bool, target: bytes
) -> None:
    # wsgiref passes Transfer-Encoding and Content-Length through and leaves the
    # chunks undecoded (no wsgi.input_terminated): never read by the length
    app, seen = smuggling_app(kind)
    if hooks:
        app.before_request(lambda request: None)
    headers = [(b"content-length", b"4"), (b"transfer-encoding", b"chunked")]
    environ = wsgi_environ(RawRequest(target, "POST", headers, [CL_TE_BODY]), raw_uri=False)
    assert "wsgi.input_terminated" not in environ
    stream = environ["wsgi.input"]
    assert_4xx(run_wsgi(app, environ), 400)
    assert stream.tell() == 0  # not a byte read
    assert seen == []


@KIND
def test_a_decoded_chunked_body_is_read(kind: str) -> None:
    # the control: gunicorn and waitress decode the chunks and set wsgi.input_terminated
    app, seen = smuggling_app(kind)
    for headers in (
        [(b"transfer-encoding", b"chunked")],
        [(b"content-length", b"4"), (b"transfer-encoding", b"chunked")],
    ):
        environ = wsgi_environ(RawRequest(b"/b", "POST", headers, [b"abcd"]))
        environ["wsgi.input_terminated"] = True
        assert run_wsgi(app, environ).json() == {"n": 4}
    assert seen == ["called", "body:4"] * 2


@KIND
@pytest.mark.parametrize("declared", [101, 10**9, 10**17])
def test_a_declared_body_over_the_limit_is_413_before_the_handler(
    via: str, kind: str, declared: int
) -> None:
    app, seen = body_app(kind, max_body_size=100)
    stream = io.BytesIO(b"x" * 200)
    header = (b"content-length", str(declared).encode())
    if via == "asgi":
        raw = send(app, RawRequest(b"/b", "POST", [header], [b"x" * 200]), via)
        assert raw.received == 0  # not a byte was read
    else:
        raw = send(app, RawRequest(b"/b", "POST", [header]), via, stream=stream)
        assert stream.tell() == 0
    assert_4xx(raw, 413)
    assert seen == []


@KIND
def test_an_undeclared_body_over_the_limit_is_413_and_reading_stops(via: str, kind: str) -> None:
    app, seen = body_app(kind, max_body_size=100)
    chunks = [b"x" * 10] * 50  # 500 bytes, chunked, no Content-Length
    if via == "asgi":
        raw = send(app, RawRequest(b"/b", "POST", (), chunks), via)
        assert raw.received <= 11  # microweb stopped reading past the limit
    else:
        stream = io.BytesIO(b"x" * 1_000_000)
        raw = send(app, RawRequest(b"/b", "POST", (), [b"x"]), via, stream=stream)
        assert stream.tell() <= 100 + 64 * 1024  # at most one read past the limit
    assert_4xx(raw, 413)
    assert seen == ["called"]  # the handler never saw a truncated body


@KIND
def test_a_body_at_the_limit_is_fine(via: str, kind: str) -> None:
    app, seen = body_app(kind, max_body_size=100)
    header = (b"content-length", b"100")
    assert send(app, RawRequest(b"/b", "POST", [header], [b"x" * 100]), via).json() == {"n": 100}
    assert send(app, RawRequest(b"/b", "POST", (), [b"x" * 50] * 2), via).json() == {"n": 100}
    assert seen == ["called", "body:100"] * 2


@KIND
def test_body_limits_through_the_client(make_client: MakeClient, kind: str) -> None:
    app, seen = body_app(kind, max_body_size=100)
    client = make_client(app)
    assert client.post("/b", content=b"x" * 101).status_code == 413
    assert seen == []

    def chunked() -> Any:
        for _ in range(30):
            yield b"x" * 10

    assert client.post("/b", content=chunked()).status_code == 413
    assert seen == ["called"]
    assert client.post("/b", content=b"x" * 100).json() == {"n": 100}


@KIND
def test_a_body_shorter_than_its_content_length_is_400(via: str, kind: str) -> None:
    app, seen = body_app(kind)
    header = (b"content-length", b"10")
    assert_4xx(send(app, RawRequest(b"/b", "POST", [header], [b"abc"]), via), 400)
    assert seen == ["called"]


class BrokenInput:
    """A ``wsgi.input`` whose connection breaks after `good` bytes."""

    def __init__(self, good: bytes = b"") -> None:
        self._good = io.BytesIO(good)

    def read(self, size: int = -1) -> bytes:
        data = self._good.read(size)
        if data:
            return data
        raise ConnectionResetError("connection reset by peer")

    def readline(self, size: int = -1) -> bytes:
        raise ConnectionResetError("connection reset by peer")

    def readlines(self, hint: int = -1) -> list[bytes]:
        raise ConnectionResetError("connection reset by peer")

    def __iter__(self) -> Any:
        return iter(())


@KIND
@pytest.mark.parametrize("good", [b"", b"abc"])
def test_a_read_error_from_wsgi_input_is_400(kind: str, good: bytes) -> None:
    app, seen = body_app(kind)
    for terminated in (False, True):
        req = RawRequest(b"/b", "POST", [] if terminated else [(b"content-length", b"10")])
        environ = wsgi_environ(req, stream=BrokenInput(good))
        if terminated:
            environ["wsgi.input_terminated"] = True
        assert_4xx(run_wsgi(app, environ), 400)
    assert "body" not in "".join(seen)
    assert run_wsgi(
        app, wsgi_environ(RawRequest(b"/b", "POST", [(b"content-length", b"1")], [b"x"]))
    ).json() == {"n": 1}


@KIND
@pytest.mark.parametrize("declared", [True, False])
def test_a_client_that_leaves_mid_body_is_not_a_500(kind: str, declared: bool) -> None:
    # without a Content-Length, only the disconnect tells a cut body from a whole one
    app, seen = body_app(kind)
    headers = [(b"content-length", b"10")] if declared else []
    raw = run_asgi(app, RawRequest(b"/b", "POST", headers, [b"abc"]), disconnect=True)
    assert_4xx(raw, 400)
    assert "body" not in "".join(seen)  # the handler never saw a truncated body


# --------------------------------------------------------------------------
# Forms
# --------------------------------------------------------------------------


def form_app(kind: str, **options: Any) -> App:
    app = App(**options)
    if kind == "def":

        @app.post("/form")
        def form(request: Request) -> dict[str, Any]:
            return {"fields": request.form().multi_items()}

    else:

        @app.post("/form")
        async def aform(request: Request) -> dict[str, Any]:
            return {"fields": (await request.form()).multi_items()}

    return app


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@KIND
def test_urlencoded_form_limits(make_client: MakeClient, kind: str) -> None:
    client = make_client(form_app(kind, max_form_fields=3, max_form_field_size=10))
    assert client.post("/form", content=b"a=1&b=2&c=3", headers=FORM).status_code == 200
    r = client.post("/form", content=b"a=1&b=2&c=3&d=4", headers=FORM)
    assert (r.status_code, "detail" in r.json()) == (413, True)
    assert client.post("/form", content=b"&&&&&&&&a=1&&&&", headers=FORM).status_code == 200
    assert client.post("/form", content=b"a=" + b"x" * 10, headers=FORM).status_code == 200
    assert client.post("/form", content=b"a=" + b"x" * 11, headers=FORM).status_code == 413
    assert client.post("/form", content=b"a=" + b"%41" * 11, headers=FORM).status_code == 413
    many = b"&".join(b"k%d=v" % i for i in range(100_000))
    assert client.post("/form", content=many, headers=FORM).status_code == 413


@KIND
def test_semicolon_is_not_a_form_separator(make_client: MakeClient, kind: str) -> None:
    client = make_client(form_app(kind))
    r = client.post("/form", content=b"a=1;b=2&c=%zz+", headers=FORM)
    assert r.json() == {"fields": [["a", "1;b=2"], ["c", "%zz "]]}


# --------------------------------------------------------------------------
# No CR/LF/NUL into the response head (invariant 5)
# --------------------------------------------------------------------------

INJECTIONS = ["a\rb", "a\nb", "a\x00b", "ok\r\nSet-Cookie: evil=1", "\r\n\r\n<html>"]

SETTERS: dict[str, Callable[[str], object]] = {
    "Response(headers=)": lambda v: Response(b"", headers={"X-A": v}),
    "JSONResponse(headers=)": lambda v: JSONResponse({}, headers=[("X-A", v)]),
    "headers[name] =": lambda v: Response().headers.__setitem__("X-A", v),
    "headers.append": lambda v: Response().headers.append("X-A", v),
    "headers.setdefault": lambda v: Response().headers.setdefault("X-A", v),
    "headers.update": lambda v: Response().headers.update({"X-A": v}),
    "MutableHeaders()": lambda v: MutableHeaders({"X-A": v}),
    "header name": lambda v: Response().headers.__setitem__("X" + v, "1"),
    "media_type": lambda v: Response(b"", media_type="text/plain" + v),
    "HTMLResponse media_type": lambda v: HTMLResponse("", media_type="text/html" + v),
    "StreamingResponse media_type": lambda v: StreamingResponse(iter([b""]), media_type=v),
    "RedirectResponse": lambda v: RedirectResponse("/next" + v),
    "RedirectResponse non-ASCII": lambda v: RedirectResponse("/caf\xe9" + v),
    "set_cookie key": lambda v: Response().set_cookie("k" + v, "x"),
    "set_cookie value": lambda v: Response().set_cookie("k", v),
    "set_cookie path": lambda v: Response().set_cookie("k", "x", path="/" + v),
    "set_cookie domain": lambda v: Response().set_cookie("k", "x", domain="example.com" + v),
    "set_cookie expires": lambda v: Response().set_cookie("k", "x", expires="Thu, 01 Jan 2099" + v),
    "set_cookie samesite": lambda v: Response().set_cookie("k", "x", samesite="lax" + v),
    "delete_cookie path": lambda v: Response().delete_cookie("k", path="/" + v),
    "delete_cookie domain": lambda v: Response().delete_cookie("k", domain="example.com" + v),
}


@pytest.mark.parametrize("value", INJECTIONS, ids=repr)
@pytest.mark.parametrize("setter", list(SETTERS))
def test_cr_lf_nul_raise_when_set(setter: str, value: str) -> None:
    with pytest.raises(ValueError):
        SETTERS[setter](value)


@pytest.mark.parametrize(
    "attribute",
    ["path", "domain", "expires"],
)
def test_cookie_attributes_cannot_smuggle_attributes(attribute: str) -> None:
    with pytest.raises(ValueError):
        Response().set_cookie("k", "x", **{attribute: "/; Domain=evil.com"})  # type: ignore[arg-type]


def test_cookie_values_cannot_smuggle_attributes() -> None:
    response = Response()
    response.set_cookie("k", "x; Domain=evil.com; HttpOnly=")
    # the value is quoted whole: the only attributes are microweb's own
    attributes = response.headers["set-cookie"].split(";")[1:]
    assert attributes == [" Path=/", " SameSite=Lax"]


def injection_app() -> App:
    """Handlers that put a query parameter into the response head."""
    app = App()

    @app.get("/header")
    def header(request: Request) -> Response:
        return Response(b"", headers={"X-Echo": request.query_params.get("v", "")})

    @app.get("/cookie")
    def cookie(request: Request) -> Response:
        response = Response(b"")
        response.set_cookie("k", request.query_params.get("v", ""))
        return response

    @app.get("/cookie-path")
    def cookie_path(request: Request) -> Response:
        response = Response(b"")
        response.set_cookie("k", "x", path="/" + request.query_params.get("v", ""))
        return response

    @app.get("/redirect")
    def redirect(request: Request) -> Response:
        return RedirectResponse("/next" + request.query_params.get("v", ""))

    @app.get("/media")
    async def media(request: Request) -> Response:
        return Response(b"x", media_type="text/" + request.query_params.get("v", ""))

    @app.get("/tuple")
    def returned(request: Request) -> Any:
        return "x", 200, {"X-Echo": request.query_params.get("v", "")}

    @app.get("/abort")
    def abort_sync(request: Request) -> None:
        raise HTTPException(401, headers={"WWW-Authenticate": request.query_params.get("v", "")})

    @app.get("/abort-async")
    async def abort_async(request: Request) -> None:
        raise HTTPException(401, headers={"WWW-Authenticate": request.query_params.get("v", "")})

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    return app


@pytest.mark.parametrize(
    "path",
    [
        "/header",
        "/cookie",
        "/cookie-path",
        "/redirect",
        "/media",
        "/tuple",
        "/abort",
        "/abort-async",
    ],
)
@pytest.mark.parametrize("payload", [b"%0d%0aSet-Cookie:%20evil=1", b"%0aX-Injected:%201", b"%00"])
def test_user_data_never_reaches_the_head_raw(via: str, path: str, payload: bytes) -> None:
    app = injection_app()
    raw = send(app, RawRequest(path.encode() + b"?v=" + payload), via)  # `send` checks the head
    if raw.status >= 500:  # the handler's mistake: the generic 500, no leak
        assert raw.body == GENERIC_500
    names = {k.lower() for k, _ in raw.headers}
    assert "x-injected" not in names
    assert not any("evil" in v for _, v in raw.headers)
    assert send(app, RawRequest(b"/ok"), via).body == b"ok"


# --------------------------------------------------------------------------
# Handler errors: a generic 500, and the worker survives (invariants 2, 7)
# --------------------------------------------------------------------------

SECRET = "SECRET-TOKEN-42 in /srv/app/settings.py password=hunter2"


def failing_app(where: str, *, debug: bool = False) -> App:
    """GET /fail fails at `where`; GET /ok goes through the same hooks and works."""
    app = App(debug=debug)

    def boom(request: Request, *rest: Any) -> Any:
        if request.path == "/fail":
            raise ValueError(SECRET)
        return None

    async def aboom(request: Request, *rest: Any) -> Any:
        return boom(request, *rest)

    if where == "handler":
        app.get("/fail")(boom)
    elif where == "async handler":
        app.get("/fail")(aboom)
    elif where == "bad return value":

        @app.get("/fail")
        def bad() -> Any:
            return object()

    else:

        @app.get("/fail")
        def fine() -> str:
            return "fine"

        if where == "before_request":
            app.before_request(boom)
        elif where == "after_request":
            app.after_request(aboom)
        elif where == "middleware":

            @app.middleware
            async def mw(request: Request, call_next: Any) -> Any:
                boom(request)
                return await call_next(request)

        elif where == "error handler":
            app.before_request(boom)

            @app.exception_handler(ValueError)
            def failing_handler(request: Request, exc: Exception) -> Any:
                raise RuntimeError(f"while handling: {exc}")

    @app.get("/ok")
    def ok() -> dict[str, Any]:
        return {"ok": True}

    return app


FAILURE_SITES = [
    "handler",
    "async handler",
    "bad return value",
    "before_request",
    "after_request",
    "middleware",
    "error handler",
]


@pytest.mark.parametrize("where", FAILURE_SITES)
def test_a_failure_gives_a_generic_500_and_the_next_request_works(
    make_client: MakeClient, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(failing_app(where))
    with caplog.at_level(logging.ERROR, logger="microweb"):
        r = client.get("/fail")
    assert r.status_code == 500
    assert r.content == GENERIC_500
    assert r.headers["content-type"] == "application/json"
    for leak in ("SECRET", "hunter2", "settings.py", "Traceback", "ValueError", __file__, "File "):
        assert leak not in r.text
    assert any(rec.name == "microweb" and rec.exc_info for rec in caplog.records)
    assert client.get("/ok").json() == {"ok": True}
    assert client.get("/fail").status_code == 500  # and again


def test_debug_shows_the_traceback(make_client: MakeClient) -> None:
    r = make_client(failing_app("handler", debug=True)).get("/fail")
    assert r.status_code == 500
    assert "Traceback" in r.text and SECRET in r.text and "boom" in r.text


# --------------------------------------------------------------------------
# Host headers (invariant 8)
# --------------------------------------------------------------------------


def host_app() -> App:
    app = App()

    @app.get("/where")
    def where(request: Request) -> dict[str, Any]:
        return {"path": request.path, "url": request.url, "host": request.host}

    @app.get("/admin")
    def admin() -> dict[str, Any]:
        return {"secret": True}

    return app


INVALID_HOSTS = [
    b"evil.com/../admin",
    b"evil.com/admin",
    b"/admin",
    b"a b",
    b"x@y",
    b"user:pass@evil.com",
    b"evil.com\\admin",
    b"evil.com?x=/admin",
    b"evil.com#/admin",
    b"[::1",
    b"evil.com:80:80",
    b"evil.com:port",
    b"\xc3\xa9vil.com",
    b"evil.com\t",
    b"evil.com\x00",
]


@pytest.mark.parametrize("host", INVALID_HOSTS, ids=repr)
def test_an_invalid_host_never_changes_the_path(via: str, host: bytes) -> None:
    raw = send(host_app(), RawRequest(b"/where", headers=[(b"host", host)]), via)
    assert raw.status == 200
    seen = raw.json()
    assert seen["path"] == "/where"
    assert seen["host"] == "testserver"  # the server's own name instead
    assert seen["url"] == "http://testserver/where"


@pytest.mark.parametrize("host", [b"evil.com", b"evil.com:8080", b"[::1]:80", b"a%2F..%2Fadmin"])
def test_a_valid_host_changes_only_the_host(via: str, host: bytes) -> None:
    raw = send(host_app(), RawRequest(b"/where?a=1", headers=[(b"host", host)]), via)
    seen = raw.json()
    assert seen["path"] == "/where"
    assert urlsplit(seen["url"]).path == "/where"
    assert seen["url"] == f"http://{host.decode()}/where?a=1"


def test_invalid_hosts_through_the_client(make_client: MakeClient) -> None:
    client = make_client(host_app())
    for host in ["evil.com/../admin", "a b", "x@y"]:
        seen = client.get("/where", headers={"Host": host}).json()
        assert seen == {"path": "/where", "url": "http://testserver/where", "host": "testserver"}


# --------------------------------------------------------------------------
# Request targets that are not a path (invariant 8)
# --------------------------------------------------------------------------


def target_app() -> tuple[App, list[str]]:
    """`/info` answers its URL; every URL it built is recorded."""
    app = App()
    urls: list[str] = []

    @app.get("/info")
    def info(request: Request) -> dict[str, Any]:
        urls.append(request.url)
        return {"url": request.url, "path": request.path}

    @app.post("/items/")
    def items() -> str:
        return "items"

    @app.before_request
    def seen(request: Request) -> None:
        urls.append(request.url)

    return app, urls


NOT_ORIGIN_FORM = [
    b"@evil.com/info",
    b"evil.com",
    b"evil.com/info",
    b"@evil.com",
    b"*",  # only OPTIONS may ask about "*"
    b"info",
    b"ftp://evil.com/info",
    b"http:evil.com/info",
    b"%2Finfo",
    b"\\evil.com/info",
]


def _targeted(app: App, req: RawRequest, via: str) -> Raw:
    """`req` as the servers deliver its target: waitress puts it in REQUEST_URI
    and PATH_INFO as it is; uvicorn in ``path`` and ``raw_path``."""
    if via == "asgi":
        return send(app, req, via)
    environ = wsgi_environ(req, raw_uri=False)
    if via == "wsgi-waitress":
        environ["REQUEST_URI"] = req.target.decode("latin-1")
    elif via == "wsgi-gunicorn":
        environ["RAW_URI"] = req.target.decode("latin-1")
    return run_wsgi(app, environ)


TARGET_VIA = ("asgi", "wsgi-waitress", "wsgi-gunicorn", "wsgi-wsgiref")


@pytest.mark.parametrize("target", NOT_ORIGIN_FORM, ids=lambda t: t.decode("latin-1"))
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
@pytest.mark.parametrize("via", TARGET_VIA)
def test_a_target_that_is_not_a_path_is_400(via: str, method: str, target: bytes) -> None:
    # GET @evil.com/info must never become http://testserver@evil.com/info
    if method == "OPTIONS" and target == b"*":
        return  # the one request with a target that is not a path (below)
    if via == "wsgi-wsgiref" and target.startswith(b"%2F"):
        return  # wsgiref passes it decoded ("/info") and no raw target: a path
    app, urls = target_app()
    raw = _targeted(app, RawRequest(target + b"?a=1", method), via)
    assert_4xx(raw, 400)
    assert raw.header("location") is None
    assert urls == []  # never routed: no hook, no handler, no URL built
    assert send(app, RawRequest(b"/info"), "asgi").status == 200  # and still serving


@pytest.mark.parametrize("via", TARGET_VIA)
def test_options_star_lists_the_apps_methods(via: str) -> None:
    app, urls = target_app()
    raw = _targeted(app, RawRequest(b"*", "OPTIONS"), via)
    assert (raw.status, raw.body) == (204, b"")
    assert raw.header("allow") == "GET, HEAD, OPTIONS, POST"
    assert urls == []


@pytest.mark.parametrize("via", ["asgi", "wsgi-waitress", "wsgi-gunicorn"])
def test_an_absolute_form_target_is_routed_by_its_path(via: str) -> None:
    # h11 (uvicorn) passes http://host/path verbatim in path and raw_path; waitress
    # and gunicorn put the path in PATH_INFO and the target in REQUEST_URI/RAW_URI
    app, _ = target_app()
    target = b"http://evil.com/info?a=1"
    if via == "asgi":
        raw = run_asgi(app, RawRequest(target))
    else:
        environ = wsgi_environ(RawRequest(b"/info?a=1"), raw_uri=False)
        environ["REQUEST_URI" if via == "wsgi-waitress" else "RAW_URI"] = target.decode()
        raw = run_wsgi(app, environ)
    assert raw.status == 200, raw.body
    assert raw.json() == {"url": "http://testserver/info?a=1", "path": "/info"}


def test_a_websocket_target_that_is_not_a_path_is_refused() -> None:
    app = App()
    called = []

    @app.websocket("/ws")
    async def ws(websocket: Any) -> None:
        called.append(websocket.url)
        await websocket.accept()

    async def go(raw_path: bytes) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": raw_path.decode(),
            "raw_path": raw_path,
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "subprotocols": [],
        }
        messages = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "websocket.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app.asgi(scope, receive, send)
        return sent

    assert asyncio.run(go(b"@evil.com/ws")) == [{"type": "websocket.close", "code": 1008}]
    assert called == []
    assert asyncio.run(go(b"/ws"))[0]["type"] == "websocket.accept"


# --------------------------------------------------------------------------
# Linear time (invariant 3)
# --------------------------------------------------------------------------


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    """The least CPU time one call of `fn` takes, over `repeat` measurements.

    CPU time of this thread (`time.thread_time`), not wall-clock time: another
    process busy on the machine does not stretch it. Each measurement repeats
    the call until it has used at least 5 ms, far above the clock's resolution.
    """
    best = float("inf")
    for _ in range(repeat):
        calls = 0
        start = time.thread_time()
        while (spent := time.thread_time() - start) < 0.005:
            fn()
            calls += 1
        best = min(best, spent / calls)
    return best


def assert_linear(
    run: Callable[[Any], object],
    make: Callable[[int], Any],
    n: int,
    factor: int = 10,
    slack: float = 3.0,
) -> None:
    """`run` on an input `factor` times larger takes about `factor` times longer.

    Quadratic work would take `factor`² times longer. Machine-independent: a
    ratio of CPU times, not a deadline; `slack` leaves room for noise.
    """
    small, big = make(n), make(factor * n)
    enabled = gc.isenabled()
    gc.disable()
    try:
        run(small)  # warm caches
        t_small = _best_of(lambda: run(small), 3)
        t_big = _best_of(lambda: run(big), 3)
    finally:
        if enabled:
            gc.enable()
    bound = factor * slack * t_small
    assert t_big < bound, f"{t_small:.5f}s for n={n}, {t_big:.5f}s for {factor}n"


def _wsgi_runner(app: App, expect: int) -> Callable[[dict[str, Any]], object]:
    def run(environ: dict[str, Any]) -> None:
        environ = dict(environ, **{"wsgi.input": io.BytesIO(environ["wsgi.input"].getvalue())})
        assert run_wsgi(app, environ).status == expect

    return run


def _repeated(make: Callable[[bytes], RawRequest], piece: bytes) -> Callable[[int], Any]:
    """The environ of `make(piece * n)`, for `assert_linear`."""
    return lambda n: wsgi_environ(make(piece * n))


def test_long_query_strings_parse_in_linear_time() -> None:
    app = query_app()
    for piece in (b"a=1&", b"%41%zz+&", b";", b"&", b"a" * 10 + b"="):
        make = _repeated(lambda text: RawRequest(b"/q?" + text), piece)
        assert_linear(_wsgi_runner(app, 200), make, 4000)


def test_long_cookie_headers_parse_in_linear_time() -> None:
    app = cookie_app()
    for piece in (b"a=1; ", b"=x;", b'q="\\303\\251\\"";', b";"):
        make = _repeated(lambda text: RawRequest(b"/c", headers=[(b"cookie", text)]), piece)
        assert_linear(_wsgi_runner(app, 200), make, 4000)


def test_routing_a_long_path_takes_linear_time() -> None:
    # a {path} parameter followed by more segments: every split point of a long
    # path is tried; joining the segments again for each one is quadratic
    app = App()

    @app.get("/{rest:path}/edit")
    def edit(rest: str) -> str:
        return rest

    assert_linear(_wsgi_runner(app, 404), lambda n: wsgi_environ(RawRequest(b"/a" * n)), 800)


def test_content_type_parameters_parse_in_linear_time() -> None:
    # request.text() reads the charset from Content-Type: a field of many ";"
    # and one "=" at its end makes a scan that looks for "=" again at each ";".
    # That scan is memchr-fast, so the quadratic term shows only on big inputs:
    # at 50x the input, linear work takes ~50x as long and the quadratic scan
    # thousands of times (a factor of 20 left too little room for a busy machine).
    app = App()

    @app.post("/t")
    def text(request: Request) -> Any:
        return request.text()

    def make(n: int) -> dict[str, Any]:
        ctype = b"text/plain" + b";" * n + b"="
        return wsgi_environ(
            RawRequest(b"/t", "POST", [(b"content-type", ctype), (b"content-length", b"1")], [b"x"])
        )

    assert_linear(_wsgi_runner(app, 200), make, 10_000, factor=50, slack=2.0)


# --------------------------------------------------------------------------
# Differential: WSGI and ASGI agree (invariant 6)
# --------------------------------------------------------------------------


def differential_app() -> App:
    app = App()

    def report(request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "path": request.path,
            "path_params": {k: [type(v).__name__, str(v)] for k, v in request.path_params.items()},
            "query": request.query_params.multi_items(),
            "cookies": request.cookies,
            "headers": {k: ",".join(request.headers.getall(k)) for k in request.headers},
            "host": request.host,
            "url": request.url,
            "content_length": request.content_length,
            "body": request.body().decode("latin-1"),
        }

    for i, path in enumerate(
        [
            "/",
            "/echo/{a}",
            "/p/{rest:path}",
            "/n/{n:int}",
            "/f/{x:float}",
            "/u/{u:uuid}",
            "/dir/{a}/{b}",
        ]
    ):
        app.route(path, methods=["GET", "POST"], name=f"r{i}")(report)
    return app


def R(
    target: bytes, *headers: tuple[bytes, bytes], method: str = "GET", body: Sequence[bytes] = ()
) -> RawRequest:
    return RawRequest(target, method, list(headers), body)


NASTY: dict[str, RawRequest] = {
    "space": R(b"/echo/a%20b"),
    "plus": R(b"/echo/a+b"),
    "utf8": R(b"/echo/%E2%82%AC"),
    "utf8-lowercase-escapes": R(b"/echo/%e2%82%ac"),
    "bad-utf8": R(b"/echo/%ff%fe"),
    "bad-escape": R(b"/echo/%zz%"),
    "nul": R(b"/echo/%00"),
    "crlf-in-param": R(b"/echo/a%0D%0Ab"),
    "tab-in-param": R(b"/echo/%09"),
    "question-mark-in-param": R(b"/echo/a%3Fb?c=d"),
    "hash-in-param": R(b"/echo/a%23b"),
    "encoded-slash": R(b"/echo/a%2Fb"),
    "raw-utf8-bytes": R(b"/echo/caf\xc3\xa9"),
    "raw-latin1-byte": R(b"/echo/caf\xe9"),
    "dot-segments": R(b"/p/a/../../b"),
    "encoded-dots": R(b"/p/%2e%2e/%2E%2E/etc/passwd"),
    "backslashes": R(b"/p/..\\..\\x"),
    "double-slash": R(b"//echo/a"),
    "huge-int": R(b"/n/" + b"9" * 5000),
    "fullwidth-int": R(b"/n/%EF%BC%93"),
    "leading-zeros": R(b"/n/0007"),
    "huge-float": R(b"/f/1." + b"0" * 5000),
    "uuid-uppercase": R(b"/u/12345678-1234-1234-1234-1234567890AB"),
    "slash-redirect": R(b"/dir/a/b/?x=1"),
    "slash-redirect-encoded": R(b"/dir/a%20b/c/"),
    "slash-redirect-crlf": R(b"/dir/a%0D%0A/b/"),
    "slash-redirect-tab": R(b"/dir/%09/b/"),
    "not-found": R(b"/nowhere/%ff"),
    "semicolon-query": R(b"/?a=1;b=2&c"),
    "bad-query": R(b"/?a=%zz&b=%ff&c=+&=&&d"),
    "raw-bytes-query": R(b"/?\xc3\xa9=\xff"),
    "cookies": R(
        b"/", (b"cookie", b'=evil; session=good; q="a\\"b"; o="\\303\\251"; bare; session=shadow')
    ),
    "cookie-raw-utf8": R(b"/", (b"cookie", b"name=caf\xc3\xa9; x=\xff")),
    "host-with-path": R(b"/", (b"host", b"evil.com/../admin")),
    "host-with-at": R(b"/", (b"host", b"x@y")),
    "host-valid": R(b"/", (b"host", b"example.com:8080")),
    "header-non-ascii": R(b"/", (b"x-name", b"caf\xc3\xa9\xff")),
    "header-repeated": R(b"/", (b"x-dup", b"1"), (b"x-dup", b"2")),
    "header-empty": R(b"/", (b"x-empty", b"")),
    "content-length-plus": R(b"/", (b"content-length", b"+3"), method="POST", body=[b"abc"]),
    "content-length-underscore": R(b"/", (b"content-length", b"0_3"), method="POST", body=[b"abc"]),
    "content-length-fullwidth": R(
        b"/", (b"content-length", "\uff13".encode()), method="POST", body=[b"abc"]
    ),
    "content-length-negative": R(b"/", (b"content-length", b"-1"), method="POST", body=[b"abc"]),
    "content-length-conflict": R(
        b"/", (b"content-length", b"3"), (b"content-length", b"4"), method="POST", body=[b"abc"]
    ),
    "content-length-agree": R(
        b"/", (b"content-length", b"3"), (b"content-length", b"3"), method="POST", body=[b"abc"]
    ),
    "short-body": R(b"/", (b"content-length", b"10"), method="POST", body=[b"abc"]),
    "chunked-body": R(b"/", method="POST", body=[b"ab", b"", b"c\xff"]),
    "form-body": R(
        b"/",
        (b"content-type", b'application/x-www-form-urlencoded; charset="x\\"y"'),
        (b"content-length", b"3"),
        method="POST",
        body=[b"a=1"],
    ),
}


def _url_path(url: str) -> str:
    # the host part has no "/" (an invalid Host is replaced): the path starts at the first one
    rest = url.split("://", 1)[1]
    return rest[rest.index("/") :].partition("?")[0]


def _is_url_path(path: str) -> bool:
    """No space, control, non-ASCII, "?" or "#": what would change a URL's meaning."""
    return path.isascii() and path.isprintable() and not any(c in path for c in " ?#")


DIFFERENTIAL = [
    pytest.param(name, server, id=f"{name}-{server}")
    for name, req in NASTY.items()
    for server in ("wsgi-gunicorn", "wsgi-wsgiref")
    # PATH_INFO alone cannot tell "/" from "%2F" (API.md: that needs the raw target)
    if not (server == "wsgi-wsgiref" and b"%2F" in req.target)
]


@pytest.mark.parametrize(("name", "wsgi_server"), DIFFERENTIAL)
def test_wsgi_and_asgi_agree(name: str, wsgi_server: str) -> None:
    req = NASTY[name]
    exact = wsgi_server == "wsgi-gunicorn"
    app = differential_app()
    a = send(app, req, "asgi")
    w = send(app, req, wsgi_server)
    assert w.status == a.status, (w.body, a.body)
    assert a.status < 500
    assert w.header("location") == a.header("location")
    if a.status == 308:
        return
    wj, aj = w.json(), a.json()
    if a.status != 200:
        assert wj == aj
        return
    for report in (wj, aj):  # request.url is a URL: its path is percent-encoded ASCII
        assert _is_url_path(_url_path(report["url"])), report["url"]
    if not exact:
        # wsgiref gives no raw target: the URL path is rebuilt, and may spell its
        # escapes differently, but it must name the same bytes
        assert unquote_to_bytes(_url_path(wj["url"])) == unquote_to_bytes(_url_path(aj["url"]))
        assert wj["url"].partition("?")[2] == aj["url"].partition("?")[2]
        wj["url"] = aj["url"]
    assert wj == aj
