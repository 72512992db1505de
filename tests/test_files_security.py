"""Bad input to uploads, files and static files, sent raw: never a 5xx, a leak or a file outside.

httpx normalises ``../``, refuses some bytes and frames bodies itself, so these
requests are built the way servers hand them over (SECURITY.md, "Test it like
an attacker"): WSGI environs through ``wsgiref.validate.validator(app.wsgi)``,
as gunicorn (with ``RAW_URI``) and wsgiref (``PATH_INFO`` only) build them,
and ASGI scopes awaited on ``app.asgi`` with hand-made ``receive``/``send``.
Every response head is checked for CR/LF/NUL, every bad request is followed by
a good one (the worker survives), and a differential test checks that WSGI and
ASGI give the same status for every case (invariant 6).

The through-the-client tests of the same features are in test_files.py and
test_forms.py; the raw-request helpers come from test_security.py.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from microweb import App, FileResponse, Request, UploadFile
from microweb.files import MAX_RANGES

from .test_security import Raw, RawRequest, asgi_scope, assert_linear, run_wsgi, wsgi_environ

DATA = bytes(range(256)) * 40  # 10,240 bytes
SECRET = b"SECRET=hunter2"
OUTSIDE = b"outside the root"

# --------------------------------------------------------------------------
# Sending raw requests
# --------------------------------------------------------------------------

VIA = ("asgi", "wsgi-gunicorn", "wsgi-wsgiref")


@pytest.fixture(params=VIA)
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_asgi(app: App, req: RawRequest, *, disconnect: bool = False) -> Raw:
    """Await ``app.asgi`` on `req` as an ASGI server does.

    After the last body message, ``receive`` waits until the response is
    complete and then reports ``http.disconnect``, as a server does for a
    client that stays (a streamed body must not be cut short). `disconnect`:
    the client leaves right after its last chunk, before the body is complete.
    `Raw.received` counts the body messages the app asked for.
    """
    chunks = list(req.body) or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": disconnect or i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []
    received = 0

    async def main() -> None:
        complete = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received < len(messages):
                received += 1
                return messages[received - 1]
            await complete.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete.set()

        # a guard, not a synchronisation: an app stuck on receive() fails the test
        await asyncio.wait_for(app.asgi(asgi_scope(req), receive, send), timeout=30)

    asyncio.run(main())
    assert sent and sent[0]["type"] == "http.response.start", sent
    bodies = sent[1:]
    assert bodies and all(m["type"] == "http.response.body" for m in bodies), sent
    assert all(m.get("more_body") for m in bodies[:-1]), sent
    assert not bodies[-1].get("more_body", False), sent
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in sent[0]["headers"]]
    return Raw(sent[0]["status"], headers, b"".join(m.get("body", b"") for m in bodies), received)


def send(app: App, req: RawRequest, via: str, **kwargs: Any) -> Raw:
    """`req` to `app` the way `via` does; nothing may escape, the head must be clean."""
    try:
        if via == "asgi":
            raw = run_asgi(app, req, **kwargs)
        else:
            raw = run_wsgi(app, wsgi_environ(req, raw_uri=via == "wsgi-gunicorn", **kwargs))
    except AssertionError:
        raise
    except Exception as exc:  # invariant 1: nothing escapes to the server
        raise AssertionError(f"the app let {exc!r} escape to the server ({via})") from exc
    assert raw.status < 500, (raw.status, raw.body[:200])
    for name, value in raw.headers:  # invariant 5: no CR, LF or NUL in the head
        assert not any(c in name + value for c in "\r\n\0"), (name, value)
    return raw


def assert_4xx(raw: Raw, status: int) -> None:
    assert raw.status == status, (raw.status, raw.body[:200])
    assert "detail" in raw.json()


def assert_no_leak(raw: Raw) -> None:
    assert SECRET not in raw.body and OUTSIDE not in raw.body
    assert b"root:" not in raw.body  # /etc/passwd


# --------------------------------------------------------------------------
# The app: two static mounts, a FileResponse, forms from def and async def
# --------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static root with dotfiles, symlinks in and out, a FIFO and a loop."""
    root = tmp_path / "site"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text("body{}")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "404.html").write_text("<h1>lost</h1>")
    (root / ".env").write_bytes(SECRET)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(SECRET)
    (root / "css" / ".hidden.css").write_bytes(SECRET)
    (root / ("n" * 255)).write_text("longest name")
    (tmp_path / "secret.txt").write_bytes(OUTSIDE)
    (tmp_path / "site2").mkdir()  # a sibling whose name starts with the root's
    (tmp_path / "site2" / "x.txt").write_bytes(OUTSIDE)
    os.symlink(tmp_path / "site2", root / "sibling")
    os.symlink("/etc", root / "etc")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "css" / "site.css", root / "inside.css")
    os.symlink(root / "loop", root / "loop")
    os.mkfifo(root / "fifo")  # opening it would block: it must never be opened
    return root


