"""The test client and the pytest plugin."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

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


# --------------------------------------------------------------------------
# The client never keeps Python from exiting: scripts run in a subprocess
# --------------------------------------------------------------------------

SCRIPT_APP = """\
import gc, os, sys
from microweb import App
from microweb.testing import TestClient

protocol = sys.argv[1]
app = App()

def say(*words):  # one write per line: threads print too
    sys.stdout.write(" ".join(map(str, words)) + "\\n")

@app.on_startup
def start():
    if os.environ.get("FAIL_STARTUP"):
        raise ValueError("no database")
    say("startup")

@app.on_shutdown
def stop():
    say("shutdown")

@app.get("/")
def index():
    return "hi"

"""


def run_script(tmp_path: Path, body: str, protocol: str, **env: str) -> tuple[int, str]:
    """Run `body` after SCRIPT_APP in a fresh interpreter; its exit code and output.

    A script that does not exit within a generous deadline fails the test; it
    is killed with every process it forked (the session we started).
    """
    script = tmp_path / "script.py"
    script.write_text(SCRIPT_APP + textwrap.dedent(body))
    process = subprocess.Popen(
        [sys.executable, "-u", str(script), protocol],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the script did not exit\n--- stdout\n{out}--- stderr\n{err}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # what a finalizer, an atexit hook or a thread raised is only printed
    for sign in ("Exception ignored", "Error in atexit", "Exception in thread"):
        assert sign not in err, err
    return process.returncode, out


def test_a_client_never_closed_lets_python_exit(tmp_path: Path, protocol: str) -> None:
    body = """
    say(TestClient(app, protocol=protocol).get("/").text)
    """
    # shutdown runs at exit, as a server's would
    assert run_script(tmp_path, body, protocol) == (0, "startup\nhi\nshutdown\n")


def test_a_failed_startup_in_with_raises_and_python_exits(tmp_path: Path, protocol: str) -> None:
    body = """
    try:
        with TestClient(app, protocol=protocol) as client:
            say("not reached")
    except RuntimeError as exc:
        say("raised:", "application startup failed" in str(exc))
    """
    assert run_script(tmp_path, body, protocol, FAIL_STARTUP="1") == (0, "raised: True\n")


def test_a_failed_startup_without_with_raises_and_python_exits(
    tmp_path: Path, protocol: str
) -> None:
    body = """
    client = TestClient(app, protocol=protocol)
    try:
        client.get("/")
    except RuntimeError as exc:
        say("raised:", "application startup failed" in str(exc))
    """
    assert run_script(tmp_path, body, protocol, FAIL_STARTUP="1") == (0, "raised: True\n")


def test_a_client_garbage_collected_unclosed(tmp_path: Path, protocol: str) -> None:
    # the collector may run in the middle of another client's test of the same
    # app: a dropped client's shutdown waits for interpreter exit
    body = """
    client = TestClient(app, protocol=protocol)
    say(client.get("/").text)
    del client
    gc.collect()
    say("collected")
    other = TestClient(app, protocol=protocol)
    say(other.get("/").text)
    other.close()
    say("closed")
    """
    code, out = run_script(tmp_path, body, protocol)
    if protocol == "asgi":  # each ASGI client runs a lifespan (startup) of its own
        expected = "startup\nhi\ncollected\nstartup\nhi\nshutdown\nclosed\n"
    else:  # under WSGI the app is started once per process
        expected = "startup\nhi\ncollected\nhi\nshutdown\nclosed\n"
    assert (code, out) == (0, expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_forked_child_collects_its_copy_of_a_client_and_exits(
    tmp_path: Path, protocol: str
) -> None:
    # the child has a copy of the client but not its loop's thread: collecting
    # the copy must not wait for that thread, nor run the parent's shutdown
    body = """
    client = TestClient(app, protocol=protocol)
    say(client.get("/").text)
    pid = os.fork()
    if pid == 0:
        del client
        gc.collect()
        say("child exits")
        sys.exit(0)
    say("child status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    client.close()
    """
    code, out = run_script(tmp_path, body, protocol)
    assert (code, out) == (0, "startup\nhi\nchild exits\nchild status 0\nshutdown\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_forked_child_cannot_use_the_parents_asgi_client(tmp_path: Path) -> None:
    # its loop's thread is the parent's: a request would wait for it forever
    body = """
    client = TestClient(app, protocol="asgi")
    say(client.get("/").text)
    pid = os.fork()
    if pid == 0:
        try:
            client.get("/")
        except RuntimeError as exc:
            say("refused:", "forked child" in str(exc))
        client.close()  # the parent's lifespan: not ended here
        say("child closed")
        os._exit(0)
    say("child status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    client.close()
    """
    code, out = run_script(tmp_path, body, "asgi")
    assert (code, out) == (
        0,
        "startup\nhi\nrefused: True\nchild closed\nchild status 0\nshutdown\n",
    )
