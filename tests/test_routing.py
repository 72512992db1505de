"""Routing: path syntax, converters, matching order, 404/405, HEAD/OPTIONS, slashes, url_for."""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import uuid
from decimal import Decimal
from typing import Any

import pytest

from microweb import (
    App,
    BackgroundTask,
    FileResponse,
    HTTPException,
    PlainTextResponse,
    Request,
    Response,
    Router,
    StreamingResponse,
)
from microweb._matching import Matcher

from .conftest import MakeClient


def test_path_parameters_and_converters(make_client: MakeClient) -> None:
    app = App()

    @app.get("/s/{name}")
    def s(name: str) -> dict[str, object]:
        return {"name": name}

    @app.get("/i/{n:int}")
    def i(n: int) -> dict[str, object]:
        return {"n": n, "type": type(n).__name__}

    @app.get("/f/{x:float}")
    def f(x: float) -> dict[str, object]:
        return {"x": x, "type": type(x).__name__}

    @app.get("/u/{u:uuid}")
    def u(u: uuid.UUID) -> dict[str, object]:
        return {"u": str(u), "type": type(u).__name__}

    @app.get("/p/{rest:path}")
    def p(rest: str) -> dict[str, object]:
        return {"rest": rest}

    @app.get("/typed/{v:str}")
    def typed(v: str) -> str:
        return v

    client = make_client(app)
    assert client.get("/s/abc").json() == {"name": "abc"}
    assert client.get("/i/42").json() == {"n": 42, "type": "int"}
    assert client.get("/f/1.5").json() == {"x": 1.5, "type": "float"}
    value = "12345678-1234-5678-1234-567812345678"
    assert client.get(f"/u/{value}").json() == {"u": value, "type": "UUID"}
    assert client.get("/p/a/b/c.txt").json() == {"rest": "a/b/c.txt"}
    assert client.get("/typed/x").text == "x"
    # a converter that does not match is a 404, never a 500
    assert client.get("/i/abc").status_code == 404
    assert client.get("/i/-1").status_code == 404
    assert client.get("/u/not-a-uuid").status_code == 404
    assert client.get("/f/1e5").status_code == 404


def test_int_accepts_ascii_digits_only(make_client: MakeClient) -> None:
    app = App()

    @app.get("/i/{n:int}")
    def i(n: int) -> dict[str, int]:
        return {"n": n}

    client = make_client(app)
    assert client.get("/i/%D9%A3").status_code == 404  # ARABIC-INDIC DIGIT THREE
    assert client.get("/i/%EF%BC%93").status_code == 404  # FULLWIDTH DIGIT THREE
    assert client.get("/i/" + "9" * 5000).status_code == 404


def test_mixed_segments(make_client: MakeClient) -> None:
    app = App()

    @app.get("/files/{name}.{ext}")
    def file(name: str, ext: str) -> dict[str, str]:
        return {"name": name, "ext": ext}

    @app.get("/v{version:int}/status")
    def status(version: int) -> dict[str, int]:
        return {"version": version}

    client = make_client(app)
    assert client.get("/files/report.pdf").json() == {"name": "report", "ext": "pdf"}
    assert client.get("/v2/status").json() == {"version": 2}
    assert client.get("/vx/status").status_code == 404


def test_path_converter_in_the_middle(make_client: MakeClient) -> None:
    app = App()

    @app.get("/repo/{tree:path}/raw")
    def raw(tree: str) -> dict[str, str]:
        return {"tree": tree}

    client = make_client(app)
    assert client.get("/repo/a/b/c/raw").json() == {"tree": "a/b/c"}
    assert client.get("/repo/raw").status_code == 404


def test_custom_converter(make_client: MakeClient) -> None:
    app = App()
    app.add_converter("slug", r"[a-z0-9]+(?:-[a-z0-9]+)*", to_python=str.upper, to_url=str.lower)

    @app.get("/posts/{slug:slug}")
    def post(slug: str) -> dict[str, str]:
        return {"slug": slug}

    client = make_client(app)
    assert client.get("/posts/hello-world").json() == {"slug": "HELLO-WORLD"}
    assert client.get("/posts/Hello_World").status_code == 404
    assert app.url_for("post", slug="HELLO-WORLD") == "/posts/hello-world"


