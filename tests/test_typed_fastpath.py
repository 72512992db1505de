"""The typed routes' shortcuts answer exactly as the general path does.

microweb binds a typed handler's parameters with one msgspec conversion when
every value is valid (the general path, which lists every error, runs when one
is not), encodes a returned instance of the annotated model at once, and lets
the adapters call a hookless typed handler with a body themselves. Each test
here runs the same requests through an app with the shortcut and one without
it (or with a hook, which takes the pipeline) and compares the answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import io
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microweb import App, Cookie, Header, Path, Query, Request, Response
from microweb._typed import Binder, return_converter

from . import raw
from .conftest import MakeClient

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    # the clients are made once per test and serve every example alike
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class ItemIn(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=10)]
    price: Annotated[float, msgspec.Meta(gt=0)]
    tags: list[str] = []


class ItemOut(msgspec.Struct):
    name: str
    price: float


class LoudItemOut(ItemOut):
    secret: str = "kept: an instance of the annotated class is sent as it is"


@dataclasses.dataclass
class PointOut:
    x: int


class UserOut(pydantic.BaseModel):
    name: str


def _general(app: App) -> App:
    """`app` with every route on the general paths: binding value by value, and
    the return value converted by `return_converter` (a Response passes), then
    made a response by `to_response`, as the pipeline does with any value."""
    for route in app.routes:
        if route.binder is not None:
            route._bind = route.binder.bind
        fn = getattr(route.endpoint, "__wrapped__", None)
        if fn is not None:
            route.endpoint = _converting(fn, route.is_async)
    return app


def _converting(fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    convert = return_converter(fn)
    assert convert is not None
    if is_async:

        async def general_async(*args: Any, **kwargs: Any) -> Any:
            rv = await fn(*args, **kwargs)
            return rv if isinstance(rv, Response) else convert(rv)

        return general_async

    def general(*args: Any, **kwargs: Any) -> Any:
        rv = fn(*args, **kwargs)
        return rv if isinstance(rv, Response) else convert(rv)

    return general


def typed_app(asynchronous: bool, hooked: bool = False) -> App:
    app = App(max_body_size=200)
    if hooked:
        app.before_request(lambda request: None)

    def params(
        n: int,
        tid: Annotated[int, Path(ge=1)],
        q: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        tag: list[str] = [],  # noqa: B006 - copied per request
        flags: list[bool] = [],  # noqa: B006
        on: bool = False,
        d: decimal.Decimal | None = None,
        day: datetime.date | None = None,
        color: Color = Color.RED,
        mode: Literal["a", "b"] = "a",
        page: Annotated[int, Query(alias="p")] = 1,
        x_token: Annotated[int | None, Header()] = None,
        session: Annotated[str | None, Cookie()] = None,
        request: Request | None = None,
    ) -> dict[str, Any]:
        tag.append("seen")  # a default list is the request's own
        return {
            "n": n, "tid": tid, "q": q, "limit": limit, "tag": tag, "flags": flags, "on": on,
            "d": None if d is None else str(d), "day": None if day is None else day.isoformat(),
            "color": color.value, "mode": mode, "page": page, "x_token": x_token,
            "session": session, "path": None if request is None else request.path,
        }  # fmt: skip

    def create(item: ItemIn, dry: bool = False) -> dict[str, Any]:
        return {"item": msgspec.to_builtins(item), "dry": dry}

    def returns(kind: str) -> ItemOut:
        values: dict[str, Any] = {
            "exact": ItemOut(name="a", price=1.0),
            "subclass": LoudItemOut(name="b", price=2.0),
            "dict": {"name": "c", "price": 3, "secret": "dropped"},
            "other-model": ItemIn(name="d", price=4.0, tags=["dropped"]),
            "response": Response(b"as is", 202),
            "invalid": {"name": "e"},
        }
        return values[kind]  # type: ignore[no-any-return]

    def point(x: int) -> PointOut:
        return PointOut(x=x) if x >= 0 else {"x": x, "y": 0}  # type: ignore[return-value]

    def user(name: str) -> UserOut:
        return UserOut(name=name) if name != "dict" else {"name": name, "pw": "x"}  # type: ignore[return-value]

    for path, fn, method in [
        ("/p/{tid}", params, "GET"),
        ("/items", create, "POST"),
        ("/returns", returns, "GET"),
        ("/point", point, "GET"),
        ("/user", user, "GET"),
    ]:
        if asynchronous:
            fn = _as_async(fn)
        app.route(path, methods=[method])(fn)
    return app


def _as_async(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    call.__signature__ = __import__("inspect").signature(fn)  # type: ignore[attr-defined]
    call.__annotations__ = fn.__annotations__
    call.__name__ = fn.__name__
    call.__globals__.update(fn.__globals__)
    return call


def answer(r: Any) -> tuple[int, str | None, bytes]:
    return r.status_code, r.headers.get("content-type"), r.content


@pytest.fixture(params=["def", "async"])
def clients(request: pytest.FixtureRequest, make_client: MakeClient) -> tuple[Any, Any]:
    asynchronous = request.param == "async"
    fast = typed_app(asynchronous)
    assert all(
        route._bind == route.binder.bind_fast for route in fast.routes if route.binder is not None
    )  # the shortcut is what runs (else these tests compare the general path with itself)
    return make_client(fast), make_client(_general(typed_app(asynchronous)))


KEYS = ["n", "q", "limit", "tag", "flags", "on", "d", "day", "color", "mode", "p", "page", "zz"]
VALUES = ["", "1", "0", "-3", "101", "7", "yes", "On", "abc", "2026-12-07", "1.50", "red",
          "blue", "a", "c", "%41", "+", "%zz", "é", "z" * 120]  # fmt: skip
query = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=8).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)


@SETTINGS
@given(
    qs=query,
    tid=st.sampled_from(["5", "0", "abc"]),
    x_token=st.one_of(st.none(), st.sampled_from(VALUES[:12])),
    session=st.one_of(st.none(), st.sampled_from(VALUES[:6])),
)
@example(qs="n=1&limit=5&tag=a&tag=b&flags=on&flags=0&d=1.50&day=2026-12-07&color=blue&p=3",
         tid="5", x_token="7", session="s")  # fmt: skip
@example(qs="n=1", tid="5", x_token=None, session=None)
def test_parameters_bind_as_the_general_path_binds_them(
    clients: tuple[Any, Any], qs: str, tid: str, x_token: str | None, session: str | None
) -> None:
    fast, general = clients
    headers = {} if x_token is None else {"x-token": x_token}
    if session is not None:
        headers["cookie"] = f"session={session}"
    url = f"/p/{tid}?{qs}"
    assert answer(fast.get(url, headers=headers)) == answer(general.get(url, headers=headers))


BODIES = [
    b'{"name": "pen", "price": 2}',
    b'{"name": "pen", "price": 2, "tags": ["a", 5]}',
    b'{"name": "", "price": -1}',
    b'{"price": 1}',
    b'{"name": "pen", "price": 2} trailing',
    b"[1, 2",
    b"",
    b'{"name": "' + b"z" * 300 + b'", "price": 1}',  # over max_body_size
]


@SETTINGS
@given(
    body=st.sampled_from(BODIES),
    ctype=st.sampled_from(["application/json", "application/vnd.a+json", "text/plain", None]),
    dry=st.sampled_from(["", "?dry=yes", "?dry=maybe"]),
)
def test_bodies_bind_as_the_general_path_binds_them(
    clients: tuple[Any, Any], body: bytes, ctype: str | None, dry: str
) -> None:
    fast, general = clients
    headers = {} if ctype is None else {"content-type": ctype}
    r = fast.post(f"/items{dry}", content=body, headers=headers)
    assert answer(r) == answer(general.post(f"/items{dry}", content=body, headers=headers))


@pytest.mark.parametrize(
    "url",
    ["/returns?kind=exact", "/returns?kind=subclass", "/returns?kind=dict",
     "/returns?kind=other-model", "/returns?kind=response", "/returns?kind=invalid",
     "/point?x=3", "/point?x=-1", "/user?name=ada", "/user?name=dict"],
)  # fmt: skip
def test_returns_are_encoded_as_the_general_path_encodes_them(
    clients: tuple[Any, Any], url: str
) -> None:
    fast, general = clients
    assert answer(fast.get(url)) == answer(general.get(url))


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("body", BODIES)
def test_a_hookless_body_route_answers_as_the_pipeline_does(
    make_client: MakeClient, asynchronous: bool, body: bytes
) -> None:
    # hookless: the adapter reads the body and calls the handler itself (for a
    # handler of its own kind); with a hook, the pipeline does both
    direct = make_client(typed_app(asynchronous))
    piped = make_client(typed_app(asynchronous, hooked=True))
    for headers in ({"content-type": "application/json"}, {}):
        expected = answer(piped.post("/items?dry=1", content=body, headers=headers))
        assert answer(direct.post("/items?dry=1", content=body, headers=headers)) == expected


def test_valid_values_take_the_shortcut(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the general path runs only for a request with an invalid or missing value
    calls: list[str] = []
    bind = Binder.bind

    def counted(self: Binder, conn: Any, params: dict[str, Any]) -> dict[str, Any]:
        calls.append(conn.url)
        return bind(self, conn, params)

    monkeypatch.setattr(Binder, "bind", counted)
    client = make_client(typed_app(asynchronous=False))
    url = "/p/5?n=1&on=yes&flags=On&flags=off&d=1.5&day=2026-12-07&color=blue&mode=b"
    assert client.get(url, headers={"x-token": "3", "cookie": "session=s"}).status_code == 200
    assert client.post("/items?dry=no", json={"name": "pen", "price": 2}).status_code == 200
    assert calls == []
    assert client.get("/p/5?n=x").status_code == 422
    assert len(calls) == 1


class Trickle:
    """A ``wsgi.input`` that gives at most 3 bytes a read (a server may)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(3 if size < 0 else min(size, 3))

    def readline(self, size: int = -1) -> bytes:  # (the validator wants them)
        return self.read(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self.read()]

    def __iter__(self) -> Any:
        return iter(self.readlines())


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_body_that_arrives_in_parts_is_read_whole(protocol: str, asynchronous: bool) -> None:
    # the first read usually brings the whole body; when it does not, the rest follows
    body = b'{"name": "pen", "price": 2, "tags": ["a"]}'
    app = typed_app(asynchronous)

    @app.post("/raw")
    def raw_body(request: Request) -> dict[str, Any]:
        return {"n": len(request.body())}

    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    expected = [b'{"item":{"name":"pen","price":2.0,"tags":["a"]},"dry":false}', b'{"n":42}']
    for short in (False, True):  # a body cut short of its Content-Length: 400
        sent = body[:-5] if short else body
        answers = []
        for path in ("/items", "/raw"):
            if protocol == "wsgi":
                env = raw.environ("POST", path, headers=headers)
                env["wsgi.input"] = Trickle(sent)
                answers.append(raw.call_wsgi(app, env))
            else:
                parts = [sent[i : i + 3] for i in range(0, len(sent), 3)]
                messages = [
                    {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                    for i, p in enumerate(parts)
                ] + [{"type": "http.disconnect"}]

                async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
                    return messages.pop(0)

                s = raw.scope("POST", path, headers=headers)
                answers.append(asyncio.run(raw.call_asgi(app, s, receive=receive)))
        if short:
            assert [a.status for a in answers] == [400, 400]
        else:
            assert [(a.status, a.body) for a in answers] == [(200, e) for e in expected]