def make_app(site: Path, data_file: Path, **options: Any) -> App:
    app = App(**options)
    app.static("/static", site)
    app.static("/site", site, html=True)

    @app.get("/file")
    def file() -> FileResponse:
        return FileResponse(data_file)

    def describe(form: Any) -> dict[str, Any]:
        fields = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                value = {"filename": value.filename, "size": value.size}
            fields.append([key, value])
        return {"fields": fields}

    @app.post("/form")
    def form(request: Request) -> dict[str, Any]:
        return describe(request.form())

    @app.post("/aform")
    async def aform(request: Request) -> dict[str, Any]:
        return describe(await request.form())

    return app


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def app(site: Path, data_file: Path) -> App:
    return make_app(site, data_file)


def assert_still_serving(app: App, via: str) -> None:
    """Invariant 2: after a bad request, the next one is served normally."""
    assert send(app, RawRequest(b"/static/css/site.css"), via).body == b"body{}"
    r = send(app, RawRequest(b"/file", headers=[(b"range", b"bytes=0-1")]), via)
    assert (r.status, r.body) == (206, DATA[:2])
    good = form_request(b"/form", GOOD_FORM)
    assert send(app, good, via).json() == {"fields": [["a", "1"]]}


# --------------------------------------------------------------------------
# Static files: nothing outside the root, no dotfiles, no listings
# --------------------------------------------------------------------------

HOSTILE_STATIC = [
    b"/../secret.txt",
    b"/css/../../secret.txt",
    b"/%2e%2e/secret.txt",
    b"/%2e%2e/",
    b"/%2E%2E/%2E%2E/etc/passwd",
    b"/..",
    b"/%2e%2e",
    b"/css/..",
    b"/./.env",
    b"/css/./site.css",
    b"/..%2fsecret.txt",
    b"/%2fetc%2fpasswd",
    b"/%252e%252e/secret.txt",  # double-encoded: "%2e%2e" is a name, not found
    b"/..\\secret.txt",
    b"/css\\..\\..\\secret.txt",
    b"/..%5csecret.txt",
    b"/C:%5cWindows",
    b"/C:/Windows",
    b"/%00",
    b"/css/site.css%00",
    b"/css/site.css%00.txt",
    b"/\x00",
    b"/.env",
    b"/%2eenv",
    b"/.git/config",
    b"/.git/",
    b"/css/.hidden.css",
    b"/etc/passwd",
    b"/etc/",
    b"/etc",
    b"/escape.txt",
    b"/up/secret.txt",
    b"/up/site2/x.txt",
    b"/sibling/x.txt",  # resolves to .../site2: not under .../site for all its prefix
    b"/loop",
    b"/fifo",
    b"//etc/passwd",
    b"/css//site.css",
    b"/css/site.css/",
    b"/" + b"n" * 256,
    b"/" + b"a" * 5000,
    b"/" + b"a/" * 600 + b"x",
    b"/" + "é".encode() * 600,
    b"/%ff",
    b"/\xff\xfe",
    b"/%ed%a0%80",  # a UTF-8-encoded surrogate
    b"/missing.txt",
]


@pytest.mark.parametrize("target", HOSTILE_STATIC, ids=lambda t: repr(t[:40]))
def test_static_refuses_hostile_paths(app: App, via: str, target: bytes) -> None:
    raw = send(app, RawRequest(b"/static" + target), via)
    assert_4xx(raw, 404)
    assert raw.json() == {"detail": "Not Found"}
    assert_no_leak(raw)
    assert_still_serving(app, via)


@pytest.mark.parametrize("target", HOSTILE_STATIC, ids=lambda t: repr(t[:40]))
def test_static_html_mode_refuses_hostile_paths(app: App, via: str, target: bytes) -> None:
    # html=True adds index.html, redirects and a 404.html, and nothing else
    raw = send(app, RawRequest(b"/site" + target), via)
    assert_no_leak(raw)
    if raw.status == 308:  # a directory under the root (css/.., etc/ never qualify)
        location = raw.header("location")
        assert location is not None and location.startswith("/site/"), location
        assert ".." not in location.split("/") and not location.startswith("//")
    else:  # the 404.html page; or, for a NUL, the router's own 404 before any handler
        assert raw.status == 404
        assert raw.body in (b"<h1>lost</h1>", b'{"detail":"Not Found"}')
    assert_still_serving(app, via)


