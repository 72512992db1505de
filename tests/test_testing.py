"""The test client and the pytest plugin."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import AsyncIterator

import httpx
import pytest

from microweb import App, Request, StreamingResponse
from microweb.testing import TestClient

pytest_plugins = ["pytester"]


def test_responses_are_httpx_responses(protocol: str) -> None:
    app = App()

    @app.get("/")
    def index() -> dict[str, str]:
        return {"hello": "world"}

    with TestClient(app, protocol=protocol) as client:
        r = client.get("/")
    assert isinstance(r, httpx.Response)
    assert (r.status_code, r.json()) == (200, {"hello": "world"})


def test_streamed_responses_can_be_read_as_they_come(protocol: str) -> None:
    app = App()
    released = threading.Event()

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def gen() -> AsyncIterator[str]:
            yield "first\n"
            # the stream cannot go on before the test has read "first"
            if not await asyncio.to_thread(released.wait, 10):
                raise TimeoutError
            yield "second\n"

        return StreamingResponse(gen())

    with TestClient(app, protocol=protocol) as client, client.stream("GET", "/events") as r:
        lines = r.iter_lines()
        assert next(lines) == "first"
        released.set()
        assert next(lines) == "second"


def test_startup_runs_without_with(protocol: str) -> None:
    app = App()
    started: list[bool] = []

    @app.on_startup
    def start() -> None:
        started.append(True)

    @app.get("/")
    def index() -> str:
        return "ok"

    client = TestClient(app, protocol=protocol)
    try:
        assert started == []
        assert client.get("/").text == "ok"
        assert started == [True]
    finally:
        client.close()


def test_websocket_connect_needs_asgi() -> None:
    app = App()

    @app.websocket("/ws")
    async def ws(websocket: object) -> None: ...

    with (
        TestClient(app, protocol="wsgi") as client,
        pytest.raises(RuntimeError, match="ASGI entry point"),
    ):
        client.websocket_connect("/ws")


def test_redirects_are_not_followed_by_default(protocol: str) -> None:
    app = App()

    @app.get("/here")
    def here() -> str:
        return "here"

    with TestClient(app, protocol=protocol) as client:
        assert client.get("/here/").status_code == 308
        assert client.get("/here/", follow_redirects=True).text == "here"


def test_client_address_and_root_path(protocol: str) -> None:
    app = App()

    @app.get("/where")
    def where(request: Request) -> dict[str, object]:
        return {"client": request.client, "root": request.root_path, "url": request.url}

    with TestClient(app, protocol=protocol, root_path="/mnt", client=("10.0.0.7", 4321)) as c:
        assert c.get("/where").json() == {
            "client": ["10.0.0.7", 4321],
            "root": "/mnt",
            "url": "http://testserver/mnt/where",
        }


def test_pytest_plugin_runs_each_test_under_both_protocols(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from microweb import App, Request

            @pytest.fixture
            def app():
                app = App()

                @app.get("/")
                def index(request: Request):
                    return {"protocol": request.protocol}

                return app

            def test_index(client):
                assert client.get("/").json()["protocol"] in ("wsgi", "asgi")
                assert client.protocol == client.get("/").json()["protocol"]
            """
        )
    )
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_index?wsgi? PASSED*", "*test_index?asgi? PASSED*"])


def test_first_requests_from_several_threads(protocol: str) -> None:
    app = App()
    started: list[int] = []

    @app.on_startup
    def start() -> None:
        started.append(1)

    @app.get("/")
    def index() -> str:
        return "ok"

    client = TestClient(app, protocol=protocol)
    barrier = threading.Barrier(8)
    results: list[int] = []

    def first_request() -> None:
        barrier.wait(10)
        results.append(client.get("/").status_code)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    client.close()
    assert results == [200] * 8
    assert started == [1]