def test_static_beats_parameter_whatever_the_order(make_client: MakeClient) -> None:
    app = App()

    @app.get("/users/{name}")
    def by_name(name: str) -> str:
        return f"param:{name}"

    @app.get("/users/me")
    def me() -> str:
        return "static"

    client = make_client(app)
    assert client.get("/users/me").text == "static"
    assert client.get("/users/ann").text == "param:ann"


def test_first_registered_wins_for_the_same_path(make_client: MakeClient) -> None:
    app = App()

    @app.get("/x/{a}")
    def first(a: str) -> str:
        return "first"

    @app.get("/x/{b}")
    def second(b: str) -> str:
        return "second"

    assert make_client(app).get("/x/1").text == "first"


def test_method_falls_through_to_another_route_for_the_path(make_client: MakeClient) -> None:
    app = App()

    @app.get("/items/new")
    def form() -> str:
        return "form"

    @app.post("/items/{name}")
    def create(name: str) -> str:
        return f"created {name}"

    client = make_client(app)
    assert client.post("/items/new").text == "created new"
    assert client.get("/items/new").text == "form"


def test_percent_decoding_and_encoded_slash(make_client: MakeClient) -> None:
    app = App()

    @app.get("/files/{name}")
    def file(name: str, request: Request) -> dict[str, str]:
        return {"name": name, "path": request.path}

    @app.get("/café")
    def cafe() -> str:
        return "coffee"

    client = make_client(app)
    assert client.get("/files/a%20b").json() == {"name": "a b", "path": "/files/a b"}
    assert client.get("/files/a%2Fb").json() == {"name": "a/b", "path": "/files/a/b"}
    assert client.get("/caf%C3%A9").text == "coffee"


def test_404_405_and_allow(make_client: MakeClient) -> None:
    app = App()

    @app.route("/items", methods=["GET", "POST"])
    def items() -> str:
        return "ok"

    @app.delete("/items")
    def remove() -> None:
        return None

    client = make_client(app)
    r = client.get("/nothing")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}
    assert r.headers["content-type"] == "application/json"
    r = client.put("/items")
    assert r.status_code == 405
    assert r.json() == {"detail": "Method Not Allowed"}
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, POST"


def test_head_is_answered_for_get_routes(make_client: MakeClient) -> None:
    app = App()
    calls = []

    @app.get("/doc")
    def doc() -> str:
        calls.append(1)
        return "x" * 1000

    client = make_client(app)
    get = client.get("/doc")
    head = client.head("/doc")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == "1000"
    assert head.headers["content-type"] == get.headers["content-type"]
    assert len(calls) == 2


def test_explicit_head_handler_wins(make_client: MakeClient) -> None:
    app = App()

    @app.get("/r")
    def get() -> str:
        return "body"

    @app.head("/r")
    def head() -> tuple[str, int, dict[str, str]]:
        return "", 200, {"x-head": "yes"}

    assert make_client(app).head("/r").headers["x-head"] == "yes"


def test_options_is_answered_for_every_path_with_routes(make_client: MakeClient) -> None:
    app = App()

    @app.get("/a")
    def a() -> str:
        return "a"

    @app.options("/b")
    def b_options() -> tuple[str, int, dict[str, str]]:
        return "", 200, {"x-custom": "1"}

    @app.get("/b")
    def b() -> str:
        return "b"

    client = make_client(app)
    r = client.options("/a")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    assert r.content == b""
    assert client.options("/b").headers["x-custom"] == "1"
    assert client.options("/nowhere").status_code == 404


def test_redirect_slashes(make_client: MakeClient) -> None:
    app = App()

    @app.get("/users")
    def users() -> str:
        return "users"

    @app.get("/docs/")
    def docs() -> str:
        return "docs"

    client = make_client(app)
    r = client.get("/users/?page=2&q=a%20b")
    assert r.status_code == 308
    assert r.headers["location"] == "/users?page=2&q=a%20b"
    r = client.get("/docs")
    assert r.status_code == 308
    assert r.headers["location"] == "/docs/"
    assert client.get("/docs", follow_redirects=True).text == "docs"
    # a POST keeps its method and body through a 308
    assert client.post("/users/").status_code == 308