def test_static_controls(app: App, via: str) -> None:
    # what must still work next to everything refused above
    assert send(app, RawRequest(b"/static/inside.css"), via).body == b"body{}"
    assert send(app, RawRequest(b"/static/" + b"n" * 255), via).body == b"longest name"
    assert send(app, RawRequest(b"/static/css%2Fsite.css"), via).body == b"body{}"
    r = send(app, RawRequest(b"/site/docs?x=1"), via)
    assert (r.status, r.header("location")) == (308, "/site/docs/?x=1")
    assert send(app, RawRequest(b"/site/docs/"), via).body == b"<h1>docs</h1>"


def test_a_path_length_that_is_refused_is_refused_early(app: App, via: str) -> None:
    # 1 MiB of path: refused by length before any file system call, and fast
    raw = send(app, RawRequest(b"/static/" + b"a/" * (512 * 1024)), via)
    assert_4xx(raw, 404)
    assert_still_serving(app, via)


@pytest.mark.parametrize("query", [b"x=\x7f", b"x=\x00", b"x=\x1b", b"x=\t"])
@pytest.mark.parametrize("path", [b"/site/docs", b"/site"])
def test_html_redirects_with_a_control_character_in_the_query(
    app: App, via: str, path: bytes, query: bytes
) -> None:
    # wsgiref's server passes these bytes through in QUERY_STRING (it splits the
    # request line on whitespace only); the redirect must not become a 500
    raw = send(app, RawRequest(path + b"?" + query), via)
    assert raw.status in (308, 400), (raw.status, raw.body)
    assert_still_serving(app, via)


# --------------------------------------------------------------------------
# Range and conditional requests
# --------------------------------------------------------------------------

#: (Range header bytes, status): invalid syntax is ignored (200, the whole file).
RANGES: list[tuple[bytes, int]] = [
    (b"bytes=0-1_0", 200),  # int() accepts "1_0"
    (b"bytes=+1-3", 200),  # and "+1"
    (b"bytes=-+3", 200),
    (b"bytes= 0-1", 206),
    (b"bytes=0x1-2", 200),
    (b"bytes=1e3-", 200),
    (b"bytes=1-2-3", 200),
    (b"bytes=5-2", 200),
    (b"bytes=", 200),
    (b"bytes=,", 200),
    (b"bytes=-", 200),
    (b"bytes 0-1", 200),
    (b"items=0-1", 200),
    (b"=0-1", 200),
    ("bytes=\uff10-1".encode(), 200),  # fullwidth digit, as UTF-8 bytes
    ("bytes=\u0663-4".encode(), 200),  # Arabic-Indic digit
    (b"bytes=\xb2-4", 200),  # latin-1 superscript two: isdigit() is true
    (b"bytes=0-1\x00", 200),
    (b"bytes=0-" + b"9" * 5000, 200),  # never int() of 5,000 digits
    (b"bytes=" + b"9" * 5000 + b"-", 200),
    (b"bytes=-" + b"9" * 5000, 200),
    (b"bytes=0-" + b"9" * 19, 206),  # as long as a number may be: the whole file
    (b"bytes=0-" + b"9" * 20, 200),
    (b"bytes=20000-", 416),  # RFC 9110 14.1.2: first-pos at or past the end
    (b"bytes=0-1,20000-", 206),  # the satisfiable range only
    (b"bytes=-0", 416),
    (b"bytes=0-1,0-1", 200),  # overlapping: the whole file
    (b"bytes=0-5,3-9", 200),
    (b"bytes=" + b",".join(b"%d-%d" % (i * 3, i * 3) for i in range(MAX_RANGES)), 206),
    (b"bytes=" + b",".join(b"%d-%d" % (i * 3, i * 3) for i in range(MAX_RANGES + 1)), 416),
    (b"bytes=" + b"0-0," * 1000, 416),
    (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(1000)), 416),
    (b"bytes=" + b" " * 100_000 + b"0-1", 206),
    (b"bytes=0-1" + b"," * 100_000, 416),
]


@pytest.mark.parametrize(("header", "status"), RANGES, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("path", [b"/file", b"/static/data.bin"])
def test_hostile_range_headers(
    app: App, site: Path, via: str, path: bytes, header: bytes, status: int
) -> None:
    (site / "data.bin").write_bytes(DATA)
    raw = send(app, RawRequest(path, headers=[(b"range", header)]), via)
    assert raw.status == status, (raw.status, raw.body[:100])
    if status == 200:  # ignored: the whole file, as if there were no Range
        assert raw.body == DATA
        assert raw.header("content-range") is None
    elif status == 416:
        assert raw.header("content-range") == f"bytes */{len(DATA)}"
        assert raw.body == b""
    else:
        assert raw.header("content-length") == str(len(raw.body))
    assert_still_serving(app, via)


def test_many_ranges_are_refused_in_linear_time(app: App) -> None:
    # Starlette CVE-2025-62727: quadratic range merging. 10x the ranges, ~10x the time
    def make(n: int) -> dict[str, Any]:
        ranges = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(n))
        return wsgi_environ(RawRequest(b"/file", headers=[(b"range", ranges)]))

    def run(environ: dict[str, Any]) -> None:
        assert run_wsgi(app, dict(environ, **{"wsgi.input": io.BytesIO()})).status == 416

    assert_linear(run, make, 1000)


