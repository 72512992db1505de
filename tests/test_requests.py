"""The request: cheap attributes, and body access from sync and async code."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest

from microweb import App, FormData, Request

from .conftest import MakeClient
from .test_security import RawRequest, asgi_scope, run_wsgi, wsgi_environ


def test_cheap_attributes(make_client: MakeClient, protocol: str) -> None:
    app = App()

    @app.get("/items/{item_id:int}")
    def show(request: Request, item_id: int) -> dict[str, Any]:
        return {
            "method": request.method,
            "path": request.path,
            "root_path": request.root_path,
            "url": request.url,
            "scheme": request.scheme,
            "host": request.host,
            "client": list(request.client) if request.client else None,
            "path_params": request.path_params,
            "protocol": request.protocol,
            "is_request": isinstance(request, Request),
            "app": request.app is app,
            "environ": request.environ is not None,
            "scope": request.scope is not None,
        }

    r = make_client(app).get("/items/5?a=1&b=x%20y")
    assert r.json() == {
        "method": "GET",
        "path": "/items/5",
        "root_path": "",
        "url": "http://testserver/items/5?a=1&b=x%20y",
        "scheme": "http",
        "host": "testserver",
        "client": ["127.0.0.1", 50000],
        "path_params": {"item_id": 5},
        "protocol": protocol,
        "is_request": True,
        "app": True,
        "environ": protocol == "wsgi",
        "scope": protocol == "asgi",
    }


def test_url_under_a_root_path(make_client: MakeClient) -> None:
    app = App()

    @app.get("/x")
    def x(request: Request) -> dict[str, str]:
        return {"url": request.url, "root_path": request.root_path, "path": request.path}

    r = make_client(app, root_path="/app").get("/x?q=1")
    assert r.json() == {"url": "http://testserver/app/x?q=1", "root_path": "/app", "path": "/x"}


# --------------------------------------------------------------------------
# A mount prefix that needs percent-encoding ("/my app", "/café")
# --------------------------------------------------------------------------


def _mounted_app(tmp_path: Path) -> App:
    app = App()

    @app.get("/items/")
    def items() -> str:
        return "items"

    @app.get("/n/{name}", name="n")
    def n(request: Request, name: str) -> dict[str, str]:
        return {
            "name": name,
            "path": request.path,
            "root_path": request.root_path,
            "url": request.url,
            "url_for": request.url_for("n", name="x y"),
        }

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("docs")
    app.static("/static", tmp_path, html=True)
    return app


Call = Callable[[App, str, str, str], tuple[int, dict[str, str], bytes]]


def _wsgi_call(app: App, root: str, target: str, style: str) -> tuple[int, dict[str, str], bytes]:
    """`target` (below the prefix, with its query) as a WSGI server mounted at `root` passes it."""
    environ = wsgi_environ(RawRequest(target.encode()), raw_uri=False)
    environ["SCRIPT_NAME"] = root.encode("utf-8").decode("latin-1")  # PEP 3333: bytes as text
    if style == "waitress":  # --url-prefix: the whole target in REQUEST_URI
        environ["REQUEST_URI"] = quote(root) + target
    elif style == "gunicorn":
        environ["RAW_URI"] = quote(root) + target
    raw = run_wsgi(app, environ)
    return raw.status, dict(raw.headers), raw.body


def _asgi_call(app: App, root: str, target: str, style: str) -> tuple[int, dict[str, str], bytes]:
    """`target` (below the prefix, with its query) as an ASGI server mounted at `root` passes it."""
    below = target.partition("?")[0]
    scope = asgi_scope(RawRequest(target.encode()))
    scope["root_path"] = root
    scope["path"] = root + unquote_to_bytes(below).decode("utf-8")
    if style == "hypercorn":  # the prefix encoded, as the client sent it
        scope["raw_path"] = quote(root).encode("ascii") + below.encode("ascii")
    elif style == "uvicorn":  # --root-path: the prefix as typed, then the raw target
        scope["raw_path"] = root.encode("utf-8") + below.encode("ascii")
    else:  # no raw_path at all
        del scope["raw_path"]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app.asgi(scope, receive, send))
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


MOUNT_STYLES = [
    ("wsgi", "waitress"),
    ("wsgi", "gunicorn"),
    ("wsgi", "wsgiref"),
    ("asgi", "hypercorn"),
    ("asgi", "uvicorn"),
    ("asgi", "no raw_path"),
]


@pytest.mark.parametrize("hooks", [False, True], ids=["direct", "pipeline"])
@pytest.mark.parametrize("root", ["/my app", "/café", "/a b/100%"])
@pytest.mark.parametrize(("protocol", "style"), MOUNT_STYLES)
def test_a_mount_prefix_that_needs_encoding(
    tmp_path: Path, protocol: str, style: str, root: str, hooks: bool
) -> None:
    call: Call = _wsgi_call if protocol == "wsgi" else _asgi_call
    app = _mounted_app(tmp_path)
    if hooks:
        app.before_request(lambda request: None)
    prefix = quote(root)  # what every URL microweb builds must start with
    status, _, body = call(app, root, "/n/q?a=1", style)
    assert status == 200, body
    assert json.loads(body) == {
        "name": "q",
        "path": "/n/q",
        "root_path": root,  # the attribute stays decoded text
        "url": f"http://testserver{prefix}/n/q?a=1",
        "url_for": f"{prefix}/n/x%20y",
    }
    if style not in ("wsgiref", "no raw_path"):  # (no raw target: "%2F" is "/")
        # an encoded "/" stays inside its segment below the prefix too
        status, _, body = call(app, root, "/n/a%2Fb", style)
        assert (status, json.loads(body)["name"]) == (200, "a/b")
    # redirects built from the prefix: the trailing slash, a static directory
    for target, location in (
        ("/items", f"{prefix}/items/"),
        ("/items?a=1", f"{prefix}/items/?a=1"),
        ("/static", f"{prefix}/static/"),
        ("/static/docs", f"{prefix}/static/docs/"),
    ):
        status, headers, _ = call(app, root, target, style)
        assert (status, headers.get("location")) == (308, location), target


def test_the_test_client_mounts_at_a_prefix_that_needs_encoding(make_client: MakeClient) -> None:
    app = App()

    @app.get("/n/{name}", name="n")
    def n(request: Request, name: str) -> dict[str, str]:
        return {
            "url": request.url,
            "root_path": request.root_path,
            "url_for": request.url_for("n", name=name),
        }

    r = make_client(app, root_path="/my café").get("/n/q")
    assert r.json() == {
        "url": "http://testserver/my%20caf%C3%A9/n/q",
        "root_path": "/my café",
        "url_for": "/my%20caf%C3%A9/n/q",
    }


def test_query_params(make_client: MakeClient) -> None:
    app = App()

    @app.get("/q")
    def q(request: Request) -> dict[str, Any]:
        qp = request.query_params
        return {
            "a": qp.get("a"),
            "all_a": qp.getall("a"),
            "missing": qp.get("missing", "dflt"),
            "blank": qp.get("blank"),
            "space": qp.get("s"),
            "semi": qp.get("x"),
            "keys": list(qp),
            "len": len(qp),
            "in": "a" in qp,
            "items": qp.items(),
            "bad": qp.get("bad"),
        }

    r = make_client(app).get("/q?a=1&a=2&blank=&s=a+b%20c&x=1;y=2&bad=%zz%4")
    assert r.json() == {
        "a": "1",
        "all_a": ["1", "2"],
        "missing": "dflt",
        "blank": "",
        "space": "a b c",
        "semi": "1;y=2",
        "keys": ["a", "blank", "s", "x", "bad"],
        "len": 5,
        "in": True,
        "items": [["a", "1"], ["blank", ""], ["s", "a b c"], ["x", "1;y=2"], ["bad", "%zz%4"]],
        "bad": "%zz%4",
    }


def test_headers(make_client: MakeClient, protocol: str) -> None:
    app = App()

    @app.get("/h")
    def h(request: Request) -> dict[str, Any]:
        return {
            "ua": request.headers.get("User-Agent"),
            "x": request.headers.getall("x-multi"),
            "in": "X-MULTI" in request.headers,
            "missing": request.headers.get("nope"),
            "ctype": request.content_type,
            "length": request.content_length,
        }

    client = make_client(app)
    r = client.get("/h", headers=[("User-Agent", "t/1"), ("X-Multi", "a"), ("X-Multi", "b")])
    body = r.json()
    assert body["ua"] == "t/1"
    assert body["in"] is True
    assert body["missing"] is None
    assert body["ctype"] is None
    assert body["length"] is None
    # WSGI folds repeated fields into one; ASGI keeps them apart (API.md §4)
    assert body["x"] == (["a, b"] if protocol == "wsgi" else ["a", "b"])


def test_cookies(make_client: MakeClient) -> None:
    app = App()

    @app.get("/c")
    def c(request: Request) -> dict[str, str]:
        return request.cookies

    client = make_client(app)
    r = client.get("/c", headers={"Cookie": 'a=1; b="quoted value"; a=2; =nameless; junk; c='})
    assert r.json() == {"a": "1", "b": "quoted value", "c": ""}
    assert client.get("/c", headers={"Cookie": ";;;=;"}).json() == {}


def test_state_is_per_request(make_client: MakeClient) -> None:
    app = App()
    app.state.greeting = "hi"

    @app.before_request
    def mark(request: Request) -> None:
        assert "user" not in request.state
        request.state.user = "ann"

    @app.get("/s")
    def s(request: Request) -> dict[str, str]:
        return {"user": request.state.user, "greeting": request.app.state.greeting}

    client = make_client(app)
    assert client.get("/s").json() == {"user": "ann", "greeting": "hi"}
    assert client.get("/s").json() == {"user": "ann", "greeting": "hi"}


# ------------------------------------------------------------------- bodies


def _body_app() -> App:
    app = App()

    @app.post("/sync/body")
    def sync_body(request: Request) -> dict[str, Any]:
        data = request.body()
        again = request.body()
        return {"len": len(data), "same": data is again, "text": request.text()}

    @app.post("/async/body")
    async def async_body(request: Request) -> dict[str, Any]:
        data = await request.body()
        again = await request.body()
        return {"len": len(data), "same": data is again, "text": await request.text()}

    @app.post("/sync/json")
    def sync_json(request: Request) -> Any:
        return request.json()

    @app.post("/async/json")
    async def async_json(request: Request) -> Any:
        return await request.json()

    @app.post("/sync/form")
    def sync_form(request: Request) -> dict[str, Any]:
        form = request.form()
        assert isinstance(form, FormData)
        return {"a": form.getall("a"), "b": form.get("b"), "keys": list(form)}

    @app.post("/async/form")
    async def async_form(request: Request) -> dict[str, Any]:
        form = await request.form()
        return {"a": form.getall("a"), "b": form.get("b"), "keys": list(form)}

    @app.post("/sync/stream")
    def sync_stream(request: Request) -> dict[str, Any]:
        digest, n, chunks = hashlib.sha256(), 0, 0
        for chunk in request.stream():
            digest.update(chunk)
            n += len(chunk)
            chunks += 1
        return {"len": n, "sha": digest.hexdigest(), "chunks": chunks}

    @app.post("/async/stream")
    async def async_stream(request: Request) -> dict[str, Any]:
        digest, n, chunks = hashlib.sha256(), 0, 0
        async for chunk in request.stream():
            digest.update(chunk)
            n += len(chunk)
            chunks += 1
        return {"len": n, "sha": digest.hexdigest(), "chunks": chunks}

    return app


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_body_and_text(make_client: MakeClient, kind: str) -> None:
    client = make_client(_body_app())
    r = client.post(f"/{kind}/body", content="héllo".encode())
    assert r.json() == {"len": 6, "same": True, "text": "héllo"}
    latin = "héllo".encode("latin-1")
    r = client.post(
        f"/{kind}/body", content=latin, headers={"content-type": "text/plain; charset=latin-1"}
    )
    assert r.json()["text"] == "héllo"
    r = client.post(f"/{kind}/body", content=latin, headers={"content-type": "text/plain"})
    assert r.status_code == 400
    r = client.post(
        f"/{kind}/body", content=b"x", headers={"content-type": "text/plain; charset=nope"}
    )
    assert r.status_code == 400


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_json(make_client: MakeClient, kind: str) -> None:
    client = make_client(_body_app())
    assert client.post(f"/{kind}/json", json={"a": [1, 2]}).json() == {"a": [1, 2]}
    # parsed whatever the Content-Type
    r = client.post(f"/{kind}/json", content=b'{"x": 1}', headers={"content-type": "text/plain"})
    assert r.json() == {"x": 1}
    r = client.post(f"/{kind}/json", content=b"{not json")
    assert r.status_code == 400
    assert r.json() == {"detail": "Invalid JSON body"}
    assert client.post(f"/{kind}/json", content=b"").status_code == 400


_JSON_BODIES = [
    b'{"a": [1, 2.5, -0, -0.0, 1e-400, 1E5, 12345678901234567890123, true, null]}',
    b'\t[ "\\u00e9\\ud83d\\ude00", "caf\xc3\xa9", "\\u0000" ]\r\n',
    b'"\\ud800"',  # a lone surrogate: the json module accepts it, msgspec does not
    b'{"a": 1, "a": 2}',
    b"[" + b"0.1," * 200 + b"1.7976931348623157e308]",
    b"[" * 200 + b"]" * 200,
]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_json_values_are_what_the_json_module_gives(make_client: MakeClient, kind: str) -> None:
    # msgspec parses most bodies, the json module the rest: either way, the value
    # a handler gets is json.loads' own
    app = App()

    @app.post("/sync")
    def sync_(request: Request) -> str:
        return repr(request.json())

    @app.post("/async")
    async def async_(request: Request) -> str:
        return repr(await request.json())

    client = make_client(app)
    for body in _JSON_BODIES:
        r = client.post(f"/{kind}", content=body)
        assert r.status_code == 200, body
        assert r.text == repr(json.loads(body)), body
    for bad in (b"[1e999]", b"NaN", b"[1,]", b"\xef\xbb\xbf{}", b'"\xed\xa0\x80"', b"1" * 5000):
        assert client.post(f"/{kind}", content=bad).status_code == 400, bad


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_urlencoded_form(make_client: MakeClient, kind: str) -> None:
    client = make_client(_body_app())
    r = client.post(f"/{kind}/form", data={"a": ["1", "2"], "b": "x y&z"})
    assert r.json() == {"a": ["1", "2"], "b": "x y&z", "keys": ["a", "b"]}
    # another content type is an empty form
    r = client.post(f"/{kind}/form", content=b"a=1", headers={"content-type": "text/plain"})
    assert r.json() == {"a": [], "b": None, "keys": []}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stream_large_body(make_client: MakeClient, kind: str) -> None:
    payload = bytes(range(256)) * 4096 * 3  # 3 MiB
    client = make_client(_body_app())
    r = client.post(f"/{kind}/stream", content=payload)
    assert r.json()["len"] == len(payload)
    assert r.json()["sha"] == hashlib.sha256(payload).hexdigest()
    assert r.json()["chunks"] > 1  # unbuffered: several reads


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_body_without_content_length(make_client: MakeClient, kind: str) -> None:
    payload = b"0123456789" * 50_000

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    client = make_client(_body_app())
    r = client.post(f"/{kind}/stream", content=chunks())
    assert r.status_code == 200
    assert r.json()["len"] == len(payload)
    assert r.json()["sha"] == hashlib.sha256(payload).hexdigest()


def test_hook_and_handler_both_read_the_body(make_client: MakeClient) -> None:
    app = App()

    @app.before_request
    def peek(request: Request) -> None:
        request.state.size = len(request.body())

    @app.post("/a")
    async def a(request: Request) -> dict[str, Any]:
        return {"hook": request.state.size, "handler": await request.json()}

    r = make_client(app).post("/a", json={"k": "v"})
    assert r.json() == {"hook": 9, "handler": {"k": "v"}}  # httpx sends compact JSON


def test_body_after_stream_is_an_error(make_client: MakeClient) -> None:
    app = App()

    @app.post("/x")
    def x(request: Request) -> str:
        for _ in request.stream():
            pass
        request.body()
        return "unreachable"

    r = make_client(app).post("/x", content=b"abc")
    assert r.status_code == 500


def test_body_limit(make_client: MakeClient) -> None:
    app = App(max_body_size=1000)
    ran = []

    @app.post("/up")
    def up(request: Request) -> int:
        ran.append(1)
        return len(request.body())  # type: ignore[return-value]

    @app.post("/stream")
    def stream(request: Request) -> str:
        ran.append(1)
        return str(sum(len(c) for c in request.stream()))

    client = make_client(app)
    assert client.post("/up", content=b"x" * 1001).status_code == 413
    assert ran == []  # refused before the handler ran
    assert client.post("/stream", content=b"x" * 1000).text == "1000"

    def gen() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 100

    r = client.post("/stream", content=gen())
    assert r.status_code == 413
    assert r.json() == {"detail": "Content Too Large"}


def test_an_empty_header_is_still_there(make_client: MakeClient) -> None:
    app = App()

    @app.get("/h")
    def h(request: Request) -> dict[str, Any]:
        return {
            "value": request.headers.get("x-empty"),
            "in": "x-empty" in request.headers,
            "all": request.headers.getall("X-Empty"),
            "listed": ("x-empty", "") in request.headers.items(),
        }

    r = make_client(app).get("/h", headers={"X-Empty": ""})
    assert r.json() == {"value": "", "in": True, "all": [""], "listed": True}


def test_header_names_with_underscores_find_nothing(make_client: MakeClient) -> None:
    # WSGI servers fold "X-Api-Key" and "X_Api_Key" into one environ key; under
    # ASGI "x_api_key" never finds an "X-Api-Key" field: both answer None
    app = App()

    @app.get("/h")
    def h(request: Request) -> dict[str, Any]:
        return {
            "dash": request.headers.get("x-api-key"),
            "underscore": request.headers.get("x_api_key"),
        }

    r = make_client(app).get("/h", headers={"X-Api-Key": "k"})
    assert r.json() == {"dash": "k", "underscore": None}