def test_root_route_makes_no_slash_redirects(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "/" is the one route path ending with "/" that no "/x" can be redirected
    # to: a 404 then searches the routes once, not a second time for "/x/"
    app = App()

    @app.get("/")
    def home() -> str:
        return "home"

    @app.get("/users")
    def users() -> str:
        return "users"

    searches: list[str] = []
    match = Matcher.match

    def counting(self: Matcher, method: str | None, path: str, segments: Any = None) -> Any:
        searches.append(path)
        return match(self, method, path, segments)

    monkeypatch.setattr(Matcher, "match", counting)
    client = make_client(app)
    assert client.get("/nope").status_code == 404
    assert searches == ["/nope"]
    assert client.get("/").text == "home"
    r = client.get("/users/")
    assert (r.status_code, r.headers["location"]) == (308, "/users")


def test_redirect_slashes_keeps_encoding_and_root_path(make_client: MakeClient) -> None:
    app = App()

    @app.get("/caf%C3%A9/{x}")
    def never(x: str) -> str:  # a literal "%C3%A9" in a template is plain text
        return x

    @app.get("/café")
    def cafe() -> str:
        return "ok"

    client = make_client(app, root_path="/prefix")
    r = client.get("/caf%C3%A9/")
    assert r.status_code == 308
    assert r.headers["location"] == "/prefix/caf%C3%A9"


def test_redirect_never_becomes_scheme_relative(make_client: MakeClient) -> None:
    app = App()

    @app.get("//evil.com")
    def odd() -> str:
        return "odd"

    r = make_client(app).get("http://testserver//evil.com/")
    assert r.status_code == 308
    assert not r.headers["location"].startswith("//")


def test_redirect_slashes_off(make_client: MakeClient) -> None:
    app = App(redirect_slashes=False)

    @app.get("/users")
    def users() -> str:
        return "users"

    assert make_client(app).get("/users/").status_code == 404


def test_url_for() -> None:
    app = App()

    @app.get("/users/{user_id:int}")
    def show_user(user_id: int) -> None: ...

    @app.get("/files/{name}", name="file")
    def get_file(name: str) -> None: ...

    @app.get("/raw/{p:path}")
    def raw(p: str) -> None: ...

    @app.get("/u/{u:uuid}/{x:float}")
    def ux(u: uuid.UUID, x: float) -> None: ...

    assert app.url_for("show_user", user_id=7) == "/users/7"
    assert app.url_for("file", name="a b/c?d") == "/files/a%20b%2Fc%3Fd"
    assert app.url_for("file", name="café") == "/files/caf%C3%A9"
    assert app.url_for("raw", p="a/b c/d") == "/raw/a/b%20c/d"
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert app.url_for("ux", u=u, x=1.5) == f"/u/{u}/1.5"
    with pytest.raises(LookupError, match="nope"):
        app.url_for("nope")
    with pytest.raises(LookupError, match="show_user"):
        app.url_for("show_user")
    with pytest.raises(LookupError, match="show_user"):
        app.url_for("show_user", user_id=1, extra=2)


FLOAT_VALUES = [
    2.5,
    3,
    0,
    0.0,
    -0.0,
    "2.5",
    "007.50",
    Decimal("2.5"),
    Decimal("2.50"),
    Decimal("1E+3"),
    1e20,
    1e-7,
    0.1 + 0.2,
    1e127,
    1e-100,
    2**60 + 1,
    Decimal("0.1000000000000000055511151231257827"),
]


@pytest.mark.parametrize("value", FLOAT_VALUES, ids=lambda v: repr(v)[:40])
def test_url_for_float_routes_back(make_client: MakeClient, value: object) -> None:
    # plain decimal notation, as the converter's regex accepts it: never a repr
    # ("'2.5'", "Decimal('2.5')") nor exponent form ("1e+20", "1e-07")
    app = App()

    @app.get("/price/{amount:float}", name="price")
    def price(amount: float) -> str:
        return repr(amount)

    @app.get("/m/{amount:float}.json", name="mixed")
    def mixed(amount: float) -> str:
        return repr(amount)

    client = make_client(app)
    expected = float(value)  # type: ignore[arg-type]
    for name in ("price", "mixed"):
        url = app.url_for(name, amount=value)
        written = url.split("/")[-1].removesuffix(".json")
        assert written.replace(".", "").isdigit(), url
        r = client.get(url)
        assert r.status_code == 200, url
        assert float(r.text) == expected, url  # the same float (-0.0 is 0.0)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        -1.5,
        -1,
        True,
        False,
        None,
        "abc",
        "",
        "1e5",
        "-2",
        " 2",
        "2.",
        "0x10",
        Decimal("NaN"),
        Decimal("-1"),
        Decimal("Infinity"),
        Decimal("1E+999999999"),  # refused before it is written out
        1e300,  # more digits than the converter matches
        5e-324,
        10**1000,
        [2.5],
    ],
    ids=lambda v: repr(v)[:24],
)
def test_url_for_float_refuses_what_cannot_route_back(value: object) -> None:
    app = App()

    @app.get("/price/{amount:float}", name="price")
    def price(amount: float) -> str:
        return repr(amount)

    with pytest.raises(ValueError, match="float path parameter"):
        app.url_for("price", amount=value)


