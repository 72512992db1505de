"""The example apps, exercised as a user would, under both protocols."""

from __future__ import annotations

import httpx
import pytest

from examples import crud, hello
from microweb import App
from microweb.testing import TestClient

from .conftest import MakeClient
from .servers import SERVERS, serve

# ------------------------------------------------------------------ hello


def test_hello_entry_points() -> None:
    assert hello.wsgi is hello.app.wsgi
    assert crud.wsgi is crud.app.wsgi


def test_hello_text(make_client: MakeClient) -> None:
    client = make_client(hello.app)
    r = client.get("/")
    assert r.status_code == 200
    assert r.text == "Hello, World!"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == str(len("Hello, World!"))


def test_hello_head(make_client: MakeClient) -> None:
    r = make_client(hello.app).head("/")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len("Hello, World!"))


def test_hello_json_with_path_parameter(make_client: MakeClient) -> None:
    client = make_client(hello.app)
    r = client.get("/users/42")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"id": 42, "name": "user 42"}


@pytest.mark.parametrize("path", ["/users/abc", "/users/-1", "/users/", "/nowhere"])
def test_hello_not_found(make_client: MakeClient, path: str) -> None:
    r = make_client(hello.app).get(path)
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


def test_hello_async_handler(make_client: MakeClient) -> None:
    client = make_client(hello.app)
    assert client.get("/sleep/5").json() == {"slept_ms": 5}
    assert client.get("/sleep/0").json() == {"slept_ms": 0}


def test_hello_wrong_method(make_client: MakeClient) -> None:
    r = make_client(hello.app).post("/")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


# ------------------------------------------------------------------- crud


@pytest.fixture
def app() -> App:
    return crud.create_app()  # an empty store for each test


def test_crud_lifecycle(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    assert client.get("/api/todos").json() == []

    r = client.post("/api/todos", json={"title": "write the docs"})
    assert r.status_code == 201
    todo = r.json()
    assert todo == {"id": 1, "title": "write the docs", "done": False}
    assert r.headers["location"] == "/api/todos/1"

    r = client.get(r.headers["location"])
    assert r.status_code == 200
    assert r.json() == todo

    r = client.put("/api/todos/1", json={"title": "write the docs", "done": True})
    assert r.status_code == 200
    assert r.json() == {"id": 1, "title": "write the docs", "done": True}
    assert client.get("/api/todos").json() == [r.json()]

    r = client.delete("/api/todos/1")
    assert r.status_code == 204
    assert r.content == b""
    assert client.get("/api/todos/1").status_code == 404
    assert client.get("/api/todos").json() == []


def test_crud_ids_and_filter(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    for title, done in [("a", False), ("b", True), ("c", False)]:
        assert client.post("/api/todos", json={"title": title, "done": done}).status_code == 201
    assert [t["id"] for t in client.get("/api/todos").json()] == [1, 2, 3]
    assert [t["title"] for t in client.get("/api/todos?done=true").json()] == ["b"]
    assert [t["title"] for t in client.get("/api/todos?done=false").json()] == ["a", "c"]
    r = client.get("/api/todos?done=maybe")
    assert r.status_code == 400
    assert r.json() == {"detail": "done must be true or false"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_crud_missing_todo(make_client: MakeClient, app: App, method: str) -> None:
    r = make_client(app).request(method, "/api/todos/99", json={"title": "x"})
    assert r.status_code == 404
    assert r.json() == {"detail": "No todo with id 99"}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"title": "required, a non-empty string"}),
        ({"title": "  "}, {"title": "required, a non-empty string"}),
        ({"title": "x", "done": "yes"}, {"done": "must be true or false"}),
        ({"title": "x", "owner": "me"}, {"body": "unknown field(s): owner"}),
        ([1, 2], {"body": "expected a JSON object"}),
    ],
)
def test_crud_validation(make_client: MakeClient, app: App, body: object, errors: object) -> None:
    client = make_client(app)
    r = client.post("/api/todos", json=body)
    assert r.status_code == 422
    assert r.json() == {"detail": "Invalid todo", "errors": errors}
    assert client.get("/api/todos").json() == []


def test_crud_invalid_json(make_client: MakeClient, app: App) -> None:
    r = make_client(app).post(
        "/api/todos", content=b'{"title": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json() == {"detail": "Invalid JSON body"}


def test_crud_requires_json(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    r = client.post("/api/todos", data={"title": "a form"})
    assert r.status_code == 415
    assert r.json() == {"detail": "Send JSON, with Content-Type: application/json"}
    r = client.post(
        "/api/todos",
        content=b'{"title": "x"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201


def test_crud_routing(make_client: MakeClient, app: App) -> None:
    client = make_client(app)
    r = client.patch("/api/todos/1", json={"title": "x"})
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PUT"
    r = client.get("/api/todos/", params={"done": "true"})
    assert r.status_code == 308
    assert r.headers["location"] == "/api/todos?done=true"
    assert client.get("/todos").status_code == 404
    assert client.get("/api/todos/one").status_code == 404


def test_crud_apps_do_not_share_a_store(make_client: MakeClient) -> None:
    first, second = crud.create_app(), crud.create_app()
    assert make_client(first).post("/api/todos", json={"title": "x"}).status_code == 201
    assert make_client(second).get("/api/todos").json() == []


def test_crud_through_the_pytest_plugin(client: TestClient) -> None:
    """The plugin's `client` fixture serves the `app` fixture above, once per protocol."""
    assert client.protocol in ("wsgi", "asgi")
    assert client.post("/api/todos", json={"title": "x"}).status_code == 201
    assert client.get("/api/todos/1").json() == {"id": 1, "title": "x", "done": False}


# --------------------------------------------------------- real servers


@pytest.mark.servers
@pytest.mark.parametrize("kind", SERVERS)
def test_examples_run_as_documented(kind: str) -> None:
    """``uvicorn examples.hello:app.asgi``, ``waitress-serve examples.hello:app.wsgi``,
    ``gunicorn examples.hello:wsgi``: the commands of the docs, for both examples."""
    with (
        serve(kind, "examples.hello") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.get("/").text == "Hello, World!"
        assert http.get("/users/7").json() == {"id": 7, "name": "user 7"}
        assert http.get("/sleep/1").json() == {"slept_ms": 1}
    with (
        serve(kind, "examples.crud") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        r = http.post("/api/todos", json={"title": "x"})
        assert r.status_code == 201
        assert r.headers["location"] == "/api/todos/1"
        assert http.get("/api/todos").json() == [{"id": 1, "title": "x", "done": False}]
        assert http.delete("/api/todos/1").status_code == 204