@pytest.mark.parametrize(
    "header",
    [
        b"garbage",
        b"",
        b" ",
        b"\xff\xfe",
        b"0",
        b"-1",
        b"9" * 5000,
        b"x" * 100_000,
        b"Sat, 01 Jan 99999999 00:00:00 GMT",  # year out of range
        b"Sat, 32 Jan 2000 00:00:00 GMT",
        b"Mon, 01 Jan 0000 00:00:00 GMT",
        b"Sun, 06 Nov 1994 08:49:37 +9999",
        b"Sun, 06 Nov 1994 08:49:37 GMT\x00",
        b"Sun, 06 Nov 1994 25:61:61 GMT",
        b"Sun, 06 Nov " + b"1" * 60 + b" 08:49:37 GMT",
    ],
    ids=lambda v: repr(v)[:30],
)
@pytest.mark.parametrize("name", [b"if-modified-since", b"if-range"])
def test_garbage_dates_are_ignored(app: App, via: str, name: bytes, header: bytes) -> None:
    # If-Modified-Since garbage: no 304; If-Range garbage: the Range is not honoured
    headers = [(name, header)] + ([(b"range", b"bytes=0-1")] if name == b"if-range" else [])
    raw = send(app, RawRequest(b"/file", headers=headers), via)
    assert (raw.status, raw.body) == (200, DATA)
    assert_still_serving(app, via)


@pytest.mark.parametrize(
    "header",
    [b"\xff", b'"' * 10_000, b"W/" * 10_000, b", " * 50_000, b'"a",' * 20_000, b"*x"],
    ids=lambda v: repr(v)[:20],
)
def test_garbage_etags_are_no_match(app: App, via: str, header: bytes) -> None:
    raw = send(app, RawRequest(b"/file", headers=[(b"if-none-match", header)]), via)
    assert (raw.status, raw.body) == (200, DATA)


def test_long_if_none_match_lists_take_linear_time(app: App) -> None:
    def make(n: int) -> dict[str, Any]:
        return wsgi_environ(RawRequest(b"/file", headers=[(b"if-none-match", b'"x", ' * n)]))

    def run(environ: dict[str, Any]) -> None:
        assert run_wsgi(app, dict(environ, **{"wsgi.input": io.BytesIO()})).status == 200

    assert_linear(run, make, 2000)


def test_validators_still_work_raw(app: App, via: str) -> None:
    first = send(app, RawRequest(b"/file"), via)
    etag, modified = first.header("etag"), first.header("last-modified")
    assert etag is not None and modified is not None
    for name, value in ((b"if-none-match", etag), (b"if-modified-since", modified)):
        raw = send(app, RawRequest(b"/file", headers=[(name, value.encode())]), via)
        assert (raw.status, raw.body) == (304, b"")
    future = b"Fri, 01 Jan 9999 00:00:00 GMT"
    raw = send(app, RawRequest(b"/file", headers=[(b"if-modified-since", future)]), via)
    assert raw.status == 304


# --------------------------------------------------------------------------
# Multipart
# --------------------------------------------------------------------------


def part(disposition: bytes, content: bytes, *headers: bytes, boundary: bytes = b"B") -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return (
        b"--" + boundary + b"\r\nContent-Disposition: form-data; " + disposition + b"\r\n"
        + head + b"\r\n" + content + b"\r\n"
    )  # fmt: skip


def close(boundary: bytes = b"B") -> bytes:
    return b"--" + boundary + b"--\r\n"


GOOD_FORM = part(b'name="a"', b"1") + close()
CTYPE = b"multipart/form-data; boundary=B"


