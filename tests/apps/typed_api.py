"""A typed API with a bit of everything OpenAPI describes, for the OpenAPI tests:
every parameter location, constraints, lists, enums, optional values, bodies
of each kind of model (pydantic included), returns, `responses=`, tags,
deprecation and hidden routes and parameters. Served by uvicorn (`app.asgi`)
and waitress (`app.wsgi`) in the Swagger UI browser test."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Annotated, Literal, TypedDict

import msgspec
import pydantic

from microweb import App, Body, Cookie, Header, HTTPException, Path, Query, Router


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class ItemIn(msgspec.Struct):
    """An item to create."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    price: Annotated[float, msgspec.Meta(gt=0)]
    tags: list[str] = []
    color: Color | None = None


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
    name: str = pydantic.Field(min_length=1, max_length=50)
    age: int = pydantic.Field(ge=0, le=150)


class Problem(msgspec.Struct):
    detail: str


app = App(title="Typed shop", version="2.0.0", description="Everything OpenAPI can say.")
ITEMS: dict[int, ItemOut] = {1: ItemOut(name="lamp", price=12.5, tags=["home"], id=1)}


@app.get("/items", tags=["items"])
def list_items(
    q: Annotated[str | None, Query(max_length=50, description="Text in the name")] = None,
    limit: Annotated[int, Query(ge=1, le=100, examples=[10])] = 10,
    tag: list[str] = [],  # noqa: B006 - copied per request
    color: Color | None = None,
    order: Literal["asc", "desc"] = "asc",
    x_request_id: Annotated[str | None, Header()] = None,
    session: Annotated[str | None, Cookie()] = None,
    legacy: Annotated[str | None, Query(deprecated=True)] = None,
    secret: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> list[ItemOut]:
    """List the items, filtered."""
    found = [i for i in ITEMS.values() if q is None or q in i.name]
    found = [i for i in found if all(t in i.tags for t in tag)]
    found.sort(key=lambda i: i.id, reverse=order == "desc")
    return found[:limit]


@app.get("/items/{item_id:int}", tags=["items"], responses={404: Problem})
def get_item(item_id: int) -> ItemOut:
    """One item."""
    if item_id not in ITEMS:
        raise HTTPException(404, "no such item")
    return ITEMS[item_id]


@app.post("/items", status=201, tags=["items"], summary="Create an item")
async def create_item(item: ItemIn) -> ItemOut:
    new = ItemOut(**msgspec.structs.asdict(item), id=max(ITEMS, default=0) + 1)
    ITEMS[new.id] = new
    return new


@app.delete("/items/{item_id:int}", tags=["items"], responses={404: "No such item"})
def delete_item(item_id: int) -> None:
    ITEMS.pop(item_id, None)


@app.get("/things/{thing_id}", deprecated=True, operation_id="thing")
def get_thing(
    thing_id: Annotated[int, Path(ge=1, le=1000, description="The thing")],
    when: datetime.date | None = None,
    amount: decimal.Decimal | None = None,
) -> dict[str, str]:
    return {"thing": str(thing_id), "when": str(when), "amount": str(amount)}


@app.get("/ids/{key:uuid}")
def by_uuid(key: uuid.UUID, at: datetime.datetime | None = None) -> dict[str, str]:
    return {"key": str(key)}


@app.get("/ratio/{value:float}")
def ratio(value: float, flag: bool = False) -> dict[str, float | bool]:
    return {"value": value, "flag": flag}


@app.get("/files/{name:path}")
def file_name(name: str) -> str:
    return f"<p>{len(name)}</p>"


@app.post("/points")
def add_points(points: list[Point]) -> Point:
    return Point(sum(p.x for p in points), sum(p.y for p in points))


@app.post("/pairs")
def add_pair(pair: Pair) -> Pair:
    return pair


@app.post("/users", status=201, tags=["users"])
def create_user(user: User) -> User:
    return user


@app.put("/settings", tags=["settings"])
def put_settings(
    settings: Annotated[dict[str, int], Body(description="Names and numbers")],
) -> dict[str, int]:
    return settings


@app.get("/hidden", include_in_schema=False)
def hidden() -> dict[str, bool]:
    return {"hidden": True}


@app.route("/either", methods=["GET", "POST"])
def either() -> dict[str, bool]:
    return {"ok": True}


@app.websocket("/ws")
async def ws(websocket: object) -> None:  # never in the document
    pass


app.static("/static", __file__.rsplit("/", 1)[0])

api = Router()


@api.get("/ping", tags=["health"])
def ping() -> dict[str, str]:
    return {"ping": "pong"}


app.include_router(api, prefix="/v1")
wsgi = app.wsgi
