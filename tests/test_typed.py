"""Typed parameters (API.md §13): query, header, cookie, path and JSON body,
converted and validated by msgspec (pydantic models by pydantic), 422s in
FastAPI's shape, return annotations that drop undeclared fields; under both
protocols, for def and async def handlers."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Annotated, Any, Literal, TypedDict

import msgspec
import pydantic
import pytest

from microweb import App, Cookie, Header, Path, Query, Request

from .conftest import MakeClient


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class ItemIn(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    price: Annotated[float, msgspec.Meta(gt=0)]
    tags: list[str] = []


class ItemOut(ItemIn, kw_only=True):
    id: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Pair(TypedDict):
    a: int
    b: str


class User(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)
    age: int = pydantic.Field(ge=0)


class PublicUser(pydantic.BaseModel):
    name: str


def typed_app(asynchronous: bool) -> App:
    app = App()

    def route(path: str, method: str = "GET") -> Any:
        def register(fn: Any) -> Any:
            if asynchronous:
                sync = fn

                async def call(*args: Any, **kwargs: Any) -> Any:
                    return sync(*args, **kwargs)

                # the same signature and annotations, as an async def
                call.__signature__ = __import__("inspect").signature(fn)  # type: ignore[attr-defined]
                call.__annotations__ = fn.__annotations__
                call.__name__ = fn.__name__
                call.__module__ = fn.__module__
                call.__qualname__ = fn.__qualname__
                call.__globals__.update(fn.__globals__)
                fn = call
            return app.route(path, methods=[method])(fn)

        return register

    @route("/items")
    def list_items(
        q: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        tag: list[str] = [],  # noqa: B006 - copied per request
        flag: bool = False,
        x_token: Annotated[str | None, Header()] = None,
        session: Annotated[str | None, Cookie()] = None,
        page: Annotated[int, Query(alias="p")] = 1,
    ) -> dict[str, Any]:
        tag.append("seen")  # a default list is the request's own
        return {"q": q, "limit": limit, "tag": tag, "flag": flag, "x_token": x_token,
                "session": session, "page": page}  # fmt: skip

    @route("/scalars")
    def scalars(
        d: decimal.Decimal,
        u: uuid.UUID,
        day: datetime.date,
        at: datetime.datetime,
        color: Color,
        mode: Literal["a", "b"] = "a",
        ns: list[int] = [],  # noqa: B006
    ) -> dict[str, Any]:
        return {"d": str(d), "u": str(u), "day": day.isoformat(), "at": at.isoformat(),
                "color": color.value, "mode": mode, "ns": ns}  # fmt: skip

    @route("/things/{tid}")
    def thing(tid: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
        return {"tid": tid}

    @route("/items", "POST")
    def create_item(item: ItemIn, dry: bool = False) -> ItemOut:
        return {"id": 7, "secret": "never sent", "dry": dry, **msgspec.to_builtins(item)}  # type: ignore[return-value]

    @route("/points", "POST")
    def points(ps: list[Point]) -> dict[str, Any]:
        return {"sum": sum(p.x + p.y for p in ps)}

    @route("/pairs", "POST")
    def pairs(pair: Pair) -> Pair:
        return pair

    @route("/users", "POST")
    def users(user: User) -> PublicUser:
        return user  # type: ignore[return-value]

    @route("/with-request")
    def with_request(request: Request, n: int = 0) -> dict[str, Any]:
        return {"path": request.path, "n": n}

    return app


@pytest.fixture(params=["def", "async"])
def client(request: pytest.FixtureRequest, make_client: MakeClient) -> Any:
    return make_client(typed_app(request.param == "async"))


def test_query_header_cookie_values_are_converted(client: Any) -> None:
    r = client.get(
        "/items?q=abc&limit=5&tag=a&tag=b&flag=YES&p=3",
        headers={"x-token": "tok", "cookie": "session=s1"},
    )
    assert r.status_code == 200
    assert r.json() == {"q": "abc", "limit": 5, "tag": ["a", "b", "seen"], "flag": True,
                        "x_token": "tok", "session": "s1", "page": 3}  # fmt: skip


def test_defaults_apply_and_a_default_list_is_fresh_each_request(client: Any) -> None:
    for _ in range(2):
        r = client.get("/items")
        assert r.json() == {"q": None, "limit": 10, "tag": ["seen"], "flag": False,
                            "x_token": None, "session": None, "page": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("1", True), ("yes", True), ("On", True),
     ("false", False), ("0", False), ("NO", False), ("off", False)],
)  # fmt: skip
def test_bool_words(client: Any, word: str, value: bool) -> None:
    assert client.get(f"/items?flag={word}").json()["flag"] is value


def test_an_alias_is_the_only_name_read(client: Any) -> None:
    assert client.get("/items?page=9").json()["page"] == 1
    assert client.get("/items?p=9").json()["page"] == 9


def test_every_invalid_parameter_is_listed(client: Any) -> None:
    r = client.get("/items?limit=0&flag=maybe&p=x")
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [e["loc"] for e in detail] == [["query", "limit"], ["query", "flag"], ["query", "p"]]
    assert all(isinstance(e["msg"], str) and isinstance(e["type"], str) for e in detail)


def test_scalars(client: Any) -> None:
    u = uuid.uuid4()
    r = client.get(
        f"/scalars?d=1.10&u={u}&day=2026-12-07&at=2026-12-07T10:00:00&color=blue&mode=b&ns=1&ns=2"
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"d": "1.10", "u": str(u), "day": "2026-12-07",
                        "at": "2026-12-07T10:00:00", "color": "blue", "mode": "b",
                        "ns": [1, 2]}  # fmt: skip


def test_missing_required_parameters_are_422(client: Any) -> None:
    r = client.get("/scalars?color=green&mode=c&ns=x")
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    assert locs == [["query", "d"], ["query", "u"], ["query", "day"], ["query", "at"],
                    ["query", "color"], ["query", "mode"], ["query", "ns", 0]]  # fmt: skip
    assert r.json()["detail"][0]["type"] == "missing"


def test_path_parameters_take_their_annotation_and_constraints(client: Any) -> None:
    assert client.get("/things/12").json() == {"tid": 12}
    for bad in ("ab", "0"):
        r = client.get(f"/things/{bad}")
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["path", "tid"]


def test_a_model_parameter_is_the_json_body(client: Any) -> None:
    r = client.post("/items?dry=1", json={"name": "pen", "price": 2})
    assert r.status_code == 200
    # the return annotation drops what ItemOut does not declare
    assert r.json() == {"name": "pen", "price": 2.0, "tags": [], "id": 7}


def test_body_errors_carry_their_path_beside_the_query_errors(client: Any) -> None:
    r = client.post("/items?dry=maybe", json={"name": "pen", "price": 1, "tags": ["a", 5]})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["query", "dry"], ["body", "tags", 1]]
    r = client.post("/items", json={"price": 1})
    assert r.json()["detail"] == [{"loc": ["body", "name"], "msg": "Field required",
                                   "type": "missing"}]  # fmt: skip


def test_a_body_that_is_not_json_is_400_even_where_it_also_fails_validation(client: Any) -> None:
    for body in (b'{"name": 1, x', b'{"name": "a", "price": 1} trailing', b"\xff"):
        r = client.post("/items", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, body


def test_a_json_body_needs_a_json_content_type(client: Any) -> None:
    body = b'{"name": "a", "price": 1}'
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {} if ctype is None else {"content-type": ctype}
        assert client.post("/items", content=body, headers=headers).status_code == 415
    ok = client.post("/items", content=body, headers={"content-type": "application/vnd.a+json"})
    assert ok.status_code == 200


def test_a_missing_body_is_422_at_body(client: Any) -> None:
    r = client.post("/items", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body"], "msg": "Field required", "type": "missing"}]


def test_dataclasses_typeddicts_and_lists_of_models(client: Any) -> None:
    assert client.post("/points", json=[{"x": 1, "y": 2}, {"x": 3, "y": 4}]).json() == {"sum": 10}
    r = client.post("/points", json=[{"x": 1, "y": 2}, {"x": "a", "y": 4}])
    assert r.json()["detail"][0]["loc"] == ["body", 1, "x"]
    assert client.post("/pairs", json={"a": 1, "b": "x", "c": 3}).json() == {"a": 1, "b": "x"}


def test_pydantic_models_are_validated_by_pydantic(client: Any) -> None:
    r = client.post("/users", json={"name": "ada", "age": 36})
    assert r.status_code == 200
    assert r.json() == {"name": "ada"}  # PublicUser: age is not declared, never sent
    r = client.post("/users", json={"name": "", "age": -1})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "name"], ["body", "age"]]
    bad = client.post("/users", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400


def test_the_request_beside_typed_parameters(client: Any) -> None:
    assert client.get("/with-request?n=4").json() == {"path": "/with-request", "n": 4}


def test_no_422_echoes_more_than_100_characters_of_input(client: Any) -> None:
    long = "z" * 5000
    for r in (
        client.get(f"/scalars?d={long}&u={long}&day={long}&at={long}&color={long}&mode={long}"),
        client.post("/items", json={"name": long, "price": long}),
        client.post("/pairs", json={"a": long, "b": 1}),
    ):
        assert r.status_code == 422
        assert "z" * 101 not in r.text


def test_registration_errors_name_the_handler_and_the_parameter() -> None:
    app = App()
    with pytest.raises(TypeError, match=r"two body parameters \('a' and 'b'\)"):

        @app.post("/x")
        def two(a: ItemIn, b: ItemIn) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'p' of handler .*point.*cannot read"):

        @app.get("/y")
        def point(p: dict[str, int] = {}) -> None: ...  # noqa: B006

    with pytest.raises(TypeError, match=r"default of parameter 'n' .*breaks"):

        @app.get("/z")
        def bad_default(n: Annotated[int, Query(ge=1)] = 0) -> None: ...

    with pytest.raises(TypeError, match=r"put Query\(\) in Annotated"):

        @app.get("/w")
        def fastapi_style(n: int = Query(ge=1)) -> None:  # type: ignore[assignment]
            ...


def test_untyped_handlers_keep_their_cheap_calls() -> None:
    app = App()

    @app.get("/a/{x}")
    def a(x):  # type: ignore[no-untyped-def]
        return x

    @app.get("/b/{n:int}")
    def b(n: int) -> int:
        return n

    @app.get("/c")
    def c(request: Request) -> None: ...

    assert all(route.binder is None for route in app.routes)


class ItemWithSecret(ItemOut, kw_only=True):
    secret: str


class UserWithPassword(PublicUser):
    password: str


def test_a_subclass_of_the_return_model_never_leaks_the_fields_it_adds(
    make_client: MakeClient,
) -> None:
    app = App()

    @app.get("/item")
    def item() -> ItemOut:
        return ItemWithSecret(name="pen", price=1.0, id=3, secret="s3cr3t")

    @app.get("/user")
    async def user() -> PublicUser:
        return UserWithPassword(name="ada", password="s3cr3t")

    client = make_client(app)
    assert client.get("/item").json() == {"name": "pen", "price": 1.0, "tags": [], "id": 3}
    assert client.get("/user").json() == {"name": "ada"}


def test_a_return_model_declared_in_the_registering_function_is_documented() -> None:
    def build() -> App:
        class Local(msgspec.Struct):
            n: int

        app = App()

        @app.get("/local")
        def local() -> Local:
            return Local(n=1)

        return app

    responses = build().openapi()["paths"]["/local"]["get"]["responses"]
    schema = responses["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Local"}