def test_duplicate_names_raise_at_registration() -> None:
    app = App()

    @app.get("/a")
    def handler() -> None: ...

    with pytest.raises(ValueError, match="handler"):

        @app.get("/b", name="handler")
        def other() -> None: ...


def test_one_function_for_several_methods_of_one_path(make_client: MakeClient) -> None:
    app = App()

    @app.get("/items")
    @app.post("/items")
    def items(request: Request) -> str:
        return request.method

    client = make_client(app)
    assert client.get("/items").text == "GET"
    assert client.post("/items").text == "POST"
    assert app.url_for("items") == "/items"


def test_registration_errors() -> None:
    app = App()
    with pytest.raises(TypeError, match=r"'conn' of handler .*cannot read"):

        @app.get("/x")
        def needs(conn: socket.socket) -> None: ...

    with pytest.raises(ValueError, match="unknown converter"):
        app.get("/x/{a:nope}")(lambda a: None)
    with pytest.raises(ValueError, match="start with"):
        app.get("x")(lambda: None)
    with pytest.raises(ValueError, match="duplicate"):
        app.get("/x/{a}/{a}")(lambda a: None)
    with pytest.raises(TypeError, match="list"):
        app.route("/x", methods="GET")  # type: ignore[arg-type]


def test_handler_parameters_filled_by_name_and_annotation(make_client: MakeClient) -> None:
    app = App()

    @app.get("/a/{x}")
    def by_annotation(req: Request, x: str, flag: bool = True) -> dict[str, object]:
        return {"path": req.path, "x": x, "flag": flag}

    @app.get("/b/{x}/{y}")
    async def partial(request: Request, y: str) -> dict[str, str]:
        # x is not a parameter of its own, but the request is: request.path_params
        return {"y": y, "x": request.path_params["x"]}

    @app.get("/c/{x}")
    def kwargs(**params: str) -> dict[str, str]:
        return params

    client = make_client(app)
    assert client.get("/a/1").json() == {"path": "/a/1", "x": "1", "flag": True}
    assert client.get("/b/1/2").json() == {"y": "2", "x": "1"}
    assert client.get("/c/9").json() == {"x": "9"}


def test_router_with_prefix_and_hooks(make_client: MakeClient) -> None:
    app = App()
    api = Router()
    seen: list[str] = []

    @api.before_request
    def mark(request: Request) -> None:
        seen.append(request.path)

    @api.get("/items/{n:int}")
    def item(n: int) -> dict[str, int]:
        return {"n": n}

    @api.get("/")
    def api_index() -> str:
        return "api"

    @app.get("/")
    def index() -> str:
        return "root"

    app.include_router(api, prefix="/api")
    client = make_client(app)
    assert client.get("/api/items/3").json() == {"n": 3}
    assert client.get("/api/").text == "api"
    assert client.get("/").text == "root"
    assert seen == ["/api/items/3", "/api/"]  # the router's hook ran for its routes only
    assert app.url_for("item", n=3) == "/api/items/3"
    with pytest.raises(ValueError):
        app.include_router(Router(), prefix="/bad/")


def test_nested_routers(make_client: MakeClient) -> None:
    app = App()
    outer, inner = Router(), Router()
    order: list[str] = []

    @outer.before_request
    def outer_hook(request: Request) -> None:
        order.append("outer")

    @inner.before_request
    def inner_hook(request: Request) -> None:
        order.append("inner")

    @inner.get("/leaf")
    def leaf() -> str:
        return "leaf"

    outer.include_router(inner, prefix="/in")
    app.include_router(outer, prefix="/out")
    assert make_client(app).get("/out/in/leaf").text == "leaf"
    assert order == ["outer", "inner"]


def test_routing_cost_does_not_depend_on_route_count() -> None:
    # the matcher is a trie: the last of many routes is found by walking the
    # path's segments, so a lookup touches a handful of nodes, not the routes
    app = App()
    for k in range(2000):
        app.get(f"/r{k}/{{x}}/items/{{y}}", name=f"r{k}")(lambda x, y: None)
    route, params, _ = app._matcher.match("GET", "/r1999/a/items/b")
    assert route is not None and route.name == "r1999"
    assert params == {"x": "a", "y": "b"}
    assert len(app._matcher._root.dynamic) == 0  # nothing to scan at the root


