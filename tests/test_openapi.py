"""OpenAPI (API.md section 13): `status=` and the documentation options of the
route decorators, `app.openapi()` (OpenAPI 3.1.0, checked by
openapi-spec-validator), `/openapi.json`, `/docs` (Swagger UI, offline with the
docs extra), and `microweb openapi`."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import uuid
from typing import Annotated, Any

import jsonschema
import msgspec
import pydantic
import pytest
from openapi_spec_validator import validate

from microweb import App, Form, Header, HTMLResponse, Path, Router, UploadFile
from microweb import _docs as docs_module
from tests.apps import typed_api

from . import browser
from .conftest import MakeClient
from .servers import BIN, ROOT, serve


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix(prefix)]
    return schema


# ------------------------------------------------------------------ the document


def test_a_rich_api_gives_a_valid_openapi_3_1_document() -> None:
    doc = typed_api.app.openapi()
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {
        "title": "Typed shop",
        "version": "2.0.0",
        "description": "Everything OpenAPI can say.",
    }
    ops = operations(doc)
    assert set(ops) == {
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/{item_id}"),
        ("DELETE", "/items/{item_id}"),
        ("GET", "/things/{thing_id}"),
        ("GET", "/ids/{key}"),
        ("GET", "/ratio/{value}"),
        ("GET", "/files/{name}"),
        ("POST", "/points"),
        ("POST", "/pairs"),
        ("POST", "/users"),
        ("PUT", "/settings"),
        ("GET", "/either"),
        ("POST", "/either"),
        ("GET", "/v1/ping"),
    }  # no hidden route, WebSocket, static mount, docs route or automatic HEAD/OPTIONS
    listing = ops["GET", "/items"]
    assert listing["tags"] == ["items"]
    assert listing["description"] == "List the items, filtered."  # the docstring
    params = {(p["in"], p["name"]): p for p in listing["parameters"]}
    assert set(params) == {
        ("query", "q"),
        ("query", "limit"),
        ("query", "tag"),
        ("query", "color"),
        ("query", "order"),
        ("header", "x-request-id"),
        ("cookie", "session"),
        ("query", "legacy"),
    }  # not the include_in_schema=False one
    assert params["query", "q"]["description"] == "Text in the name"
    assert params["query", "limit"] == {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": 10,
            "examples": [10],
        },
    }
    assert params["query", "tag"]["schema"] == {
        "type": "array",
        "items": {"type": "string"},
        "default": [],
    }
    assert params["query", "order"]["schema"] == {"enum": ["asc", "desc"], "default": "asc"}
    color = params["query", "color"]["schema"]["anyOf"]
    assert set(resolve(doc, color[0])["enum"]) == {"red", "blue"} and color[1] == {"type": "null"}
    assert params["query", "legacy"]["deprecated"] is True
    ok = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["type"] == "array" and resolve(doc, ok["items"])["required"] == [
        "name",
        "price",
        "id",
    ]

    create = ops["POST", "/items"]
    assert create["summary"] == "Create an item"
    assert create["requestBody"]["required"] is True
    item_in = resolve(doc, create["requestBody"]["content"]["application/json"]["schema"])
    assert item_in["properties"]["name"] == {"type": "string", "minLength": 1, "maxLength": 100}
    assert item_in["description"] == "An item to create."
    # status=201; a body that is not JSON (400), too large (413), or not sent as
    # JSON (415); and validated (422)
    assert set(create["responses"]) == {"201", "400", "413", "415", "422"}

    user = ops["POST", "/users"]["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(doc, user)["properties"]["age"] == {
        "maximum": 150,
        "minimum": 0,
        "title": "Age",
        "type": "integer",
    }  # pydantic's own schema
    points = ops["POST", "/points"]["requestBody"]["content"]["application/json"]["schema"]
    assert points["type"] == "array" and set(resolve(doc, points["items"])["properties"]) == {
        "x",
        "y",
    }
    pair = ops["POST", "/pairs"]["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(doc, pair)["required"] == ["a", "b"]
    settings = ops["PUT", "/settings"]["requestBody"]
    assert settings["description"] == "Names and numbers"
    assert settings["content"]["application/json"]["schema"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }

    thing = ops["GET", "/things/{thing_id}"]
    assert thing["deprecated"] is True and thing["operationId"] == "thing"
    assert thing["parameters"][0] == {
        "name": "thing_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        "description": "The thing",
    }
    get_item = ops["GET", "/items/{item_id}"]["responses"]
    assert set(resolve(doc, get_item["404"]["content"]["application/json"]["schema"])) >= {
        "properties"
    }
    delete = ops["DELETE", "/items/{item_id}"]["responses"]
    assert delete == {"204": {"description": "No Content"}, "404": {"description": "No such item"}}
    html = ops["GET", "/files/{name}"]["responses"]["200"]["content"]
    assert html == {"text/html": {"schema": {"type": "string"}}}
    assert ops["GET", "/either"]["operationId"] != ops["POST", "/either"]["operationId"]


class Profile(msgspec.Struct):
    name: str
    age: int = 0
    avatar: UploadFile | None = None


def test_forms_are_documented_as_urlencoded_and_multipart_bodies() -> None:
    app = App()

    @app.post("/profile")
    def profile(p: Annotated[Profile, Form()]) -> None: ...

    @app.post("/login")
    def login(user: Annotated[str, Form()], remember: Annotated[bool, Form()] = False) -> None: ...

    doc = app.openapi()
    validate(doc)
    media = ["application/x-www-form-urlencoded", "multipart/form-data"]
    model = doc["paths"]["/profile"]["post"]["requestBody"]
    assert sorted(model["content"]) == media
    assert model["content"][media[1]]["schema"] == {"$ref": "#/components/schemas/Profile"}
    avatar = doc["components"]["schemas"]["Profile"]["properties"]["avatar"]
    assert {"type": "string", "format": "binary"} in avatar["anyOf"]
    fields = doc["paths"]["/login"]["post"]["requestBody"]
    assert fields["required"] is True
    schema = fields["content"][media[0]]["schema"]
    assert schema["required"] == ["user"]
    assert schema["properties"]["remember"]["type"] == "boolean"


def test_path_templates_are_written_plain_with_typed_schemas() -> None:
    app = App()

    @app.get("/a/{n:int}/{u:uuid}/{f:float}/{s}/{rest:path}")
    def everything(n: int, u: uuid.UUID, f: float, s: str, rest: str) -> None: ...

    app.add_converter("slug", r"[a-z-]+")

    @app.get("/b/{n:int}/{slug:slug}")
    def typed(n: Annotated[int, Path(le=10)], slug: str) -> None: ...

    doc = app.openapi()
    validate(doc)
    (params,) = [op["parameters"] for (_, path), op in operations(doc).items() if "/a/" in path]
    assert next(iter(doc["paths"])) == "/a/{n}/{u}/{f}/{s}/{rest}"
    assert [(p["name"], p["in"], p["required"], p["schema"]) for p in params] == [
        ("n", "path", True, {"type": "integer", "minimum": 0}),
        ("u", "path", True, {"type": "string", "format": "uuid"}),
        ("f", "path", True, {"type": "number", "minimum": 0}),
        ("s", "path", True, {"type": "string"}),
        ("rest", "path", True, {"type": "string"}),
    ]
    n, slug = doc["paths"]["/b/{n}/{slug}"]["get"]["parameters"]
    assert n["schema"] == {"type": "integer", "maximum": 10, "minimum": 0}
    assert slug["schema"] == {"type": "string", "pattern": "^(?:[a-z-]+)$"}


def test_a_422_is_documented_only_where_values_are_validated() -> None:
    app = App()

    @app.get("/plain/{n:int}")
    def plain(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/query")
    def query(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/header")
    def header(x_token: Annotated[str, Header()]) -> None: ...

    @app.get("/untyped")
    def untyped(request: Any) -> dict[str, int]:
        return {}

    ops = operations(app.openapi())
    assert "422" not in ops["GET", "/plain/{n}"]["responses"]
    assert "422" not in ops["GET", "/untyped"]["responses"]
    for path in ("/query", "/header"):
        error = ops["GET", path]["responses"]["422"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/HTTPValidationError"}
    schemas = app.openapi()["components"]["schemas"]
    assert schemas["HTTPValidationError"]["properties"]["detail"]["items"] == {
        "$ref": "#/components/schemas/ValidationError"
    }
    assert set(schemas["ValidationError"]["properties"]) == {"loc", "msg", "type"}
    # and no error schema at all where nothing is validated
    bare = App()

    @bare.get("/")
    def home() -> str:
        return "home"

    assert "components" not in bare.openapi()


def conforms(doc: dict[str, Any], response: Any, path: str, method: str) -> None:
    """`response` has a status the document lists for the operation, and a JSON
    body its schema accepts."""
    documented = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in documented
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": doc["components"]})


def test_a_body_route_documents_what_the_app_answers_to_a_body_it_cannot_read(
    make_client: MakeClient,
) -> None:
    """Found by schemathesis: a JSON body that is not JSON (400) or not sent as
    JSON (415), and a form that is not a form, were answered with statuses the
    document did not list."""
    app = App()

    @app.post("/items")
    def create(item: Made) -> Made:
        return item

    @app.post("/login")
    def login(user: Annotated[str, Form()]) -> dict[str, str]:
        return {"user": user}

    @app.post("/mine", responses={400: "Not mine"})
    def mine(item: Made) -> None: ...

    @app.get("/query")
    def query(limit: int = 10) -> None: ...

    doc = app.openapi()
    validate(doc)
    error = {"$ref": "#/components/schemas/HTTPError"}
    for path in ("/items", "/login"):
        responses = doc["paths"][path]["post"]["responses"]
        assert {"400", "413", "415", "422"} <= set(responses)
        for code in ("400", "413", "415"):
            assert responses[code]["content"] == {"application/json": {"schema": error}}
    assert "not JSON" in doc["paths"]["/items"]["post"]["responses"]["415"]["description"]
    assert "not a form" in doc["paths"]["/login"]["post"]["responses"]["415"]["description"]
    assert doc["paths"]["/mine"]["post"]["responses"]["400"] == {"description": "Not mine"}
    assert set(doc["paths"]["/query"]["get"]["responses"]) == {"204", "422"}  # no body read
    assert doc["components"]["schemas"]["HTTPError"]["required"] == ["detail"]

    client = make_client(app)
    json_headers = {"content-type": "application/json"}
    answers = [
        ("/items", client.post("/items", content=b"{", headers=json_headers)),
        ("/items", client.post("/items", content=b'{"id": 1}')),  # no Content-Type
        ("/items", client.post("/items", data={"id": "1"})),
        ("/login", client.post("/login", content=b'{"user": "a"}', headers=json_headers)),
    ]
    assert [r.status_code for _, r in answers] == [400, 415, 415, 415]
    for path, response in answers:
        conforms(doc, response, path, "post")


def test_a_route_with_path_parameters_documents_its_404(make_client: MakeClient) -> None:
    """Found by schemathesis: ``/ids/{key:uuid}`` answers a key that is not a UUID
    with a 404 (no route matches), which the document did not list."""
    app = App()

    @app.get("/ids/{key:uuid}")
    def by_key(key: uuid.UUID) -> dict[str, str]:
        return {"key": str(key)}

    @app.get("/ratio/{value:float}")
    def ratio(value: float) -> None: ...

    @app.get("/items/{item_id:int}", responses={404: "No such item"})
    def item(item_id: int) -> None: ...

    @app.get("/all")
    def everything() -> None: ...

    doc = app.openapi()
    validate(doc)
    for path in ("/ids/{key}", "/ratio/{value}"):
        not_found = doc["paths"][path]["get"]["responses"]["404"]
        assert not_found["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/HTTPError"
        }
    assert doc["paths"]["/items/{item_id}"]["get"]["responses"]["404"] == {
        "description": "No such item"
    }
    assert set(doc["paths"]["/all"]["get"]["responses"]) == {"204"}

    client = make_client(app)
    for url, path in [("/ids/not-a-uuid", "/ids/{key}"), ("/ratio/-1", "/ratio/{value}")]:
        response = client.get(url)
        assert response.status_code == 404
        conforms(doc, response, path, "get")


def test_operation_ids_are_unique() -> None:
    app = App()

    @app.route("/x", methods=["GET", "POST"])
    def x() -> None: ...

    @app.get("/a", operation_id="same")
    def a() -> None: ...

    @app.get("/b", operation_id="same")
    def b() -> None: ...

    @app.get("/x_get")
    def x_get() -> None: ...

    ids = [op["operationId"] for op in operations(app.openapi()).values()]
    assert len(ids) == len(set(ids)) == 5
    assert {"x_get", "x_post", "same"} <= set(ids)


def _struct(module: str) -> Any:
    return msgspec.defstruct("Item", [("size", int)], module=module)


def _model(module: str, field: str = "colour") -> Any:
    return pydantic.create_model("Item", **{field: (str, ...)}, __module__=module)  # type: ignore[call-overload]


# classes named Item, from several modules (module-level: annotations are resolved)
StructA, StructB, StructC = _struct("shop.a"), _struct("shop.b"), _struct("shop.items")
ModelA, ModelB, ModelC = _model("crm.a", "colour"), _model("crm.b", "shade"), _model("crm.c", "hue")
ModelD = _model("crm.items")


class Made(msgspec.Struct):
    id: int


def test_components_with_one_name_do_not_collide() -> None:
    app = App()

    @app.post("/sa")
    def sa(item: StructA) -> None: ...  # type: ignore[valid-type]

    @app.post("/sb")
    def sb(item: StructB) -> None: ...  # type: ignore[valid-type]

    @app.post("/ma")
    def ma(item: ModelA) -> None: ...  # type: ignore[valid-type]

    @app.post("/mb")
    def mb(item: ModelB) -> ModelB:  # type: ignore[valid-type]
        return item

    @app.post("/m")
    def m(item: ModelC) -> None: ...  # type: ignore[valid-type]

    doc = app.openapi()
    validate(doc)
    ops = operations(doc)

    def body(path: str) -> dict[str, Any]:
        schema = ops["POST", path]["requestBody"]["content"]["application/json"]["schema"]
        return resolve(doc, schema)

    assert list(body("/sa")["properties"]) == list(body("/sb")["properties"]) == ["size"]
    assert list(body("/ma")["properties"]) == ["colour"]
    assert list(body("/mb")["properties"]) == ["shade"]
    assert list(body("/m")["properties"]) == ["hue"]
    refs = {
        path: ops["POST", path]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for path in ("/sa", "/sb", "/ma", "/mb", "/m")
    }
    assert len(set(refs.values())) == 5  # five classes, five components
    names = set(doc["components"]["schemas"])
    assert {"shop.a.Item", "shop.b.Item"} <= names  # msgspec's own qualified names
    assert any("crm__b__Item" in name for name in names)  # pydantic's
    returned = ops["POST", "/mb"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert list(resolve(doc, returned)["properties"]) == ["shade"]  # pydantic's, as it names it


def test_a_pydantic_model_named_like_a_msgspec_one_is_renamed() -> None:
    app = App()

    @app.post("/s")
    def s(item: StructC) -> None: ...  # type: ignore[valid-type]

    @app.post("/m")
    def m(item: ModelD) -> list[ModelD]:  # type: ignore[valid-type]
        return [item]

    doc = app.openapi()
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert list(schemas["Item"]["properties"]) == ["size"]  # msgspec's keeps its name
    assert list(schemas["crm__items__Item"]["properties"]) == ["colour"]
    m_op = doc["paths"]["/m"]["post"]
    assert m_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/crm__items__Item"
    }
    items = m_op["responses"]["200"]["content"]["application/json"]["schema"]["items"]
    assert items == {"$ref": "#/components/schemas/crm__items__Item"}


def test_decorator_documentation_options() -> None:
    app = App(title="T", version="9")
    router = Router()

    class NotFound(msgspec.Struct):
        detail: str

    @router.patch(
        "/things/{thing_id}",
        tags=["things"],
        summary="Change a thing",
        description="Written here, not taken from the docstring.",
        deprecated=True,
        operation_id="change",
        responses={
            404: NotFound,
            "5XX": "Trouble",
            409: {"description": "Clash", "model": NotFound},
        },
        status=202,
    )
    def change_thing(thing_id: str) -> None:
        """Not the description."""

    @router.get("/secret", include_in_schema=False)
    def secret() -> None: ...

    app.include_router(router, prefix="/api")
    doc = app.openapi()
    validate(doc)
    assert list(doc["paths"]) == ["/api/things/{thing_id}"]
    op = doc["paths"]["/api/things/{thing_id}"]["patch"]
    assert op["tags"] == ["things"] and op["summary"] == "Change a thing"
    assert op["description"] == "Written here, not taken from the docstring."
    assert op["deprecated"] is True and op["operationId"] == "change"
    assert set(op["responses"]) == {"202", "404", "409", "5XX"}
    assert op["responses"]["202"] == {"description": "Accepted"}
    assert op["responses"]["5XX"] == {"description": "Trouble"}
    assert op["responses"]["409"]["description"] == "Clash"
    for status in ("404", "409"):
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        assert resolve(doc, schema)["required"] == ["detail"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"status": 99}, ValueError, "status must be an int in 100..599"),
        ({"status": "201"}, ValueError, "status must be an int in 100..599"),
        ({"tags": "items"}, TypeError, "tags=['items']"),
        ({"responses": {"oops": "x"}}, ValueError, "responses keys are statuses"),
    ],
)
def test_bad_options_are_refused_at_registration(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    for registrar in (App(), Router()):
        with pytest.raises(error, match=message.replace("[", r"\[").replace(".", r"\.")):
            registrar.get("/x", **options)


def test_the_document_is_cached_and_rebuilt_when_a_route_is_added() -> None:
    app = App()

    @app.get("/one")
    def one() -> None: ...

    first = app.openapi()
    assert app.openapi() is first
    assert list(first["paths"]) == ["/one"]

    @app.get("/two")
    def two() -> None: ...

    assert list(app.openapi()["paths"]) == ["/one", "/two"]


# ------------------------------------------------------------------ status=


def test_status_is_the_status_of_a_return_that_is_no_response(
    make_client: MakeClient,
) -> None:
    app = App()

    @app.post("/sync", status=201)
    def sync() -> dict[str, int]:
        return {"id": 1}

    @app.post("/async", status=201)
    async def asynchronous() -> Made:
        return {"id": 2, "secret": "dropped"}  # type: ignore[return-value]

    @app.post("/none", status=202)
    def accepted() -> None:
        return None

    @app.post("/tuple", status=201)
    def own_status() -> tuple[dict[str, int], int]:
        return {"id": 3}, 200

    @app.post("/model-tuple", status=201)
    def model_tuple() -> Made:
        return {"id": 4, "secret": "dropped"}, 203  # type: ignore[return-value]

    @app.post("/response", status=201)
    def response() -> HTMLResponse:
        return HTMLResponse("<p>as is</p>", status=200)

    client = make_client(app)
    r = client.post("/sync")
    assert (r.status_code, r.json()) == (201, {"id": 1})
    r = client.post("/async")
    assert (r.status_code, r.json()) == (201, {"id": 2})
    r = client.post("/none")
    assert (r.status_code, r.content) == (202, b"")
    r = client.post("/tuple")
    assert (r.status_code, r.json()) == (200, {"id": 3})
    r = client.post("/model-tuple")
    assert (r.status_code, r.json()) == (203, {"id": 4})
    r = client.post("/response")
    assert (r.status_code, r.text) == (200, "<p>as is</p>")


def test_routes_without_status_are_not_wrapped() -> None:
    app = App()

    @app.get("/")
    def home() -> dict[str, int]:
        return {}

    @app.get("/made", status=201)
    def made() -> dict[str, int]:
        return {}

    plain, wrapped = app.routes
    assert plain.endpoint is home and plain.handler is home
    assert wrapped.endpoint is not made and wrapped.handler is made and wrapped.status == 201


# ------------------------------------------------------------------ served


def test_openapi_json_and_docs_are_served(make_client: MakeClient) -> None:
    client = make_client(typed_api.app)
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == json.loads(json.dumps(typed_api.app.openapi()))
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Typed shop - Swagger UI</title>" in r.text
    assert 'url: "/openapi.json"' in r.text
    # the docs extra is installed: Swagger UI's files are the app's own
    assert '<script src="/docs/assets/swagger-ui-bundle.js"></script>' in r.text
    assert "cdn." not in r.text
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert b"SwaggerUIBundle" in js.content
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.head("/openapi.json").status_code == 200
    for bad in ("/docs/assets/../../../etc/passwd", "/docs/assets/%2e%2e/x", "/docs/assets/"):
        assert client.get(bad).status_code == 404
    # the app's own routes are what they were
    assert all(route.path not in ("/openapi.json", "/docs") for route in typed_api.app.routes)


def test_docs_and_document_follow_the_root_path(make_client: MakeClient) -> None:
    client = make_client(typed_api.app, root_path="/shop")
    doc = client.get("/openapi.json").json()
    assert doc["servers"] == [{"url": "/shop"}]  # "Try it out" calls the API there
    assert "servers" not in typed_api.app.openapi()
    page = client.get("/docs").text
    assert 'url: "/shop/openapi.json"' in page
    assert 'src="/shop/docs/assets/swagger-ui-bundle.js"' in page


def test_without_the_docs_extra_the_page_loads_swagger_ui_from_a_cdn(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs_module, "swagger_ui_directory", lambda: None)
    app = App(title="<Shop>")
    client = make_client(app)
    page = client.get("/docs").text
    version = docs_module.SWAGGER_UI_VERSION
    js = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{version}/swagger-ui-bundle.js"
    assert f'<script src="{js}" integrity="sha384-' in page
    assert 'crossorigin="anonymous"' in page
    assert "<title>&lt;Shop&gt; - Swagger UI</title>" in page
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 404


def test_the_docs_routes_can_be_moved_or_turned_off(make_client: MakeClient) -> None:
    moved = make_client(App(openapi_url="/api/schema.json", docs_url="/api/docs"))
    assert moved.get("/api/schema.json").json()["openapi"] == "3.1.0"
    assert 'url: "/api/schema.json"' in moved.get("/api/docs").text
    assert moved.get("/api/docs/assets/swagger-ui.css").status_code == 200
    assert moved.get("/openapi.json").status_code == 404
    assert moved.get("/docs").status_code == 404
    no_docs = make_client(App(docs_url=None))
    assert no_docs.get("/openapi.json").status_code == 200
    assert no_docs.get("/docs").status_code == 404
    nothing = make_client(App(openapi_url=None))  # no document: no docs either
    assert nothing.get("/openapi.json").status_code == 404
    assert nothing.get("/docs").status_code == 404


def test_the_apps_own_routes_take_precedence(
    make_client: MakeClient, tmp_path: pathlib.Path
) -> None:
    app = App()

    @app.get("/docs/")
    def my_docs() -> str:
        return "my docs"

    @app.get("/openapi.json")
    def my_schema() -> dict[str, str]:
        return {"mine": "yes"}

    client = make_client(app)
    assert client.get("/docs", follow_redirects=True).text == "my docs"
    assert client.get("/openapi.json").json() == {"mine": "yes"}
    assert client.post("/openapi.json").status_code == 405
    # a static site at / keeps serving its own docs/ folder
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("<h1>site docs</h1>")
    site = App()
    site.static("/", tmp_path, html=True)
    client = make_client(site)
    assert client.get("/docs/").text == "<h1>site docs</h1>"
    assert site.openapi()["paths"] == {}  # a static mount is no operation
    assert App().routes == []


def test_hooks_run_for_the_docs_routes_too(make_client: MakeClient) -> None:
    app = App()

    @app.before_request
    def members_only(request: Any) -> Any:
        if request.headers.get("x-member") != "yes":
            return {"detail": "members only"}, 401
        return None

    client = make_client(app)
    for path in ("/openapi.json", "/docs", "/docs/assets/swagger-ui.css"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"x-member": "yes"}).status_code == 200


def test_microweb_openapi_prints_the_document() -> None:
    for command in (
        [str(BIN / "microweb"), "openapi", "tests.apps.typed_api:app"],
        [sys.executable, "-m", "microweb", "openapi", "tests.apps.typed_api:app", "--indent", "0"],
    ):
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        )
        assert json.loads(result.stdout) == json.loads(json.dumps(typed_api.app.openapi()))
    assert len(result.stdout.splitlines()) == 1  # --indent 0: one line


# ------------------------------------------------------------------ in a browser


@pytest.mark.servers
@pytest.mark.skipif(
    browser.CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)
@pytest.mark.parametrize("server", ["uvicorn", "waitress"])
def test_swagger_ui_works_offline_in_chromium(server: str) -> None:
    """The docs page, its files served by the app (the docs extra) and Chromium kept
    off every host but this one: the operations are listed, and "Try it out" then
    "Execute" on a GET shows the API's 200."""
    op = "#operations-items-list_items"

    async def scenario(url: str) -> tuple[list[str], list[str], str, str]:
        async with browser.chromium(browser.LOCAL_ONLY) as chrome:
            page = await chrome.open(f"{url}/docs", width=1200, height=900)
            await chrome.wait_for(page, "document.querySelectorAll('.opblock').length >= 15")
            listed = await chrome.evaluate(
                page,
                "Array.from(document.querySelectorAll('.opblock-summary-path'))"
                ".map(e => e.textContent)",
            )
            for step in (".opblock-summary-control", ".try-out__btn", "button.execute"):
                selector = json.dumps(f"{op} {step}")
                await chrome.wait_for(page, f"!!document.querySelector({selector})")
                await chrome.evaluate(page, f"document.querySelector({selector}).click(); true")
            cell = json.dumps(f"{op} .live-responses-table tbody .response-col_status")
            status = await chrome.wait_for(
                page, f"document.querySelector({cell})?.textContent.trim()"
            )
            shown = await chrome.evaluate(
                page,
                f"document.querySelector({json.dumps(op + ' .live-responses-table')}).textContent",
            )
            loaded = await chrome.evaluate(
                page, "performance.getEntriesByType('resource').map(e => e.name)"
            )
            return listed, loaded, status, shown

    with serve(server, "tests.apps.typed_api") as running:
        listed, loaded, status, shown = asyncio.run(scenario(running.url))
    assert {"/items", "/items/{item_id}", "/users", "/v1/ping"} <= set(listed)
    assert "/hidden" not in listed
    assert status == "200"
    assert '"lamp"' in shown  # the API's answer, as Swagger UI shows it
    assert f"{running.url}/docs/assets/swagger-ui-bundle.js" in loaded
    assert f"{running.url}/openapi.json" in loaded
    assert all(name.startswith(running.url + "/") for name in loaded), loaded
