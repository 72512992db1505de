"""Responses: return-value conversion, classes, cookies, streaming, header safety."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from microweb import (
    App,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from microweb.datastructures import MutableHeaders
from microweb.exceptions import HTTPException
from microweb.responses import error_response, to_response, wire_headers, wire_headers_bytes

from .conftest import MakeClient
from .test_security import RawRequest, run_asgi, run_wsgi, wsgi_environ


def _returns(value: Any) -> App:
    app = App()

    @app.get("/")
    def index() -> Any:
        return value

    return app


@pytest.mark.parametrize(
    ("value", "status", "ctype", "body"),
    [
        ({"a": 1}, 200, "application/json", b'{"a":1}'),
        ([1, "é"], 200, "application/json", '[1,"é"]'.encode()),
        ("<b>hi</b>", 200, "text/html; charset=utf-8", b"<b>hi</b>"),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        (("created", 201), 201, "text/html; charset=utf-8", b"created"),
        (({"e": 1}, 422, {"X-A": "b"}), 422, "application/json", b'{"e":1}'),
        (PlainTextResponse("plain", 202), 202, "text/plain; charset=utf-8", b"plain"),
    ],
)
def test_return_value_conversion(
    make_client: MakeClient, value: Any, status: int, ctype: str, body: bytes
) -> None:
    r = make_client(_returns(value)).get("/")
    assert r.status_code == status
    assert r.headers["content-type"] == ctype
    assert r.content == body
    assert r.headers["content-length"] == str(len(body))


def test_none_is_204(make_client: MakeClient) -> None:
    r = make_client(_returns(None)).get("/")
    assert r.status_code == 204
    assert r.content == b""
    assert "content-length" not in r.headers
    assert "content-type" not in r.headers


def test_tuple_headers_are_added(make_client: MakeClient) -> None:
    r = make_client(_returns(({"e": 1}, 422, {"X-A": "b"}))).get("/")
    assert r.headers["x-a"] == "b"


def _raw_headers(app: App, protocol: str) -> list[tuple[str, str]]:
    """The response's header fields as the server gets them (not httpx's merged view)."""
    req = RawRequest(b"/")
    raw = run_wsgi(app, wsgi_environ(req)) if protocol == "wsgi" else run_asgi(app, req)
    assert raw.status == 200, raw.body
    return [(k.lower(), v) for k, v in raw.headers]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # a list of pairs keeps every field of a repeated name, in order
        (
            ("ok", 200, [("Set-Cookie", "session=abc; HttpOnly"), ("Set-Cookie", "csrf=xyz")]),
            [("set-cookie", "session=abc; HttpOnly"), ("set-cookie", "csrf=xyz")],
        ),
        ((b"", 200, (("X-A", "1"), ("x-a", "2"))), [("x-a", "1"), ("x-a", "2")]),
        # its first field of a name replaces what the conversion set
        (
            ("ok", 200, [("Content-Type", "text/plain"), ("Vary", "A"), ("Vary", "B")]),
            [("content-type", "text/plain"), ("vary", "A"), ("vary", "B")],
        ),
        # a dict sets
        (("ok", 200, {"X-A": "b"}), [("x-a", "b")]),
    ],
)
def test_tuple_header_lists_keep_repeated_names(
    protocol: str, value: Any, expected: list[tuple[str, str]]
) -> None:
    names = {k for k, _ in expected}
    fields = [kv for kv in _raw_headers(_returns(value), protocol) if kv[0] in names]
    assert fields == expected


def test_tuple_headers_on_a_returned_response(protocol: str) -> None:
    def fields(headers: Any) -> list[tuple[str, str]]:
        value = (Response(b"", headers={"X-A": "0"}), 200, headers)
        return [kv for kv in _raw_headers(_returns(value), protocol) if kv[0] == "x-a"]

    assert fields([("X-A", "1"), ("X-A", "2")]) == [("x-a", "1"), ("x-a", "2")]
    assert fields({"X-A": "b"}) == [("x-a", "b")]


def test_unsupported_return_is_a_500(make_client: MakeClient) -> None:
    r = make_client(_returns(object())).get("/")
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal Server Error"}


def test_response_classes(make_client: MakeClient) -> None:
    app = App()

    @app.get("/json")
    def j() -> JSONResponse:
        return JSONResponse({"when": datetime.date(2026, 1, 2), "id": uuid.UUID(int=1)}, 201)

    @app.get("/html")
    def h() -> HTMLResponse:
        return HTMLResponse("<p>é</p>", headers={"X-Frame-Options": "DENY"})

    @app.get("/custom")
    def c() -> Response:
        return Response(b"a,b", media_type="text/csv")

    @app.get("/redirect")
    def r() -> RedirectResponse:
        return RedirectResponse("/caf\u00e9?q=é")

    @app.get("/dataclass")
    def d() -> JSONResponse:
        @dataclasses.dataclass
        class P:
            x: int
            tags: set[str]

        return JSONResponse(P(1, {"a"}))

    client = make_client(app)
    resp = client.get("/json")
    assert resp.status_code == 201
    assert resp.json() == {"when": "2026-01-02", "id": "00000000-0000-0000-0000-000000000001"}
    resp = client.get("/html")
    assert resp.text == "<p>é</p>"
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["x-frame-options"] == "DENY"
    assert client.get("/custom").headers["content-type"] == "text/csv; charset=utf-8"
    resp = client.get("/redirect")
    assert resp.status_code == 307
    assert resp.headers["location"] == "/caf%C3%A9?q=%C3%A9"
    assert client.get("/dataclass").json() == {"x": 1, "tags": ["a"]}


def test_json_response_rejects_nan() -> None:
    with pytest.raises(ValueError):
        JSONResponse({"x": float("nan")})


def test_response_attributes_and_headers() -> None:
    r = Response("body", 201, {"X-One": "1"}, media_type="text/plain")
    assert (r.status, r.body) == (201, b"body")
    assert r.headers["x-one"] == "1"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r.headers["X-Two"] = "2"
    r.headers.append("X-Two", "3")
    assert r.headers.getall("x-two") == ["2", "3"]
    r.headers["x-two"] = "4"
    assert r.headers.getall("X-TWO") == ["4"]
    del r.headers["x-two"]
    assert "x-two" not in r.headers


@pytest.mark.parametrize("bad", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\x00b", "snowman ☃"])
def test_header_injection_raises_when_set(bad: str) -> None:
    r = Response()
    with pytest.raises(ValueError):
        r.headers["x-bad"] = bad
    with pytest.raises(ValueError):
        Response(headers={"x-bad": bad})
    if "☃" not in bad:  # a cookie value may be any text: it is quoted
        with pytest.raises(ValueError):
            r.set_cookie("c", bad)
    with pytest.raises(ValueError):
        RedirectResponse("/x" + bad if "☃" not in bad else "/x\r\n")
    with pytest.raises(ValueError):
        Response(media_type="text/plain" + bad)


def test_invalid_header_names_raise() -> None:
    r = Response()
    for name in ["bad name", "a:b", "", "é"]:
        with pytest.raises(ValueError):
            r.headers[name] = "v"


def test_cookies(make_client: MakeClient) -> None:
    app = App()

    @app.get("/set")
    def set_() -> Response:
        r = PlainTextResponse("ok")
        r.set_cookie("session", "abc", max_age=60, httponly=True, secure=True, samesite="strict")
        r.set_cookie("pref", "dark mode; yes", path="/x", domain="example.com")
        r.delete_cookie("old")
        return r

    @app.get("/read")
    def read(request: Any) -> dict[str, str]:
        return request.cookies  # type: ignore[no-any-return]

    client = make_client(app)
    r = client.get("/set")
    cookies = r.headers.get_list("set-cookie")
    assert cookies[0] == "session=abc; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Strict"
    assert cookies[1].startswith('pref="dark\\040mode\\073\\040yes"; Path=/x; Domain=example.com;')
    assert cookies[2].startswith("old=; Max-Age=0; Expires=")
    # a quoted value comes back as it was set
    back = client.get("/read", headers={"cookie": cookies[1].split(";")[0] + "; x=1"})
    assert back.json() == {"pref": "dark mode; yes", "x": "1"}
    with pytest.raises(ValueError):
        Response().set_cookie("c", "v", samesite="sometimes")
    with pytest.raises(ValueError):
        Response().set_cookie("c", "v", path="/; Secure")


def test_sync_and_async_streaming(make_client: MakeClient) -> None:
    app = App()
    closed: list[str] = []

    @app.get("/sync")
    def sync() -> StreamingResponse:
        def gen() -> Iterator[str | bytes]:
            try:
                yield "a"
                yield b"b"
                yield "c"
            finally:
                closed.append("sync")

        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/async")
    async def async_() -> StreamingResponse:
        async def gen() -> AsyncIterator[str]:
            try:
                for part in ("x", "y", "z"):
                    await asyncio.sleep(0)
                    yield part
            finally:
                closed.append("async")

        return StreamingResponse(gen())

    @app.get("/async-from-sync")
    def mixed() -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            yield b"1"
            yield b"2"

        return StreamingResponse(gen())

    client = make_client(app)
    r = client.get("/sync")
    assert r.text == "abc"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "content-length" not in r.headers
    r = client.get("/async")
    assert r.text == "xyz"
    assert r.headers["content-type"] == "application/octet-stream"
    assert client.get("/async-from-sync").text == "12"
    assert sorted(closed) == ["async", "sync"]


def test_streaming_chunks_arrive_one_by_one(make_client: MakeClient) -> None:
    app = App()

    @app.get("/s")
    def s() -> StreamingResponse:
        return StreamingResponse(f"chunk{i}\n" for i in range(5))

    with make_client(app).stream("GET", "/s") as r:
        assert r.status_code == 200
        chunks = list(r.iter_raw())
    assert b"".join(chunks) == b"".join(f"chunk{i}\n".encode() for i in range(5))
    assert len(chunks) == 5


def test_head_does_not_run_the_stream(make_client: MakeClient) -> None:
    app = App()
    produced: list[int] = []

    @app.get("/s")
    def s() -> StreamingResponse:
        def gen() -> Iterator[bytes]:
            produced.append(1)
            yield b"data"

        return StreamingResponse(gen())

    r = make_client(app).head("/s")
    assert r.status_code == 200
    assert r.content == b""
    assert produced == []


def test_a_response_object_can_be_sent_many_times(make_client: MakeClient) -> None:
    shared = PlainTextResponse("same")
    client = make_client(_returns(shared))
    for _ in range(3):
        r = client.get("/")
        assert r.headers.get_list("content-length") == ["4"]


def test_streaming_response_validates_content() -> None:
    with pytest.raises(TypeError):
        StreamingResponse("not an iterable of chunks")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        StreamingResponse(42)  # type: ignore[arg-type]


def test_status_validation() -> None:
    with pytest.raises(ValueError):
        Response(status=99)
    with pytest.raises(ValueError):
        Response(status="200")  # type: ignore[arg-type]

    class Status(int):
        pass

    # the default 200 skips the check by identity: equal values are still checked
    for status in (200.0, True, Status(200), Decimal(200)):
        with pytest.raises(ValueError):
            Response(status=status)  # type: ignore[arg-type]
    assert Response(status=int("200")).status == 200


_TEXT_DEFAULT = ("content-type", "application/octet-stream")


def _made(kind: str) -> Response:
    return {
        "empty": lambda: Response(),
        "bytes": lambda: Response(b"data"),
        "text": lambda: PlainTextResponse("hi", 201),
        "html": lambda: HTMLResponse(b""),
        "json": lambda: JSONResponse({"a": 1}),
        "media": lambda: Response("x", media_type="image/svg+xml"),
        "media-text": lambda: Response("x", media_type="text/csv"),
        "headers": lambda: Response(b"x", headers={"x-a": "1"}, media_type="text/plain"),
        "own-length": lambda: Response(b"xy", headers={"content-length": "2"}),
        "no-content": lambda: Response(b"", 204, media_type="text/plain"),
        "not-modified": lambda: JSONResponse(None, 304),
        "early": lambda: Response(b"", 103),
        "redirect": lambda: RedirectResponse("/x"),
        "stream": lambda: StreamingResponse(iter([b"a"])),
        "stream-typed": lambda: StreamingResponse(iter([b"a"]), media_type="text/plain"),
        "returned-dict": lambda: to_response({"a": [1, 2]}),
        "error": lambda: error_response(HTTPException(404)),
        "error-headers": lambda: error_response(HTTPException(405, headers={"Allow": "GET"})),
    }[kind]()


_KINDS = [
    "empty", "bytes", "text", "html", "json", "media", "media-text", "headers", "own-length",
    "no-content", "not-modified", "early", "redirect", "stream", "stream-typed",
    "returned-dict", "error", "error-headers",
]  # fmt: skip


@pytest.mark.parametrize("kind", _KINDS)
def test_fields_sent_do_not_depend_on_whether_headers_were_looked_at(kind: str) -> None:
    # Until `headers` is first used, the adapters build the fields to send from
    # what __init__ made without looking at each one: the same fields as after
    # a look (both adapters' forms)
    untouched, looked_at = _made(kind), _made(kind)
    made = untouched._headers
    assert looked_at.headers is looked_at.headers
    assert wire_headers(untouched) == wire_headers(looked_at)
    assert wire_headers_bytes(untouched) == wire_headers_bytes(looked_at)
    assert untouched._headers is made  # (sending did not make the headers object)
    assert list(untouched.headers.items()) == list(looked_at.headers.items())


def test_a_returned_dict_is_a_json_response() -> None:
    made, returned = JSONResponse({"a": "é"}), to_response({"a": "é"})
    assert type(returned) is JSONResponse
    assert (returned.status, returned.body) == (made.status, made.body)
    assert list(returned.headers.items()) == list(made.headers.items())
    assert returned.background is None and returned.stream is None


def test_headers_can_be_replaced() -> None:
    r = PlainTextResponse("x")
    r.headers = MutableHeaders({"X-A": "1"})
    assert wire_headers(r) == ([("x-a", "1"), ("content-length", "1"), _TEXT_DEFAULT], True)
    r.headers = {"x-b": "2"}  # type: ignore[assignment]
    assert list(r.headers.items()) == [("x-b", "2")]


@pytest.mark.parametrize("chunk", [10, [104, 105], None, 3.5])
def test_a_stream_of_something_else_than_bytes_or_str_fails(
    make_client: MakeClient, protocol: str, chunk: Any
) -> None:
    import httpx

    app = App()

    @app.get("/s")
    def s() -> StreamingResponse:
        return StreamingResponse(iter([b"ok", chunk]))

    from microweb._wsgi_bodies import StreamAborted

    client = make_client(app)
    # never NUL bytes for an int, never a list turned into bytes: the stream is
    # cut (a WSGI server gets StreamAborted and drops the connection)
    expected = StreamAborted if protocol == "wsgi" else httpx.RemoteProtocolError
    with pytest.raises(expected):
        client.get("/s")