def _as_async(fn: Any) -> Any:
    """An async def handler that does what `fn` does, with `fn`'s signature."""

    async def handler(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    functools.update_wrapper(handler, fn)
    del handler.__wrapped__  # type: ignore[attr-defined]  # (signature() would follow it)
    handler.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return handler


def _handlers_of_every_call_kind(app: App, asynchronous: bool) -> None:
    """One route per way a handler takes its arguments (see `Route.invoke`)."""

    def none() -> str:
        return "none"

    def request_only(request: Request) -> str:
        return f"request {request.path}"

    def params(a: str, n: int) -> str:
        return f"params {a} {n + 1}"

    def general(n: int, request: Request) -> str:
        return f"general {n} {request.method}"

    def typed(n: int, q: int = 0) -> dict[str, int]:
        return {"n": n, "q": q}

    for path, fn in [
        ("/none", none),
        ("/request", request_only),
        ("/params/{a}/{n:int}", params),
        ("/general/{n:int}", general),
        ("/typed/{n:int}", typed),
    ]:
        handler = _as_async(fn) if asynchronous else fn
        app.get(path)(handler)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_handler_called_directly_gets_what_the_pipeline_gives_it(
    make_client: MakeClient, asynchronous: bool
) -> None:
    # with no hook, the adapters call the handler themselves (Route.invoke);
    # with one, the pipeline does (Route.arguments): the same arguments
    direct, piped = App(), App()
    _handlers_of_every_call_kind(direct, asynchronous)
    _handlers_of_every_call_kind(piped, asynchronous)
    hooked: list[str] = []
    piped.before_request(lambda request: hooked.append(request.path))
    answers = {}
    for app in (direct, piped):
        client = make_client(app)
        answers[app] = [
            (r.status_code, r.text)
            for r in (
                client.get("/none"),
                client.get("/request"),
                client.get("/params/x/41"),
                client.get("/general/7"),
                client.get("/typed/3?q=4"),
                client.get("/typed/3?q=x"),
            )
        ]
    assert answers[direct] == answers[piped]
    assert answers[direct][:5] == [
        (200, "none"),
        (200, "request /request"),
        (200, "params x 42"),
        (200, "general 7 GET"),
        (200, '{"n":3,"q":4}'),
    ]
    assert answers[direct][5][0] == 422
    assert len(hooked) == 6  # (the second app did take the pipeline)


def test_requests_no_route_takes_get_what_the_pipeline_gives_them(
    make_client: MakeClient,
) -> None:
    # An app with nothing that could change a 404 sends its shared 404 without
    # making a Request; one with a hook takes the pipeline: the same answers
    def build(hooked: bool) -> App:
        app = App(max_body_size=10)

        @app.get("/")
        def home() -> str:
            return "home"

        @app.post("/items/{n:int}")
        def item(n: int) -> int:
            return n

        @app.get("/slash/")
        def slash() -> str:
            return "slash"

        if hooked:
            app.before_request(lambda request: None)
        return app

    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/nope", {}, None),
        ("HEAD", "/nope", {}, None),
        ("POST", "/nope", {}, b"12345"),
        ("POST", "/nope", {}, b"x" * 11),
        ("GET", "/items/1", {}, None),
        ("OPTIONS", "/items/1", {}, None),
        ("GET", "/items/x", {}, None),
        ("GET", "/slash", {}, None),
        ("GET", "/nope/", {}, None),
        ("GET", "/a%00b", {}, None),
        ("DELETE", "/", {}, None),
    ]
    answers = []
    for hooked in (False, True):
        client = make_client(build(hooked))
        answers.append(
            [
                (r.status_code, sorted(r.headers.items()), r.content)
                for method, path, headers, body in requests
                for r in [client.request(method, path, headers=headers, content=body)]
            ]
        )
    assert answers[0] == answers[1]
    statuses = [a[0] for a in answers[0]]
    assert statuses == [404, 404, 404, 413, 405, 204, 404, 308, 404, 404, 405]
    assert answers[0][1][2] == b""  # HEAD: no body
    assert answers[0][0][2] == b'{"detail":"Not Found"}'


