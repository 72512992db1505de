"""``Form()`` parameters (API.md §13): a model, or single fields, filled from an
urlencoded or multipart form, with ``UploadFile`` fields; every bad field in a
422 at ``["form", field]``; 415 for a body that is not a form. Under both
protocols, for def and async def handlers."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any, TypedDict

import msgspec
import pydantic
import pytest

from microweb import App, Form, Query, Request, UploadFile

from .conftest import MakeClient


class Signup(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    age: Annotated[int, msgspec.Meta(ge=0)]
    tags: list[str] = []
    news: bool = False
    nick: int | None = None


class Upload(msgspec.Struct):
    title: str
    doc: UploadFile
    extras: list[UploadFile] = []
    cover: UploadFile | None = None


@dataclasses.dataclass
class Span:
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError("lo must not exceed hi")


class Search(TypedDict, total=False):
    q: str
    n: int


class Camel(msgspec.Struct, rename="camel"):
    first_name: str


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)
    age: int
    doc: UploadFile | None = None
    docs: list[UploadFile] = []


def _file(f: UploadFile | None) -> Any:
    if f is None:
        return None
    data = f.read().decode()
    return [f.filename, data]


def form_app(asynchronous: bool) -> tuple[App, list[UploadFile]]:
    app = App()
    seen: list[UploadFile] = []

    def route(path: str) -> Any:
        def register(fn: Any) -> Any:
            if asynchronous:
                sync = fn

                async def call(*args: Any, **kwargs: Any) -> Any:
                    return sync(*args, **kwargs)

                # the same signature and annotations, as an async def
                call.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
                call.__annotations__ = fn.__annotations__
                call.__name__ = fn.__name__
                call.__qualname__ = fn.__qualname__
                fn = call
            return app.post(path)(fn)

        return register

    @route("/signup")
    def signup(form: Annotated[Signup, Form()], dry: bool = False) -> dict[str, Any]:
        return {**msgspec.to_builtins(form), "dry": dry}

    @route("/upload")
    def upload(form: Annotated[Upload, Form()]) -> dict[str, Any]:
        files = [form.doc, *form.extras] + ([form.cover] if form.cover else [])
        seen.extend(files)
        assert not any(f.file.closed for f in files)  # open for the handler
        return {
            "title": form.title,
            "doc": _file(form.doc),
            "extras": [_file(f) for f in form.extras],
            "cover": _file(form.cover),
        }

    @route("/span")
    def span(form: Annotated[Span, Form()]) -> dict[str, Any]:
        return {"lo": form.lo, "hi": form.hi}

    @route("/search")
    def search(form: Annotated[Search, Form()]) -> Search:
        return form

    @route("/camel")
    def camel(form: Annotated[Camel, Form()]) -> dict[str, Any]:
        return {"first_name": form.first_name}

    @route("/person")
    def person(form: Annotated[Person, Form()]) -> dict[str, Any]:
        return {"name": form.name, "age": form.age, "doc": _file(form.doc),
                "docs": [_file(f) for f in form.docs]}  # fmt: skip

    @route("/login")
    def login(
        username: Annotated[str, Form()],
        password: Annotated[str, Form(min_length=8)],
        remember: Annotated[bool, Form()] = False,
        avatar: Annotated[UploadFile | None, Form()] = None,
        next: Annotated[str, Query()] = "/",
    ) -> dict[str, Any]:
        return {"username": username, "password": password, "remember": remember,
                "avatar": _file(avatar), "next": next}  # fmt: skip

    @route("/maybe")
    def maybe(form: Annotated[Signup | None, Form()] = None) -> dict[str, Any]:
        return {"form": None if form is None else form.name}

    return app, seen


@pytest.fixture(params=["def", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app_seen(kind: str) -> tuple[App, list[UploadFile]]:
    return form_app(kind == "async")


@pytest.fixture
def client(app_seen: tuple[App, list[UploadFile]], make_client: MakeClient) -> Any:
    return make_client(app_seen[0])


def locs(r: Any) -> list[list[Any]]:
    assert r.status_code == 422, r.text
    return [e["loc"] for e in r.json()["detail"]]


def test_an_urlencoded_form_fills_a_model_like_query_parameters(client: Any) -> None:
    r = client.post(
        "/signup?dry=yes",
        data={"name": "Ada", "age": "36", "tags": ["a", "b"], "news": "on", "nick": ""},
    )
    assert r.status_code == 200, r.text
    # strings converted, bool words understood, a list from repeated keys; an
    # empty value of a field that is not a string is absent (the default applies)
    assert r.json() == {"name": "Ada", "age": 36, "tags": ["a", "b"], "news": True,
                        "nick": None, "dry": True}  # fmt: skip


def test_the_same_form_sent_as_multipart(client: Any) -> None:
    r = client.post(
        "/signup",
        data={"name": "Ada", "age": "36", "tags": ["x"]},
        files={"unused": ("u.txt", b"ignored")},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "Ada", "age": 36, "tags": ["x"], "news": False,
                        "nick": None, "dry": False}  # fmt: skip


def test_a_multipart_upload_fills_file_fields(
    client: Any, app_seen: tuple[App, list[UploadFile]]
) -> None:
    r = client.post(
        "/upload",
        data={"title": "report"},
        files=[
            ("doc", ("report.pdf", b"%PDF body", "application/pdf")),
            ("extras", ("a.txt", b"first")),
            ("extras", ("b.txt", b"second")),
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "title": "report",
        "doc": ["report.pdf", "%PDF body"],
        "extras": [["a.txt", "first"], ["b.txt", "second"]],
        "cover": None,
    }
    seen = app_seen[1]
    assert len(seen) == 3
    assert all(f.file.closed for f in seen)  # closed once the response is sent


def test_an_empty_file_input_is_absent(client: Any) -> None:
    # what a browser sends for a file input left empty: no name, no content
    empty = ("", b"", "application/octet-stream")
    r = client.post(
        "/upload", data={"title": "t"}, files=[("doc", ("d.txt", b"d")), ("cover", empty)]
    )
    assert r.status_code == 200, r.text
    assert r.json()["cover"] is None
    r = client.post("/upload", data={"title": "t"}, files=[("doc", empty)])
    assert r.json()["detail"] == [
        {"loc": ["form", "doc"], "msg": "Field required", "type": "missing"}
    ]


def test_every_bad_field_is_listed_at_form(client: Any) -> None:
    r = client.post("/signup", data={"name": "", "age": "-1", "news": "maybe"})
    assert locs(r) == [["form", "name"], ["form", "age"], ["form", "news"]]
    r = client.post("/signup?dry=perhaps", data={"name": "Ada"})
    assert r.json()["detail"] == [
        {"loc": ["query", "dry"], "msg": "Expected `bool`, got `str`", "type": "type_error"},
        {"loc": ["form", "age"], "msg": "Field required", "type": "missing"},
    ]


def test_a_file_where_text_is_expected_and_text_where_a_file_is(client: Any) -> None:
    r = client.post("/signup", data={"age": "1"}, files={"name": ("n.txt", b"Ada")})
    assert r.json()["detail"] == [
        {"loc": ["form", "name"], "msg": "Expected a text field, got a file", "type": "type_error"}
    ]
    r = client.post("/upload", data={"title": "t", "doc": "not a file"})
    assert r.json()["detail"] == [
        {"loc": ["form", "doc"], "msg": "Expected a file, got a text field", "type": "type_error"}
    ]


def test_a_body_that_is_not_a_form_is_415(client: Any) -> None:
    assert client.post("/signup", json={"name": "Ada", "age": 1}).status_code == 415
    r = client.post("/signup", content=b"name=Ada&age=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/signup", content=b"name=Ada&age=1")  # a body, and no Content-Type
    assert r.status_code == 415


def test_no_form_at_all_means_missing_fields_or_the_default(client: Any) -> None:
    assert locs(client.post("/signup")) == [["form", "name"], ["form", "age"]]
    assert client.post("/maybe").json() == {"form": None}
    assert client.post("/maybe", data={"name": "Ada", "age": "3"}).json() == {"form": "Ada"}
    # a form is there, but incomplete: its fields are reported, not the default used
    assert locs(client.post("/maybe", data={"name": "Ada"})) == [["form", "age"]]


def test_dataclasses_typeddicts_and_renamed_structs(client: Any) -> None:
    assert client.post("/span", data={"lo": "1", "hi": "2"}).json() == {"lo": 1, "hi": 2}
    r = client.post("/span", data={"lo": "3", "hi": "2"})  # __post_init__ refuses it
    assert r.json()["detail"] == [
        {"loc": ["form"], "msg": "lo must not exceed hi", "type": "value_error"}
    ]
    assert client.post("/search", data={"n": "4", "x": "y"}).json() == {"n": 4}
    assert client.post("/camel", data={"firstName": "Ada"}).json() == {"first_name": "Ada"}
    assert locs(client.post("/camel", data={"first_name": "Ada"})) == [["form", "firstName"]]


def test_pydantic_form_models_are_validated_by_pydantic(client: Any) -> None:
    r = client.post(
        "/person",
        data={"name": "Ada", "age": "36"},
        files=[("doc", ("cv.txt", b"cv")), ("docs", ("1.txt", b"1")), ("docs", ("2.txt", b"2"))],
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "Ada", "age": 36, "doc": ["cv.txt", "cv"],
                        "docs": [["1.txt", "1"], ["2.txt", "2"]]}  # fmt: skip
    r = client.post("/person", data={"age": "old", "doc": "text"})
    assert locs(r) == [["form", "name"], ["form", "age"], ["form", "doc"]]
    assert r.json()["detail"][0]["type"] == "missing"


def test_form_on_single_parameters_reads_one_field_each(client: Any) -> None:
    r = client.post("/login?next=/home", data={"username": "ada", "password": "s3cret-pw"})
    assert r.json() == {"username": "ada", "password": "s3cret-pw", "remember": False,
                        "avatar": None, "next": "/home"}  # fmt: skip
    r = client.post(
        "/login",
        data={"username": "ada", "password": "s3cret-pw", "remember": "1"},
        files={"avatar": ("me.png", b"png")},
    )
    assert r.json()["remember"] is True
    assert r.json()["avatar"] == ["me.png", "png"]
    r = client.post("/login", data={"password": "short"})
    assert r.json()["detail"] == [
        {"loc": ["form", "username"], "msg": "Field required", "type": "missing"},
        {"loc": ["form", "password"], "msg": "Expected `str` of length >= 8",
         "type": "value_error"},
    ]  # fmt: skip


def test_the_form_limits_apply(make_client: MakeClient) -> None:
    app = App(max_form_fields=3)

    @app.post("/s")
    def s(form: Annotated[Signup, Form()]) -> str:
        return form.name

    client = make_client(app)
    assert client.post("/s", data={"name": "a", "age": "1"}).status_code == 200
    assert client.post("/s", data={"name": "a", "age": "1", "tags": ["1", "2"]}).status_code == 413
    r = client.post(
        "/s",
        content=b"--B\r\nContent-Disposition: form-data; name=name\r\n\r\nx",  # cut short
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 400


@pytest.mark.parametrize("first", ["body", "form"])
def test_a_hook_may_read_the_body_or_the_form_first(
    make_client: MakeClient, kind: str, first: str
) -> None:
    app = App()
    read: list[Any] = []

    if kind == "async":

        @app.before_request
        async def peek(request: Request) -> None:
            read.append(await (request.body() if first == "body" else request.form()))

    else:

        @app.before_request
        def peek(request: Request) -> None:
            read.append(request.body() if first == "body" else request.form())

    @app.post("/u")
    def u(form: Annotated[Upload, Form()]) -> list[Any]:
        return [form.title, _file(form.doc)]

    client = make_client(app)
    r = client.post("/u", data={"title": "t"}, files={"doc": ("d.txt", b"data")})
    assert r.json() == ["t", ["d.txt", "data"]]
    assert read and read[0]
    r = client.post("/u", data={"title": "t", "doc": "text"})
    assert locs(r) == [["form", "doc"]]


def test_through_middleware(make_client: MakeClient) -> None:
    app = App()

    @app.middleware
    async def tag(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-seen"] = "1"
        return response

    @app.post("/s")
    async def s(form: Annotated[Signup, Form()]) -> str:
        return form.name

    r = make_client(app).post("/s", data={"name": "Ada", "age": "1"})
    assert (r.status_code, r.text, r.headers["x-seen"]) == (200, "Ada", "1")


def test_form_registration_errors_name_the_handler_and_the_parameter() -> None:
    app = App()
    with pytest.raises(TypeError, match=r"handler .*json_and_form.* JSON body 'item'.* 'name'"):

        @app.post("/a")
        def json_and_form(item: Signup, name: Annotated[str, Form()]) -> None: ...

    with pytest.raises(TypeError, match=r"handler .*form_then_json.* JSON body 'item'.* 'form'"):

        @app.post("/a")
        def form_then_json(form: Annotated[Signup, Form()], item: Signup) -> None: ...

    with pytest.raises(TypeError, match=r"handler .*two_forms.* two body parameters"):

        @app.post("/b")
        def two_forms(a: Annotated[Signup, Form()], b: Annotated[Span, Form()]) -> None: ...

    with pytest.raises(TypeError, match=r"handler .*model_and_field.* 'form'.* 'extra'"):

        @app.post("/c")
        def model_and_field(
            extra: Annotated[str, Form()], form: Annotated[Signup, Form()]
        ) -> None: ...

    with pytest.raises(TypeError, match=r"field 'inner' of form model Nested .*'form' of handler"):

        @app.post("/d")
        def nested(form: Annotated[Nested, Form()]) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'forms' of handler .*lists.* one model"):

        @app.post("/e")
        def lists(forms: Annotated[list[Signup], Form()]) -> None: ...

    with pytest.raises(TypeError, match=r"default of parameter 'n' of handler .*bad_default"):

        @app.post("/f")
        def bad_default(n: Annotated[int, Form(ge=1)] = 0) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'f' of handler .*bare_file.*Form\(\)"):

        @app.post("/g")
        def bare_file(f: UploadFile) -> None: ...


class Nested(msgspec.Struct):
    inner: Signup


def test_a_websocket_handler_takes_no_form() -> None:
    app = App()
    with pytest.raises(TypeError, match="cannot take a body parameter"):

        @app.websocket("/ws")
        async def ws(websocket: Any, name: Annotated[str, Form()]) -> None: ...
