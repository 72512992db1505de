"""examples/todo_api.py, used as an API client would, under both protocols (and
through the real servers its docstring names)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from examples import todo_api
from microweb import App

from .conftest import MakeClient
from .servers import SERVERS, serve


@pytest.fixture
def app() -> App:
    return todo_api.create_app()  # an empty store for each test


def todo(id: int, title: str, **fields: Any) -> dict[str, Any]:
    """A todo as the API returns it, with the defaults of the fields not given."""
    defaults = {"due": None, "tags": [], "priority": "normal", "done": False}
    return {"title": title, **defaults, **fields, "id": id}


def test_entry_points() -> None:
    assert todo_api.wsgi is todo_api.app.wsgi
    assert (todo_api.app.title, todo_api.app.version) == ("Todo API", "1.0.0")


def test_lifecycle(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    assert client.get("/todos").json() == []

    r = client.post("/todos", json={"title": "write the docs", "tags": ["docs"]})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    assert r.json() == todo(1, "write the docs", tags=["docs"])

    r = client.get("/todos/1")
    assert r.status_code == 200
    assert r.json() == todo(1, "write the docs", tags=["docs"])

    # only the fields the body names change
    r = client.patch("/todos/1", json={"done": True, "due": "2030-01-31", "priority": "high"})
    assert r.status_code == 200
    changed = todo(1, "write the docs", tags=["docs"], done=True, due="2030-01-31", priority="high")
    assert r.json() == changed
    r = client.patch("/todos/1", json={"due": None})  # null clears the due date
    assert r.json() == {**changed, "due": None}
    assert client.patch("/todos/1", json={}).json() == {**changed, "due": None}
    assert client.get("/todos").json() == [{**changed, "due": None}]

    r = client.delete("/todos/1")
    assert r.status_code == 204
    assert r.content == b""
    assert client.get("/todos").json() == []
    for method in ("GET", "PATCH", "DELETE"):
        r = client.request(method, "/todos/1", json={})
        assert r.status_code == 404
        assert r.json() == {"detail": "No todo with id 1"}


def test_undeclared_fields_are_dropped(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    r = client.post("/todos", json={"title": "x", "id": 99, "done": True, "owner": "me"})
    assert r.status_code == 201
    assert r.json() == todo(1, "x")  # neither the id nor done come from the client


@pytest.fixture
def filled(make_client: MakeClient, app: App) -> Any:
    client = make_client(app)
    for body in [
        {"title": "Buy milk", "tags": ["home", "shop"]},
        {"title": "Write report", "tags": ["work"]},
        {"title": "buy stamps", "tags": ["shop"]},
        {"title": "Call Ada", "tags": ["home"]},
    ]:
        assert client.post("/todos", json=body).status_code == 201
    assert client.patch("/todos/2", json={"done": True}).status_code == 200
    return client


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("", [1, 2, 3, 4]),
        ("?q=buy", [1, 3]),  # any case
        ("?q=BUY&tag=home", [1]),
        ("?tag=shop", [1, 3]),
        ("?tag=shop&tag=home", [1]),  # every tag given
        ("?tag=nowhere", []),
        ("?done=true", [2]),
        ("?done=false", [1, 3, 4]),
        ("?done=0&tag=home", [1, 4]),
        ("?limit=2", [1, 2]),
        ("?limit=2&offset=2", [3, 4]),
        ("?offset=10", []),
    ],
)
def test_list_filters(filled: Any, query: str, ids: list[int]) -> None:
    r = filled.get("/todos" + query)
    assert r.status_code == 200
    assert [t["id"] for t in r.json()] == ids


def test_invalid_query_parameters_are_all_listed(make_client: MakeClient, app: App) -> None:
    r = make_client(app).get("/todos?limit=0&offset=-1&done=maybe")
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {"loc": ["query", "done"], "msg": "Expected `bool`, got `str`", "type": "type_error"},
            {"loc": ["query", "limit"], "msg": "Expected `int` >= 1", "type": "value_error"},
            {"loc": ["query", "offset"], "msg": "Expected `int` >= 0", "type": "value_error"},
        ]
    }
    r = make_client(app).get("/todos?limit=101")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "title"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "   "}, ["body", "title"]),  # needs something besides spaces
        ({"title": "x" * 201}, ["body", "title"]),
        ({"title": "x", "due": "tomorrow"}, ["body", "due"]),
        ({"title": "x", "tags": ["ok", ""]}, ["body", "tags", 1]),
        ({"title": "x", "tags": ["t"] * 11}, ["body", "tags"]),
        ({"title": "x", "priority": "urgent"}, ["body", "priority"]),
        ([{"title": "x"}], ["body"]),
    ],
)
def test_an_invalid_todo_is_a_422(
    make_client: MakeClient, app: App, body: Any, loc: list[Any]
) -> None:
    client = make_client(app)
    r = client.post("/todos", json=body)
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == loc
    assert client.get("/todos").json() == []


def test_an_invalid_patch_is_a_422_and_changes_nothing(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    assert client.post("/todos", json={"title": "x"}).status_code == 201
    r = client.patch("/todos/1", json={"done": "yes"})
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"loc": ["body", "done"], "msg": "Expected `bool`, got `str`", "type": "type_error"}
    ]
    r = client.patch("/todos/1", json={"title": None})  # a title cannot be cleared
    assert r.status_code == 422
    assert client.get("/todos/1").json() == todo(1, "x")


def test_a_missing_body_is_a_422(make_client: MakeClient, app: App) -> None:
    r = make_client(app).post("/todos", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["body"], "msg": "Field required", "type": "missing"}]}


@pytest.mark.parametrize("content", [b'{"title": ', b'{"title": "x"} {}', b"\xff"])
def test_a_body_that_is_not_json_is_a_400(
    make_client: MakeClient, app: App, content: bytes
) -> None:
    client = make_client(app)
    r = client.post("/todos", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"detail": "The body is not valid JSON"}
    assert client.get("/todos").json() == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_a_415(
    make_client: MakeClient, app: App, content_type: str | None
) -> None:
    client = make_client(app)
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/todos", content=b'{"title": "x"}', headers=headers)
    assert r.status_code == 415
    assert r.json() == {
        "detail": "The body must be JSON: send it with Content-Type: application/json"
    }
    assert client.get("/todos").json() == []
    r = client.post(
        "/todos",
        content=b'{"title": "x"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201


@pytest.mark.parametrize("path", ["/todos/abc", "/todos/-1", "/todos/1.5"])
def test_an_id_that_is_no_number_is_a_404(make_client: MakeClient, app: App, path: str) -> None:
    r = make_client(app).get(path)
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


def test_routing(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    r = client.put("/todos/1", json={"title": "x"})
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH"
    r = client.delete("/todos")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"


def test_the_document_and_the_docs_page(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc == app.openapi()
    assert doc["info"]["title"] == "Todo API"
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert set(ops) == {
        ("GET", "/todos"),
        ("POST", "/todos"),
        ("GET", "/todos/{todo_id}"),
        ("PATCH", "/todos/{todo_id}"),
        ("DELETE", "/todos/{todo_id}"),
    }
    assert all(op["tags"] == ["todos"] for op in ops.values())
    listing = {p["name"]: p for p in ops["GET", "/todos"]["parameters"]}
    assert listing["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    assert listing["tag"]["schema"]["type"] == "array"
    create = ops["POST", "/todos"]["responses"]
    assert set(create) == {"201", "400", "413", "415", "422"}
    assert create["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TodoOut"
    }
    not_found = ops["GET", "/todos/{todo_id}"]["responses"]["404"]
    assert not_found == {
        "description": "No todo with this id",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    schemas = doc["components"]["schemas"]
    assert schemas["TodoIn"]["required"] == ["title"]
    assert schemas["TodoOut"]["required"] == ["title", "id"]
    assert "required" not in schemas["TodoPatch"] or schemas["TodoPatch"]["required"] == []
    assert schemas["TodoIn"]["properties"]["priority"]["enum"] == ["high", "low", "normal"]

    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "/openapi.json" in r.text


def test_apps_do_not_share_a_store(make_client: MakeClient) -> None:
    first, second = todo_api.create_app(), todo_api.create_app()
    assert make_client(first).post("/todos", json={"title": "x"}).status_code == 201
    assert make_client(second).get("/todos").json() == []


# --------------------------------------------------------- real servers


@pytest.mark.servers
@pytest.mark.parametrize("kind", SERVERS)
def test_runs_as_documented(kind: str) -> None:
    """``uvicorn examples.todo_api:app.asgi``, ``waitress-serve ...:app.wsgi``,
    ``gunicorn examples.todo_api:wsgi``: the commands of the module's docstring."""
    with (
        serve(kind, "examples.todo_api") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        r = http.post("/todos", json={"title": "write the docs", "due": "2030-01-31"})
        assert r.status_code == 201
        assert r.json() == todo(1, "write the docs", due="2030-01-31")
        r = http.patch("/todos/1", json={"done": True})
        assert r.json()["done"] is True
        assert [t["id"] for t in http.get("/todos", params={"done": "true"}).json()] == [1]
        assert http.get("/todos", params={"limit": 0}).status_code == 422
        assert http.post("/todos", data={"title": "x"}).status_code == 415
        assert http.delete("/todos/1").status_code == 204
        assert http.get("/todos/1").status_code == 404
        assert http.get("/openapi.json").json()["info"]["title"] == "Todo API"
        assert "swagger" in http.get("/docs").text.lower()