def form_request(
    path: bytes,
    body: bytes,
    ctype: bytes = CTYPE,
    *,
    declared: bool = True,
    chunk: int = 65536,
    cuts: Sequence[int] = (),
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> RawRequest:
    """A multipart POST whose body arrives in `chunk`-byte pieces, or cut at `cuts`."""
    headers = [(b"content-type", ctype), *extra]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    if cuts:
        edges = [0, *cuts, len(body)]
        chunks = [body[a:b] for a, b in itertools.pairwise(edges)]
    else:
        chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return RawRequest(path, "POST", headers, chunks)


@pytest.fixture(params=["/form", "/aform"], ids=["def", "async"])
def form_path(request: pytest.FixtureRequest) -> bytes:
    return str(request.param).encode()


@pytest.fixture
def spooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every temporary file a form parse creates; each must be closed when the request ends."""
    files: list[Any] = []
    original = UploadFile.spooled

    def spy(max_memory: int) -> Any:
        f = original(max_memory)
        files.append(f)
        return f

    monkeypatch.setattr(UploadFile, "spooled", staticmethod(spy))
    yield files
    assert all(f.closed for f in files), "a form file was left open"


def _ambiguous(boundary_param: bytes) -> tuple[bytes, bytes]:
    """A Content-Type naming two boundaries, and a body that parses under the first."""
    return b"multipart/form-data; " + boundary_param, (
        part(b'name="a"', b"1", boundary=b"a") + close(b"a")
    )


#: name -> (Content-Type, body, status)
BAD_BOUNDARIES: dict[str, tuple[bytes, bytes, int]] = {
    "duplicate": (*_ambiguous(b"boundary=a; boundary=b"), 400),
    "duplicate-case": (*_ambiguous(b"boundary=a; BOUNDARY=b"), 400),
    "duplicate-quoted": (*_ambiguous(b'boundary="a"; boundary=b'), 400),
    "duplicate-space-before-equals": (*_ambiguous(b"boundary=a; boundary =b"), 400),
    "duplicate-spaces-first": (*_ambiguous(b"boundary = a; boundary=b"), 400),
    "missing": (b"multipart/form-data", GOOD_FORM, 400),
    "empty": (b"multipart/form-data; boundary=", GOOD_FORM, 400),
    "empty-quoted": (b'multipart/form-data; boundary=""', GOOD_FORM, 400),
    "71-characters": (
        b"multipart/form-data; boundary=" + b"b" * 71,
        part(b'name="a"', b"1", boundary=b"b" * 71) + close(b"b" * 71),
        400,
    ),
    "huge": (b"multipart/form-data; boundary=" + b"b" * 100_000, GOOD_FORM, 400),
    "trailing-space": (b'multipart/form-data; boundary="B "', GOOD_FORM, 400),
    "control-character": (b"multipart/form-data; boundary=B\x7f", GOOD_FORM, 400),
    "nul": (b"multipart/form-data; boundary=B\x00", GOOD_FORM, 400),
    "non-ascii": (b"multipart/form-data; boundary=\xc3\xa9", GOOD_FORM, 400),
}


@pytest.mark.parametrize("name", list(BAD_BOUNDARIES))
def test_bad_boundaries(
    app: App, via: str, form_path: bytes, spooled: list[Any], name: str
) -> None:
    ctype, body, status = BAD_BOUNDARIES[name]
    assert_4xx(send(app, form_request(form_path, body, ctype), via), status)
    assert_still_serving(app, via)


def test_a_70_character_boundary_is_fine(app: App, via: str, form_path: bytes) -> None:
    b = b"b" * 70
    req = form_request(form_path, part(b'name="a"', b"1", boundary=b) + close(b), CTYPE[:-1] + b)
    assert send(app, req, via).json() == {"fields": [["a", "1"]]}


SPLIT_FORM = part(b'name="a"', b"1") + part(b'name="f"; filename="x.txt"', b"hello") + close()


@pytest.mark.parametrize("cut", range(1, len(SPLIT_FORM)))
def test_a_good_body_parses_wherever_it_is_cut(app: App, form_path: bytes, cut: int) -> None:
    # an ASGI server hands the body over as it comes off the network: any two pieces
    raw = send(app, form_request(form_path, SPLIT_FORM, cuts=[cut]), "asgi")
    assert raw.json() == {"fields": [["a", "1"], ["f", {"filename": "x.txt", "size": 5}]]}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_a_good_body_parses_in_tiny_pieces(app: App, form_path: bytes, size: int) -> None:
    raw = send(app, form_request(form_path, SPLIT_FORM, chunk=size), "asgi")
    assert raw.json() == {"fields": [["a", "1"], ["f", {"filename": "x.txt", "size": 5}]]}


@pytest.mark.parametrize("total", [65534, 65535, 65536, 65537, 65538, 65539, 131074])
def test_uploads_around_the_read_size_parse(
    app: App, via: str, form_path: bytes, total: int
) -> None:
    # WSGI bodies are read 64 KiB at a time, so for these sizes the last read holds
    # only the end of the body (the CRLF after the closing delimiter, for 65538)
    head = b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    tail = b"\r\n--B--\r\n"
    body = head + b"z" * (total - len(head) - len(tail)) + tail
    raw = send(app, form_request(form_path, body), via)
    assert raw.status == 200, raw.body
    assert raw.json() == {"fields": [["f", {"filename": "x", "size": total - 72}]]}


EPILOGUE = b"epilogue\r\n"  # RFC 2046 allows text after the closing delimiter


def test_an_epilogue_gets_one_answer_wherever_the_body_is_cut(app: App, form_path: bytes) -> None:
    # accepted or refused, but not depending on how the network split the body
    body = SPLIT_FORM + EPILOGUE
    whole = send(app, form_request(form_path, body), "asgi").status
    statuses = {
        cut: send(app, form_request(form_path, body, cuts=[cut]), "asgi").status
        for cut in range(1, len(body))
    }
    assert {cut: s for cut, s in statuses.items() if s != whole} == {}, whole


def test_an_epilogue_gets_one_answer_whatever_the_body_size(
    app: App, via: str, form_path: bytes
) -> None:
    # under WSGI the body is read 64 KiB at a time: here the epilogue is the
    # start of the second read; under ASGI it comes in the same message
    small = form_request(form_path, SPLIT_FORM + EPILOGUE)
    head = b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    tail = b"\r\n--B--\r\n"
    big = head + b"z" * (65536 - len(head) - len(tail)) + tail + EPILOGUE
    assert len(big) == 65536 + len(EPILOGUE)
    big_raw = send(app, form_request(form_path, big, chunk=len(big)), via)
    small_raw = send(app, small, via)
    assert big_raw.status == small_raw.status, (big_raw.body, small_raw.body)


@pytest.mark.parametrize("size", [1000, 66_000, 200_000])
def test_a_preamble_gets_one_answer_however_it_arrives(
    app: App, form_path: bytes, size: int
) -> None:
    # the same bytes: in one ASGI message, in 64 KiB or 1 KiB messages, and
    # read 64 KiB at a time by the WSGI side
    body = b"p" * size + b"\r\n" + SPLIT_FORM
    statuses = {
        "asgi, one message": send(app, form_request(form_path, body, chunk=len(body)), "asgi"),
        "asgi, 64 KiB": send(app, form_request(form_path, body), "asgi"),
        "asgi, 1 KiB": send(app, form_request(form_path, body, chunk=1024), "asgi"),
        "wsgi": send(app, form_request(form_path, body), "wsgi-gunicorn"),
    }
    assert len({raw.status for raw in statuses.values()}) == 1, {
        how: raw.status for how, raw in statuses.items()
    }


def test_two_content_type_headers_are_400(app: App, via: str, form_path: bytes) -> None:
    # Ambiguity fails closed: one reader takes the first field, another the last.
    # (A WSGI server folds them into one comma-joined value; ASGI keeps both.)
    body = part(b'name="a"', b"1", boundary=b"a") + close(b"a")
    second = [(b"content-type", b"multipart/form-data; boundary=b")]
    req = form_request(form_path, body, b"multipart/form-data; boundary=a", extra=second)
    assert_4xx(send(app, req, via), 400)
    assert_still_serving(app, via)


def _parts(n: int, disposition: bytes = b'name="f"') -> bytes:
    return part(disposition, b"v") * n + close()


#: name -> (body, status); each body is sent with its Content-Length
BAD_BODIES: dict[str, tuple[bytes, int]] = {
    "part-header-over-8k": (part(b'name="a"', b"1", b"X-Big: " + b"h" * 9000) + close(), 413),
    "long-disposition": (part(b'name="' + b"n" * 9000 + b'"', b"1") + close(), 413),
    "nine-part-headers": (part(b'name="a"', b"1", *[b"X-H: v"] * 8) + close(), 413),
    "5000-tiny-fields": (_parts(5000), 413),
    "200-tiny-files": (_parts(200, b'name="f"; filename="x"'), 413),
    "5000-empty-parts": (b"--B\r\n\r\n\r\n" * 5000 + close(), 400),
    "truncated-in-part-headers": (b'--B\r\nContent-Disposition: form-da', 400),
    "truncated-in-content": (b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n12', 400),
    "truncated-at-delimiter": (part(b'name="a"', b"1") + b"--B", 400),
    "no-closing-delimiter": (part(b'name="a"', b"1"), 400),
    "truncated-big-file": (part(b'name="f"; filename="x"', b"z" * (1024 * 1024))[:-20], 400),
    "empty": (b"", 400),
    "garbage": (b"\x00\xff" * 1000, 400),
    "preamble-flood": (b"p" * (1024 * 1024) + GOOD_FORM, 400),
    "preamble-line-flood": (b"p\r\n" * (300 * 1024) + GOOD_FORM, 400),
    "epilogue-flood": (GOOD_FORM + b"e" * (1024 * 1024), 400),
    "epilogue-line-flood": (GOOD_FORM + b"e\r\n" * (300 * 1024), 400),
    "lf-only": (GOOD_FORM.replace(b"\r\n", b"\n"), 400),
    "folded-part-header": (b'--B\r\nContent-Disposition: form-data;\r\n name="a"\r\n\r\n1\r\n'
                           + close(), 400),
    "no-part-headers": (b"--B\r\n\r\n1\r\n" + close(), 400),
    "no-name": (b"--B\r\nContent-Disposition: form-data\r\n\r\n1\r\n" + close(), 400),
    "not-form-data": (b'--B\r\nContent-Disposition: attachment; name="a"\r\n\r\n1\r\n'
                      + close(), 400),
    "bad-filename-star": (part(b"name=\"f\"; filename*=klingon''x", b"1") + close(), 400),
    "text-not-utf8": (part(b'name="a"', b"\xff\xfe") + close(), 400),
    "unknown-charset": (part(b'name="a"', b"1", b"Content-Type: text/plain; charset=x-nope")
                        + close(), 400),
    "field-over-1mib": (part(b'name="a"', b"x" * (1024 * 1024 + 1)) + close(), 413),
    # ambiguity fails closed: which header, which name, which filename?
    "two-content-dispositions": (b'--B\r\nContent-Disposition: form-data; name="a"\r\n'
                                 b'Content-Disposition: form-data; name="b"\r\n\r\n1\r\n'
                                 + close(), 400),
    "duplicate-name-parameter": (part(b'name="a"; name="b"', b"1") + close(), 400),
    "duplicate-filename-parameter": (part(b'name="f"; filename="a"; filename="b"', b"1")
                                     + close(), 400),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_multipart_bodies(
    app: App, via: str, form_path: bytes, spooled: list[Any], name: str
) -> None:
    body, status = BAD_BODIES[name]
    assert_4xx(send(app, form_request(form_path, body), via), status)
    assert_still_serving(app, via)


#: A part that ends right after its headers, with no CRLF before the next
#: delimiter: by RFC 2046 the next part is its body, by Werkzeug an empty field
#: and a next part. Either reading lets a field past one parser into another.
#: The same with a bare LF or CR before the delimiter, where Werkzeug ends the
#: part and the strict parser does not.
ENDS_AFTER_HEADERS = {
    "field": b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n'
    + part(b'name="b"', b"1")
    + close(),
    "file": b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    + part(b'name="role"', b"admin")
    + close(),
    "bare-lf": b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\n'
    + part(b'name="admin"', b"1")
    + close(),
    "bare-cr": b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r'
    + part(b'name="admin"', b"1")
    + close(),
    "empty-then-lf": b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n\n'
    + part(b'name="admin"', b"1")
    + close(),
    "file-bare-lf": b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    + b"z" * 100_000
    + b"\n"
    + part(b'name="admin"', b"1")
    + close(),
}


@pytest.mark.parametrize("body", list(ENDS_AFTER_HEADERS.values()), ids=list(ENDS_AFTER_HEADERS))
@pytest.mark.parametrize("chunk", [65536, 1, 3])
def test_a_part_that_ends_right_after_its_headers_is_400(
    app: App, via: str, form_path: bytes, spooled: list[Any], body: bytes, chunk: int
) -> None:
    # never one field holding the next part's headers, nor a next part
    assert_4xx(send(app, form_request(form_path, body, chunk=chunk), via), 400)
    assert all(f.closed for f in spooled)
    assert_still_serving(app, via)


@pytest.mark.parametrize("content", [b"--", b"-", b"--A", b"--\r\n", b"x--B", b"\n-B", b"\r\n-"])
def test_a_part_may_start_with_what_is_not_the_delimiter(
    app: App, via: str, form_path: bytes, content: bytes
) -> None:
    body = part(b'name="a"', content) + close()
    for chunk in (65536, 1):
        raw = send(app, form_request(form_path, body, chunk=chunk), via)
        assert raw.json() == {"fields": [["a", content.decode()]]}


@pytest.mark.parametrize(
    "name", ["5000-tiny-fields", "preamble-flood", "preamble-line-flood", "epilogue-line-flood"]
)
def test_reading_stops_at_the_error(app: App, via: str, form_path: bytes, name: str) -> None:
    # a limit or a flood is refused as it streams in, not after reading it all
    body, status = BAD_BODIES[name]
    req = form_request(form_path, body, chunk=4096)
    if via == "asgi":
        raw = run_asgi(app, req)
        assert raw.received < len(req.body), (raw.received, len(req.body))
    else:
        stream = io.BytesIO(body)
        raw = run_wsgi(app, wsgi_environ(req, raw_uri=via == "wsgi-gunicorn", stream=stream))
        assert stream.tell() < len(body) // 2, (stream.tell(), len(body))
    assert_4xx(raw, status)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_that_ends_early(
    app: App, via: str, form_path: bytes, spooled: list[Any], declared: bool
) -> None:
    # a client that stops sending half-way through a big file part: WSGI sees the
    # stream end short of its Content-Length (or a closed chunked stream: an
    # incomplete multipart body), ASGI sees http.disconnect
    head = b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    sent = head + b"z" * (700 * 1024)  # past the in-memory threshold: on disk
    full = len(sent) + 1024 * 1024
    extra = [(b"content-length", str(full).encode())] if declared else []
    req = form_request(form_path, sent, extra=extra, declared=False)
    raw = send(app, req, via, **({"disconnect": True} if via == "asgi" else {}))
    assert_4xx(raw, 400)
    assert spooled and all(f.closed for f in spooled)
    assert_still_serving(app, via)


def test_thousands_of_parts_parse_in_linear_time(site: Path, data_file: Path) -> None:
    app = make_app(site, data_file, max_form_fields=10**6, max_body_size=1 << 30)

    def make(n: int) -> dict[str, Any]:
        return wsgi_environ(form_request(b"/form", _parts(n)))

    def run(environ: dict[str, Any]) -> None:
        body = environ["wsgi.input"].getvalue()
        raw = run_wsgi(app, dict(environ, **{"wsgi.input": io.BytesIO(body)}))
        assert raw.status == 200

    assert_linear(run, make, 500)


@pytest.mark.parametrize("star", [b"abc", b"UTF-8'only-one-quote"])
def test_a_malformed_filename_star_never_turns_a_file_into_text(
    app: App, via: str, form_path: bytes, star: bytes
) -> None:
    # RFC 6266 4.3: a filename* that cannot be understood leaves the filename;
    # a part that names a file is a file, never a text field (nor subject to
    # the text-field limits and decoding)
    body = part(b'name="f"; filename="x.bin"; filename*=' + star, b"hello") + close()
    raw = send(app, form_request(form_path, body), via)
    if raw.status != 400:
        assert raw.json() == {"fields": [["f", {"filename": "x.bin", "size": 5}]]}


def test_hostile_filenames_are_data(app: App, via: str, form_path: bytes) -> None:
    # not cleaned, not used: the form reports them as sent, and the head stays clean
    names = [
        (b'filename="../../etc/passwd"', "../../etc/passwd"),
        (b'filename="/etc/passwd"', "/etc/passwd"),
        (b'filename="a%0D%0ASet-Cookie: x=1"', "a\r\nSet-Cookie: x=1"),
        (b'filename="nul%00.txt"', "nul%00.txt"),
        (b"filename*=UTF-8''%2E%2E%2F%00%0D%0A", "../\x00\r\n"),
    ]
    body = b"".join(part(b'name="f"; ' + wire, b"x") for wire, _ in names) + close()
    raw = send(app, form_request(form_path, body), via)
    got = [field[1]["filename"] for field in raw.json()["fields"]]
    assert got == [name for _, name in names]
    assert not any(k.lower() == "set-cookie" for k, _ in raw.headers)


# --------------------------------------------------------------------------
# Differential: WSGI and ASGI agree on every case (invariant 6)
# --------------------------------------------------------------------------


def _differential_cases() -> dict[str, RawRequest]:
    cases: dict[str, RawRequest] = {}
    for i, target in enumerate(HOSTILE_STATIC):
        cases[f"static-{i} {target[:30]!r}"] = RawRequest(b"/static" + target)
        cases[f"html-{i} {target[:30]!r}"] = RawRequest(b"/site" + target)
    for i, (header, _) in enumerate(RANGES):
        cases[f"range-{i} {header[:30]!r}"] = RawRequest(b"/file", headers=[(b"range", header)])
    for name, (ctype, body, _) in BAD_BOUNDARIES.items():
        cases[f"boundary {name}"] = form_request(b"/form", body, ctype)
    for name, (body, _) in BAD_BODIES.items():
        cases[f"body {name}"] = form_request(b"/aform", body)
    cases["two content types"] = form_request(
        b"/form",
        part(b'name="a"', b"1", boundary=b"a") + close(b"a"),
        b"multipart/form-data; boundary=a",
        extra=[(b"content-type", b"multipart/form-data; boundary=b")],
    )
    cases["short body"] = form_request(
        b"/form", GOOD_FORM[:-5], declared=False, extra=[(b"content-length", b"1000")]
    )
    return cases


DIFFERENTIAL = _differential_cases()


@pytest.mark.parametrize("wsgi_server", ["wsgi-gunicorn", "wsgi-wsgiref"])
@pytest.mark.parametrize("name", list(DIFFERENTIAL))
def test_wsgi_and_asgi_agree(app: App, name: str, wsgi_server: str) -> None:
    req = DIFFERENTIAL[name]
    a = send(app, req, "asgi")
    w = send(app, req, wsgi_server)
    assert w.status == a.status, (w.body[:200], a.body[:200])
    for header in ("content-length", "content-range", "location"):
        assert w.header(header) == a.header(header), header
    if a.status >= 400:
        assert w.body == a.body
    elif not (a.header("content-type") or "").startswith("multipart/byteranges"):
        assert w.body == a.body  # (a multipart answer has a random boundary)