@pytest.mark.parametrize("head_first", [False, True])
def test_a_head_route_answers_head_whatever_the_order(
    make_client: MakeClient, head_first: bool
) -> None:
    # HEAD goes to GET's route unless a route takes HEAD itself, on static
    # and parametrized paths alike
    app = App()
    for path in ("/static", "/p/{x}"):

        def get(request: Request) -> Response:
            return Response(b"get", headers={"x-by": "get"})

        def head(request: Request) -> Response:
            return Response(b"", headers={"x-by": "head"})

        pairs = [("HEAD", head), ("GET", get)]
        for method, fn in pairs if head_first else pairs[::-1]:
            app.route(path, methods=[method], name=f"{method}{path}")(fn)

    @app.get("/only-get")
    def only_get() -> Response:
        return Response(b"g", headers={"x-by": "get"})

    client = make_client(app)
    for path in ("/static", "/p/1"):
        assert client.head(path).headers["x-by"] == "head"
        assert client.get(path).headers["x-by"] == "get"
    r = client.head("/only-get")
    assert (r.status_code, r.headers["x-by"], r.content) == (200, "get", b"")


def _requestless_app(path: Any, asynchronous: bool, hooked: bool, ran: list[str]) -> App:
    """Handlers that take nothing from the request (at most path parameters)."""
    app = App()

    @app.exception_handler(418)
    def teapot(request: Request, exc: HTTPException) -> Response:
        return Response(f"teapot at {request.path}".encode(), 418, {"x-handled": "1"})

    def text(n: int) -> str:
        return f"n={n}"

    def fails(kind: str) -> Any:
        if kind == "teapot":
            raise HTTPException(418, headers={"x-raised": "1"})
        if kind == "http":
            raise HTTPException(409, "conflict")
        if kind == "cancelled":
            raise asyncio.CancelledError  # an error of the handler, not a cancellation
        raise ValueError(kind)

    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b"]), media_type="text/plain")

    def file() -> FileResponse:
        return FileResponse(path)

    def later() -> PlainTextResponse:
        return PlainTextResponse("soon", background=BackgroundTask(ran.append, "bg"))

    def nothing() -> None:
        return None

    for route, fn in [
        ("/text/{n:int}", text),
        ("/fails/{kind}", fails),
        ("/stream", stream),
        ("/file", file),
        ("/later", later),
        ("/nothing", nothing),
    ]:
        handler = _as_async(fn) if asynchronous else fn
        app.route(route, methods=["GET", "POST"], name=fn.__name__)(handler)
    if hooked:
        app.before_request(lambda request: None)
    return app


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_handler_that_takes_no_request_answers_as_the_pipeline_does(
    make_client: MakeClient, tmp_path: Any, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # With no hook, a handler that takes nothing from the request is called
    # without a Request made for it (one is made when it fails or its response
    # needs one); with a hook, the pipeline runs it: the same answers.
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/text/41", {}, None),
        ("HEAD", "/text/41", {}, None),
        ("POST", "/text/41", {}, b"a body"),
        ("GET", "/fails/teapot", {}, None),
        ("GET", "/fails/http", {}, None),
        ("GET", "/fails/value", {}, None),
        # (async code only: a CancelledError is an asyncio thing)
        ("GET", "/fails/cancelled" if asynchronous else "/fails/value", {}, None),
        ("GET", "/stream", {}, None),
        ("HEAD", "/stream", {}, None),
        ("GET", "/file", {"range": "bytes=2-4"}, None),
        ("GET", "/file", {"if-none-match": "*"}, None),
        ("GET", "/later", {}, None),
        ("GET", "/nothing", {}, None),
    ]
    answers, ran = [], []
    path = tmp_path / "file.txt"
    path.write_bytes(b"0123456789")
    for hooked in (False, True):
        client = make_client(_requestless_app(path, asynchronous, hooked, ran))
        answers.append(
            [
                (r.status_code, sorted(r.headers.items()), r.content)
                for method, path, headers, body in requests
                for r in [client.request(method, path, headers=headers, content=body)]
            ]
        )
    assert answers[0] == answers[1]
    statuses = [a[0] for a in answers[0]]
    assert statuses == [200, 200, 200, 418, 409, 500, 500, 200, 200, 206, 304, 200, 204]
    assert answers[0][3][2] == b"teapot at /fails/teapot"
    assert ("x-raised", "1") in answers[0][3][1]
    assert answers[0][9][2] == b"234"
    assert ran == ["bg", "bg"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 4  # value and cancelled, with and without the hook
