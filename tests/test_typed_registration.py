"""Typed handlers at registration (API.md §13): annotations that name models
declared inside the registering function (``from __future__ import
annotations`` makes them text), and how much inspection registration does."""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any

import msgspec
import pytest

from microweb import App, Query, Router

from .conftest import MakeClient


class Item(msgspec.Struct):
    name: str


def test_models_declared_in_the_registering_function_are_resolved(
    make_client: MakeClient,
) -> None:
    class Order(msgspec.Struct):
        id: int
        qty: Annotated[int, msgspec.Meta(ge=1)]

    class Summary(msgspec.Struct):
        id: int

    Limit = Annotated[int, Query(ge=1, le=100)]
    app = App()

    @app.post("/orders")
    def create(order: Order, limit: Limit = 10) -> Summary:
        return {"id": order.id * limit, "qty": order.qty}  # type: ignore[return-value]

    async def create_async(order: Order, limit: Limit = 10) -> Summary:
        return Summary(id=order.id * limit)

    app.post("/orders-async")(create_async)  # registered without the @ syntax too

    client = make_client(app)
    for path in ("/orders", "/orders-async"):
        r = client.post(f"{path}?limit=3", json={"id": 2, "qty": 1})
        assert (r.status_code, r.json()) == (200, {"id": 6}), path
        r = client.post(f"{path}?limit=0", json={"id": 2, "qty": 0})
        assert r.status_code == 422
        assert [e["loc"] for e in r.json()["detail"]] == [["query", "limit"], ["body", "qty"]]


def test_a_routers_handlers_resolve_where_they_are_declared(make_client: MakeClient) -> None:
    def make_router() -> Router:
        class Point(msgspec.Struct):
            x: int

        router = Router()

        @router.post("/points")
        def point(p: Point) -> dict[str, Any]:
            return {"x": p.x}

        return router

    app = App()
    app.include_router(make_router(), prefix="/api")  # Point is out of scope here
    r = make_client(app).post("/api/points", json={"x": 4})
    assert (r.status_code, r.json()) == (200, {"x": 4})


def test_each_name_is_taken_from_the_nearest_scope_that_has_it(make_client: MakeClient) -> None:
    class Outer(msgspec.Struct):
        x: int

    class Inner(msgspec.Struct):  # shadowed below: the nearer one is used
        y: int

    def register(app: App) -> None:
        class Inner(msgspec.Struct):
            z: int

        @app.post("/both")
        def both(body: Outer, n: Annotated[int, Query(ge=0)] = 0) -> Inner:
            return Inner(z=body.x + n)

        # the request's annotation names nothing here: it is the request by its name
        @app.get("/plain")
        def plain(request: Nowhere, n: int = 1) -> dict[str, int]:  # type: ignore[name-defined]  # noqa: F821
            return {"n": n}

    app = App()
    register(app)
    client = make_client(app)
    r = client.post("/both?n=2", json={"x": 1})
    assert (r.status_code, r.json()) == (200, {"z": 3})
    assert client.get("/plain?n=5").json() == {"n": 5}


def test_an_annotation_nothing_defines_is_a_registration_error() -> None:
    app = App()
    with pytest.raises(TypeError, match=r"parameter 'item' of handler .*nowhere.*'Missing'"):

        @app.post("/x")
        def nowhere(item: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
            ...


def test_registration_reads_each_handlers_signature_and_hints_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = {"signature": 0, "hints": 0}
    signature, get_type_hints = inspect.signature, typing.get_type_hints
    handlers: set[int] = set()  # this test's (the app's own docs routes read theirs too)

    def counted_signature(*args: Any, **kwargs: Any) -> Any:
        counts["signature"] += id(args[0]) in handlers
        return signature(*args, **kwargs)

    def counted_hints(*args: Any, **kwargs: Any) -> Any:
        counts["hints"] += id(args[0]) in handlers
        return get_type_hints(*args, **kwargs)

    app, router = App(), Router()
    monkeypatch.setattr(inspect, "signature", counted_signature)
    monkeypatch.setattr(typing, "get_type_hints", counted_hints)
    n = 20
    for i in range(n):

        def get(q: str | None = None, limit: Annotated[int, Query(ge=1)] = 1) -> Item:
            return Item(name="x")

        def post(item: Item) -> Item:
            return item

        handlers.update((id(get), id(post)))
        app.get(f"/a{i}", name=f"a{i}")(get)
        router.post(f"/b{i}", name=f"b{i}")(post)
    app.include_router(router, prefix="/r")
    assert counts == {"signature": 2 * n, "hints": 2 * n}
