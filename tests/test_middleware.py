"""The bundled middleware (CORS, GZip, TrustedHost, Sessions) under both protocols."""

from __future__ import annotations

import gzip
import io
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from microweb import App, EventSourceResponse, Request, StreamingResponse
from microweb.middleware import CORS, GZip, Sessions, TrustedHost
from microweb.testing import TestClient

from .conftest import MakeClient

# ------------------------------------------------------------------- CORS


def _cors_app(**options: Any) -> App:
    app = App()
    app.add_middleware(CORS(**options))

    @app.get("/data")
    def data() -> dict[str, int]:
        return {"n": 1}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("x")

    return app


PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}


def test_cors_preflight_allowed(make_client: MakeClient) -> None:
    app = _cors_app(
        allow_origins=["https://app.example"],
        allow_methods=["GET", "POST"],
        allow_headers=["X-Token"],
        max_age=300,
    )
    r = make_client(app).options(
        "/data", headers={**PREFLIGHT, "Access-Control-Request-Headers": "x-token, content-type"}
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "GET, POST"
    assert "x-token" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-max-age"] == "300"
    assert "Origin" in r.headers["vary"]
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        {"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"},
        {**PREFLIGHT, "Access-Control-Request-Headers": "x-secret"},
    ],
)
def test_cors_preflight_refused(make_client: MakeClient, headers: dict[str, str]) -> None:
    r = make_client(_cors_app(allow_origins=["https://app.example"])).options(
        "/data", headers=headers
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    assert r.json()["detail"].startswith("Disallowed CORS")


def test_cors_simple_requests(make_client: MakeClient) -> None:
    app = _cors_app(allow_origins=["https://app.example"], expose_headers=["X-Count"])
    client = make_client(app)
    r = client.get("/data", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-expose-headers"] == "X-Count"
    assert "Origin" in r.headers["vary"]
    r = client.get("/data", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200
    assert not [k for k in r.headers if k.startswith("access-control-")]
    assert "access-control-allow-origin" not in client.get("/data").headers  # no Origin
    # error responses carry the headers too, so the browser can read them
    r = client.get("/boom", headers={"Origin": "https://app.example"})
    assert (r.status_code, r.headers["access-control-allow-origin"]) == (500, "https://app.example")
    r = client.get("/missing", headers={"Origin": "https://app.example"})
    assert (r.status_code, r.headers["access-control-allow-origin"]) == (404, "https://app.example")


def test_cors_any_origin_and_credentials(make_client: MakeClient) -> None:
    client = make_client(_cors_app(allow_origins=["*"], allow_headers=["*"]))
    r = client.get("/data", headers={"Origin": "https://a.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    r = client.options("/data", headers={**PREFLIGHT, "Access-Control-Request-Headers": "x-any"})
    assert r.headers["access-control-allow-headers"] == "x-any"
    client = make_client(_cors_app(allow_origins=["*"], allow_credentials=True))
    r = client.get("/data", headers={"Origin": "https://a.example"})
    # "*" cannot be used with credentials: the origin is echoed
    assert r.headers["access-control-allow-origin"] == "https://a.example"
    assert r.headers["access-control-allow-credentials"] == "true"


def test_middleware_hooks_run_where_the_request_is() -> None:
    # microweb's own hooks never block: under ASGI they run on the loop, so an
    # async handler behind CORS costs no hop to a worker thread
    app = _cors_app(allow_origins=["*"])

    @app.get("/async")
    async def handler() -> str:
        return "ok"

    with TestClient(app, protocol="asgi") as client:
        assert client.get("/async", headers={"Origin": "https://x"}).text == "ok"
    assert app.asgi.pool._threads == 0


# ------------------------------------------------------------------- GZip


def _gzip_app() -> App:
    app = App()
    app.add_middleware(GZip(minimum_size=100))

    @app.get("/big")
    def big() -> str:
        return "a" * 1000

    @app.get("/small")
    def small() -> str:
        return "a" * 50

    @app.get("/encoded")
    def encoded() -> Any:
        return gzip.compress(b"x" * 1000), 200, {"Content-Encoding": "gzip"}

    @app.get("/events")
    def events() -> EventSourceResponse:
        return EventSourceResponse(iter(["x" * 1000]))

    return app


def test_gzip_thresholds_and_vary(make_client: MakeClient) -> None:
    client = make_client(_gzip_app())
    r = client.get("/big", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.text == "a" * 1000  # httpx decodes it
    assert int(r.headers["content-length"]) < 100
    r = client.get("/small", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers
    r = client.get("/big", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers
    assert r.headers["vary"] == "Accept-Encoding"
    r = client.get("/big", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in r.headers
    head = client.head("/big", headers={"Accept-Encoding": "gzip"})
    get = client.get("/big", headers={"Accept-Encoding": "gzip"})
    assert head.headers["content-length"] == get.headers["content-length"]


def test_gzip_leaves_encoded_and_event_streams_alone(make_client: MakeClient) -> None:
    client = make_client(_gzip_app())
    r = client.get("/encoded", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get_list("content-encoding") == ["gzip"]
    assert r.content == b"x" * 1000
    r = client.get("/events", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers
    assert r.text == "data: " + "x" * 1000 + "\n\n"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_gzip_compresses_streams_incrementally(make_client: MakeClient, kind: str) -> None:
    app = App()
    app.add_middleware(GZip())
    go_on = threading.Event()

    def sync_chunks() -> Iterator[str]:
        yield "first " * 50
        go_on.wait(10)
        yield "second " * 50

    async def async_chunks() -> AsyncIterator[str]:
        import asyncio

        yield "first " * 50
        await asyncio.to_thread(go_on.wait, 10)
        yield "second " * 50

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(sync_chunks() if kind == "sync" else async_chunks())

    client = make_client(app)
    with client.stream("GET", "/stream", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["content-encoding"] == "gzip"
        raw = r.iter_raw()
        inflate = zlib.decompressobj(31)
        text = b""
        while not text:  # the first chunk arrives (compressed) before the second exists
            text += inflate.decompress(next(raw))
        assert text == b"first " * 50
        go_on.set()
        rest = b"".join(inflate.decompress(chunk) for chunk in raw) + inflate.flush()
    assert rest == b"second " * 50


# ------------------------------------------------------------ TrustedHost


def _host_app() -> App:
    app = App()
    app.add_middleware(TrustedHost(["example.com", "*.example.org"]))

    @app.get("/")
    def index(request: Request) -> str:
        return request.host

    return app


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("example.com", 200),
        ("example.com:8080", 200),
        ("EXAMPLE.com", 200),
        ("api.example.org", 200),
        ("example.org", 400),
        ("evil.com", 400),
        ("example.com.evil.com", 400),
        ("evil.com/../example.com", 400),
        ("example.com@evil.com", 400),
        ("a b", 400),
        ("", 400),
    ],
)
def test_trusted_host(make_client: MakeClient, host: str, status: int) -> None:
    r = make_client(_host_app()).get("/", headers={"Host": host})
    assert r.status_code == status
    if status == 400:
        assert r.json() == {"detail": "Invalid host header"}


def test_trusted_host_without_a_host_header() -> None:
    app = _host_app()
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    b"".join(app.wsgi(environ, lambda s, h, e=None: statuses.append(s)))
    assert statuses == ["400 Bad Request"]


def test_trusted_host_takes_a_list() -> None:
    with pytest.raises(TypeError):
        TrustedHost("example.com")  # type: ignore[arg-type]


# --------------------------------------------------------------- Sessions


def _session_app(**options: Any) -> App:
    app = App()
    app.add_middleware(Sessions(**{"secret_key": "k1", **options}))

    @app.post("/login/{user}")
    def login(request: Request, user: str) -> str:
        request.session["user"] = user
        return "in"

    @app.get("/me")
    def me(request: Request) -> dict[str, Any]:
        return {"user": request.session.get("user")}

    @app.post("/logout")
    def logout(request: Request) -> str:
        request.session.clear()
        return "out"

    @app.get("/public")
    def public() -> str:
        return "no session here"

    return app


def _cookie(response: Any) -> str:
    return str(response.headers["set-cookie"].split(";")[0].split("=", 1)[1])


def test_session_round_trip(make_client: MakeClient) -> None:
    client = make_client(_session_app())
    r = client.post("/login/ann")
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith("session=")
    assert (
        "HttpOnly" in set_cookie
        and "SameSite=Lax" in set_cookie
        and "Max-Age=1209600" in set_cookie
    )
    assert "Secure" not in set_cookie
    r = client.get("/me", headers={"Cookie": f"session={_cookie(r)}"})
    assert r.json() == {"user": "ann"}
    assert r.headers["vary"] == "Cookie"
    assert "set-cookie" not in r.headers  # read, not changed: nothing to write
    public = client.get("/public", headers={"Cookie": "session=x"})
    assert "vary" not in public.headers  # the session was not read


def test_session_logout_deletes_the_cookie(make_client: MakeClient) -> None:
    client = make_client(_session_app())
    cookie = _cookie(client.post("/login/ann"))
    r = client.post("/logout", headers={"Cookie": f"session={cookie}"})
    assert r.headers["set-cookie"].startswith("session=; Max-Age=0")


@pytest.mark.parametrize(
    "value",
    ["garbage", "a.b", ".", "", "x" * 20_000, "eyJkIjp7fX0.AAAA", "%%%.!!!", "é.é"],
)
def test_garbled_cookies_are_an_empty_session(make_client: MakeClient, value: str) -> None:
    r = make_client(_session_app()).get("/me", headers={"Cookie": f"session={value}".encode()})
    assert r.status_code == 200
    assert r.json() == {"user": None}


def test_tampered_wrong_key_and_expired(make_client: MakeClient) -> None:
    client = make_client(_session_app())
    cookie = _cookie(client.post("/login/ann"))
    _, signature = cookie.rsplit(".", 1)
    forged = Sessions("k1").encode({"user": "admin"}).rsplit(".", 1)[0] + "." + signature
    assert client.get("/me", headers={"Cookie": f"session={forged}"}).json() == {"user": None}
    other_key = Sessions("another key").encode({"user": "ann"})
    assert client.get("/me", headers={"Cookie": f"session={other_key}"}).json() == {"user": None}
    expired = Sessions("k1", max_age=60).encode({"user": "ann"}, now=0)
    assert client.get("/me", headers={"Cookie": f"session={expired}"}).json() == {"user": None}
    assert client.get("/me", headers={"Cookie": f"session={cookie}"}).json() == {"user": "ann"}


def test_key_rotation(make_client: MakeClient) -> None:
    old_cookie = Sessions("old").encode({"user": "ann"})
    client = make_client(_session_app(secret_key=["new", "old"]))
    assert client.get("/me", headers={"Cookie": f"session={old_cookie}"}).json() == {"user": "ann"}
    r = client.post("/login/bob", headers={"Cookie": f"session={old_cookie}"})
    new_cookie = _cookie(r)
    assert Sessions("new").decode(new_cookie) == {"user": "bob"}  # the first key signs
    assert Sessions("old").decode(new_cookie) is None


def test_session_cookie_options(make_client: MakeClient) -> None:
    app = _session_app(cookie_name="sid", same_site="strict", https_only=True, max_age=None)
    r = make_client(app).post("/login/ann")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("sid=")
    assert "Secure" in cookie and "SameSite=Strict" in cookie and "Max-Age" not in cookie


def test_request_session_without_the_middleware(make_client: MakeClient) -> None:
    app = App()

    @app.get("/")
    def index(request: Request) -> str:
        try:
            request.session  # noqa: B018
        except AttributeError as exc:
            return str(exc)
        return "unexpected"

    assert "Sessions" in make_client(app).get("/").text


def test_sessions_needs_a_key() -> None:
    for bad in ("", [], [""]):
        with pytest.raises(ValueError):
            Sessions(bad)  # type: ignore[arg-type]


def test_changes_inside_session_values_are_saved(make_client: MakeClient) -> None:
    app = App()
    app.add_middleware(Sessions(secret_key="k"))

    @app.post("/cart/{item}")
    def add(request: Request, item: str) -> dict[str, Any]:
        request.session.setdefault("cart", [])
        request.session["cart"].append(item)  # a change the dict itself does not see
        return {"cart": request.session["cart"]}

    client = make_client(app)
    cookie = _cookie(client.post("/cart/apple"))
    r = client.post("/cart/pear", headers={"Cookie": f"session={cookie}"})
    assert r.json() == {"cart": ["apple", "pear"]}
    assert Sessions("k").decode(_cookie(r)) == {"cart": ["apple", "pear"]}


def test_any_hook_may_use_the_session_whatever_the_order(make_client: MakeClient) -> None:
    app = App()

    @app.before_request
    def who(request: Request) -> None:  # registered before the middleware
        request.state.user = request.session.get("user", "nobody")

    app.add_middleware(Sessions(secret_key="k"))

    @app.get("/")
    def index(request: Request) -> str:
        return str(request.state.user)

    client = make_client(app)
    assert client.get("/").text == "nobody"
    cookie = Sessions("k").encode({"user": "ann"})
    assert client.get("/", headers={"Cookie": f"session={cookie}"}).text == "ann"
