"""Bad input for typed parameters (issue 10, SECURITY.md): deep JSON, huge
numbers, repeated keys, huge headers and invalid UTF-8 each get a bounded 4xx
(or a well-formed answer), never a 500, in linear time, and no 422 echoes
more than 100 characters of the input. Hypothesis properties: converting
parameters never answers 5xx, and WSGI and ASGI give the same answer.
Mistakes in a typed handler's signature are a TypeError at registration that
names the handler and the parameter."""

from __future__ import annotations

import decimal
import enum
import io
import logging
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microweb import App, Body, Cookie, Form, Header, Path, Query

from .conftest import MakeClient
from .test_security import Raw, RawRequest, assert_linear, run_wsgi, send, wsgi_environ


class Item(msgspec.Struct):
    n: int
    rest: list[Any] = []


class PItem(pydantic.BaseModel):
    n: int
    rest: list[Any] = []


class PMap(pydantic.BaseModel):
    m: dict[str, int]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def bad_input_app() -> App:
    app = App()

    @app.get("/q")
    def q(
        i: int = 0,
        f: float = 0.0,
        d: decimal.Decimal = decimal.Decimal(0),
        s: str = "",
        xs: list[int] = [],  # noqa: B006 - copied per request
        h: Annotated[str, Header()] = "",
        hi: Annotated[int, Header()] = 0,
        short: Annotated[str, Header(max_length=64)] = "",
    ) -> dict[str, Any]:
        # sizes, not values: the answers stay small
        return {"i": i, "f": f, "d": len(str(d)), "s": s[:10], "xs": len(xs), "h": len(h),
                "hi": hi}  # fmt: skip

    @app.get("/p/{n}")
    async def p(n: int) -> str:
        return str(n)

    @app.post("/item")
    def item(item: Item) -> str:
        return str(item.n)

    @app.post("/pitem")
    async def pitem(item: PItem) -> str:
        return str(item.n)

    @app.post("/any")
    def any_body(body: Annotated[Any, Body()]) -> str:
        return type(body).__name__

    @app.post("/int")
    async def int_body(body: Annotated[int, Body()]) -> str:
        return str(body)

    return app


JSON = {"content-type": "application/json"}


@pytest.fixture
def client(make_client: MakeClient) -> Any:
    return make_client(bad_input_app())


def assert_no_echo(r: Any, run: str) -> None:
    """The answer is a 4xx, and has no 101 characters of the input in a row."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert run * 101 not in r.text


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def test_deeply_nested_json_is_a_400(client: Any) -> None:
    deep = _deep(100_000)
    for path, body in [
        ("/item", deep),  # not even an object: the "is it JSON at all" check recursed
        ("/item", b'{"n": 1, "rest": ' + deep + b"}"),  # Any inside a model
        ("/any", deep),
        ("/pitem", b'{"n": 1, "rest": ' + deep + b"}"),
    ]:
        r = client.post(path, content=body, headers=JSON)
        assert r.status_code == 400, (path, r.text)
        assert_no_echo(r, "[")
    # nesting a JSON document may well have is fine
    r = client.post("/item", content=b'{"n": 1, "rest": ' + _deep(50) + b"}", headers=JSON)
    assert (r.status_code, r.text) == (200, "1")


def test_a_5000_digit_number_is_a_422_for_int_and_float(client: Any) -> None:
    big = "9" * 5000
    for target, loc in [
        (f"/q?i={big}", ["query", "i"]),
        (f"/q?f={big}", ["query", "f"]),
        (f"/q?f=0.{big}e99999", ["query", "f"]),
        (f"/p/{big}", ["path", "n"]),
    ]:
        r = client.get(target)
        assert r.status_code == 422, (target, r.text)
        assert r.json()["detail"][0]["loc"] == loc
        assert_no_echo(r, "9")
    # Python's int() refuses 4,300 digits and more: never a 500 in the headers
    r = client.get("/q", headers={"hi": big})
    assert r.json()["detail"][0]["loc"] == ["header", "hi"]
    # a Decimal holds any number of digits exactly: a well-formed answer
    assert client.get(f"/q?d={big}").json()["d"] == 5000


def test_a_5000_digit_number_in_a_json_body_is_a_422(client: Any) -> None:
    big = b"9" * 5000
    for path, body, loc in [
        ("/item", b'{"n": ' + big + b"}", ["body", "n"]),
        ("/int", big, ["body"]),
        ("/pitem", b'{"n": ' + big + b"}", ["body"]),  # pydantic's parser: no path
        ("/any", big, ["body"]),
    ]:
        r = client.post(path, content=body, headers=JSON)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["detail"][0]["loc"] == loc
        assert_no_echo(r, "9")


def test_10000_repeated_query_keys(client: Any) -> None:
    r = client.get("/q?" + "xs=1&" * 10_000)
    assert r.json()["xs"] == 10_000
    r = client.get("/q?" + "i=7&" * 10_000)  # a scalar takes the first
    assert r.json()["i"] == 7
    r = client.get("/q?" + "xs=x&" * 10_000)
    assert r.json()["detail"] == [
        {"loc": ["query", "xs", 0], "msg": "Expected `int`, got `str`", "type": "type_error"}
    ]


def test_a_1mb_header_value(client: Any) -> None:
    huge = "x" * 1_000_000
    assert client.get("/q", headers={"h": huge}).json()["h"] == 1_000_000
    r = client.get("/q", headers={"short": huge})
    assert r.json()["detail"][0]["loc"] == ["header", "short"]
    assert_no_echo(r, "x")


def test_invalid_utf8_in_a_query_value(client: Any) -> None:
    # a str parameter gets U+FFFD, as request.query_params does; an int one a 422
    r = client.get("/q?s=a%ff%fe")
    assert (r.status_code, r.json()["s"]) == (200, "a\ufffd\ufffd")
    r = client.get("/q?i=%ff1")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "i"]


def test_no_422_echoes_more_than_100_characters_of_a_key(make_client: MakeClient) -> None:
    # pydantic puts dict keys of the input into its error paths
    app = App()

    @app.post("/m")
    def m(body: PMap) -> None: ...

    key = "k" * 5000
    r = make_client(app).post("/m", json={"m": {key: "x"}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "m", "k" * 97 + "..."]
    assert_no_echo(r, "k")


def _wsgi_runner(app: App, expect: int) -> Callable[[dict[str, Any]], object]:
    def run(environ: dict[str, Any]) -> None:
        environ = dict(environ, **{"wsgi.input": io.BytesIO(environ["wsgi.input"].getvalue())})
        assert run_wsgi(app, environ).status == expect

    return run


def _post_json(path: bytes, body: bytes) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return wsgi_environ(RawRequest(path, "POST", headers, [body]))


@pytest.mark.parametrize(
    ("expect", "make", "n"),
    [
        (400, lambda n: _post_json(b"/item", _deep(n)), 10_000),
        (400, lambda n: _post_json(b"/item", b'{"n":1,"rest":' + _deep(n) + b"}"), 10_000),
        (422, lambda n: _post_json(b"/item", b'{"n":' + b"9" * n + b"}"), 5000),
        (422, lambda n: wsgi_environ(RawRequest(b"/q?i=" + b"9" * n)), 5000),
        (200, lambda n: wsgi_environ(RawRequest(b"/q?d=" + b"9" * n)), 5000),
        (200, lambda n: wsgi_environ(RawRequest(b"/q?" + b"xs=1&" * n)), 1000),
        (200, lambda n: wsgi_environ(RawRequest(b"/q?" + b"i=1&" * n)), 1000),
        (200, lambda n: wsgi_environ(RawRequest(b"/q?s=" + b"%ff" * n)), 1000),
        (200, lambda n: wsgi_environ(RawRequest(b"/q", headers=[(b"h", b"x" * n)])), 100_000),
        (422, lambda n: wsgi_environ(RawRequest(b"/q", headers=[(b"hi", b"9" * n)])), 100_000),
    ],
    ids=["deep", "deep-field", "json-digits", "query-digits", "decimal-digits",
         "repeated-list", "repeated-scalar", "bad-utf8", "header", "header-digits"],
)  # fmt: skip
def test_bad_input_is_answered_in_linear_time(
    expect: int, make: Callable[[int], Any], n: int
) -> None:
    logging.disable(logging.ERROR)  # a failure shows as the wrong status, not as noise
    try:
        assert_linear(_wsgi_runner(bad_input_app(), expect), make, n)
    finally:
        logging.disable(logging.NOTSET)


# --------------------------------------------------------------------------
# Properties: never a 5xx, and WSGI and ASGI agree
# --------------------------------------------------------------------------


def property_app() -> App:
    app = App()

    def report(**values: Any) -> dict[str, Any]:
        return {k: repr(v) for k, v in values.items()}

    def params(
        n: int,
        i: int = 0,
        f: float = 0.0,
        b: bool = False,
        d: decimal.Decimal | None = None,
        u: uuid.UUID | None = None,
        dt: datetime | None = None,
        day: date | None = None,
        t: time | None = None,
        color: Color = Color.RED,
        mode: Literal["a", "b", 1] = "a",
        s: str | None = None,
        xs: list[int] = [],  # noqa: B006
        bs: list[bool] = [],  # noqa: B006
        lim: Annotated[int, Query(ge=0, le=10)] = 5,
        word: Annotated[str, Query(pattern="^[a-z]+$", max_length=5)] = "a",
        aliased: Annotated[float | None, Query(alias="a-b", gt=0)] = None,
        h: Annotated[int | None, Header()] = None,
        c: Annotated[datetime | None, Cookie()] = None,
    ) -> dict[str, Any]:
        return report(**{k: v for k, v in locals().items() if k != "report"})

    async def async_params(**kwargs: Any) -> dict[str, Any]:
        return params(**kwargs)

    async_params.__signature__ = __import__("inspect").signature(params)  # type: ignore[attr-defined]
    async_params.__annotations__ = params.__annotations__
    app.get("/sync/{n}")(params)
    app.get("/async/{n}", name="async_params")(async_params)
    return app


PROPERTY_APP = property_app()
BOOL_WORDS = ["true", "1", "yes", "on", "false", "0", "no", "off", "TRUE", "Off"]
ints = st.integers(-(2**63), 2**63 - 1).map(str)  # msgspec's range; bigger ones in SAMPLES
BOOL_WORDS = ["true", "1", "yes", "on", "false", "0", "no", "off", "TRUE", "Off"]
#: For each query parameter, the values it accepts.
VALID: dict[str, st.SearchStrategy[str]] = {
    "i": ints,
    "f": st.floats(allow_nan=False, allow_infinity=False).map(repr),
    "b": st.sampled_from(BOOL_WORDS),
    "d": st.decimals(allow_nan=False, allow_infinity=False).map(str),
    "u": st.uuids().map(str),
    "dt": st.datetimes().map(datetime.isoformat),
    "day": st.dates().map(date.isoformat),
    "t": st.times().map(time.isoformat),
    "color": st.sampled_from(["red", "blue"]),
    "mode": st.sampled_from(["a", "b", "1"]),
    "s": st.text(max_size=8),
    "xs": st.integers(-5, 5).map(str),
    "bs": st.sampled_from(BOOL_WORDS),
    "lim": st.integers(0, 10).map(str),
    "word": st.from_regex(r"\A[a-z]{1,5}\Z"),
    "a-b": st.floats(min_value=0.001, max_value=1e6).map(repr),
    "zz": st.text(max_size=8),
}
SAMPLES = ["", "0", "1", "-1", "7", "1.5", "-0.0", "1e3", "1e999", "nan", "inf", "true",
           "On", "no", "maybe", "red", "BLUE", "a", "b", "12345678901234567890",
           "0x10", "1_000", "\u0661", "2024-02-30", "2024-01-01T10:00:00+01:00", "10:00",
           "00000000-0000-0000-0000-000000000000", "%ff", "%", "a+b", "\x00"]  # fmt: skip
#: Anything: samples near the edges, random text, random bytes.
values = st.one_of(
    st.sampled_from(SAMPLES),
    st.text(max_size=12),
    st.binary(max_size=8).map(lambda raw: raw.decode("latin-1")),
)
names = st.sampled_from(sorted(VALID))
valid_pairs = names.flatmap(lambda name: st.tuples(st.just(name), VALID[name]))
any_pairs = names.flatmap(lambda name: st.tuples(st.just(name), VALID[name] | values))


def _encode(text: str, raw: bool = True) -> bytes:
    """`text` in a query string or path: percent-encoded UTF-8; with `raw`, "%"
    and "+" are kept as written, to reach the parser raw (bad escapes, spaces)."""
    keep = "%+-.:" if raw else "-.:"
    out = []
    for ch in text:
        if ch in keep or ("0" <= ch <= "9") or ("a" <= ch.lower() <= "z"):
            out.append(ch.encode())
        else:
            out.append(b"".join(b"%%%02X" % byte for byte in ch.encode()))
    return b"".join(out)


def _field(text: str) -> bytes:
    """`text` as a header field value: UTF-8, without what a server refuses.
    (A cookie is not percent-decoded: it goes as it is too.)"""
    kept = "".join(ch for ch in text if ch >= " " and ch != "\x7f").strip(" ")
    return kept.encode()


def _both(
    kind: str,
    n: str,
    pairs: list[tuple[str, str]],
    header: str | None,
    cookie: str | None,
    raw: bool = True,
) -> Raw:
    """The request through WSGI (gunicorn's raw target) and ASGI: the same answer,
    never a 5xx, 422s in their bounds."""
    query = b"&".join(_encode(k) + b"=" + _encode(v, raw) for k, v in pairs)
    headers = []
    if header is not None:
        headers.append((b"h", _field(header)))
    if cookie is not None:
        headers.append((b"cookie", b"c=" + _field(cookie)))
    target = b"/" + kind.encode() + b"/" + (_encode(n) or b"x") + b"?" + query
    request = RawRequest(target, headers=headers)
    wsgi, asgi = (send(PROPERTY_APP, request, via) for via in ("wsgi-gunicorn", "asgi"))
    assert wsgi.status < 500, (wsgi.status, wsgi.body[:300])
    assert (wsgi.status, wsgi.body) == (asgi.status, asgi.body)
    if wsgi.status == 422:
        for entry in wsgi.json()["detail"]:
            assert entry["loc"][0] in ("query", "header", "cookie", "path")
            assert len(entry["msg"]) <= 100
    return wsgi


PROPERTY = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(
    kind=st.sampled_from(["sync", "async"]),
    n=ints | values,
    pairs=st.lists(any_pairs, max_size=6),
    header=st.none() | ints | values,
    cookie=st.none() | st.datetimes().map(datetime.isoformat) | values,
)
@example(kind="sync", n="9" * 5000, pairs=[("i", "9" * 5000), ("d", "9" * 5000)], header=None,
         cookie=None)  # fmt: skip
def test_conversion_never_answers_5xx_and_both_protocols_agree(
    kind: str, n: str, pairs: list[tuple[str, str]], header: str | None, cookie: str | None
) -> None:
    _both(kind, n, pairs, header, cookie)


@PROPERTY
@given(
    kind=st.sampled_from(["sync", "async"]),
    n=ints,
    pairs=st.lists(valid_pairs, max_size=6),
    header=st.none() | ints,
    cookie=st.none() | st.datetimes().map(datetime.isoformat),
)
def test_valid_values_are_accepted_the_same_way_by_both_protocols(
    kind: str, n: str, pairs: list[tuple[str, str]], header: str | None, cookie: str | None
) -> None:
    answer = _both(kind, n, pairs, header, cookie, raw=False)
    assert answer.status == 200, answer.body[:300]
    got = answer.json()
    assert got["n"] == n
    for name, value in pairs:  # a scalar takes the first of repeated keys
        if name in ("i", "lim") and (name, value) == next(p for p in pairs if p[0] == name):
            assert got[name] == value


# --------------------------------------------------------------------------
# Registration errors
# --------------------------------------------------------------------------


def _two_bodies(a: Item, b: PItem) -> None: ...


def _unbindable(p: dict[str, int] = {}) -> None: ...  # noqa: B006


def _nested_list(p: list[list[int]] = []) -> None: ...  # noqa: B006


def _bad_default(n: Annotated[int, Query(ge=1)] = 0) -> None: ...


def _bad_header_default(x_n: Annotated[int, Header(le=9)] = 10) -> None: ...


def _bad_type_default(n: int = "ten") -> None: ...  # type: ignore[assignment]


def _bad_list_default(tags: Annotated[list[str], Query(min_length=1)] = []) -> None: ...  # noqa: B006


def _bad_body_default(n: Annotated[int, Body(ge=1)] = 0) -> None: ...


def _form_and_json(item: Item, name: Annotated[str, Form()]) -> None: ...


def _marker_class(n: Annotated[int, Query] = 1) -> None: ...


def _two_markers(n: Annotated[int, Query(), Header()] = 1) -> None: ...


def _fastapi_default(n: int = Query(ge=1)) -> None: ...  # type: ignore[assignment]


def _path_without_template(n: Annotated[int, Path()]) -> None: ...


def _model_header(m: Annotated[Item, Header()]) -> None: ...


def _cookie_list(c: Annotated[list[str], Cookie()] = []) -> None: ...  # noqa: B006


@pytest.mark.parametrize(
    ("handler", "param", "says"),
    [
        (_two_bodies, "b", r"two body parameters \('a' and 'b'\)"),
        (_unbindable, "p", "cannot read"),
        (_nested_list, "p", "cannot read"),
        (_bad_default, "n", "breaks its own type or constraints"),
        (_bad_header_default, "x_n", "breaks its own type or constraints"),
        (_bad_type_default, "n", "breaks its own type or constraints"),
        (_bad_list_default, "tags", "breaks its own type or constraints"),
        (_bad_body_default, "n", "breaks its own type or constraints"),
        (_form_and_json, "name", "a request has one body, JSON or a form"),
        (_marker_class, "n", r"write Query\(\)"),
        (_two_markers, "n", "two markers"),
        (_fastapi_default, "n", r"put Query\(\) in Annotated"),
        (_path_without_template, "n", r"path has no \{n\}"),
        (_model_header, "m", "a model cannot be a header parameter"),
        (_cookie_list, "c", "cannot be a list"),
    ],
)
def test_registration_errors_name_the_handler_and_the_parameter(
    handler: Callable[..., Any], param: str, says: str
) -> None:
    app = App()
    with pytest.raises(TypeError, match=says) as info:
        app.post("/x")(handler)
    message = str(info.value)
    assert f"tests.test_typed_input:{handler.__name__}" in message
    assert re.search(rf"'{param}'", message), message
