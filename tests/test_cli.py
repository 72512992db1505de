"""The command line: `microweb run` with each server, `microweb routes`, errors, --reload."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .servers import BIN, ROOT, free_port

pytestmark = pytest.mark.servers

MICROWEB = str(BIN / "microweb")


@contextlib.contextmanager
def running(args: list[str], cwd: Path = ROOT) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start `args` (a command that serves on --port), yield its URL, stop it by PID."""
    port = free_port()
    process = subprocess.Popen(
        [*args, "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    out = process.stdout.read() if process.stdout else ""
                    raise RuntimeError(f"{args} did not start:\n{out}") from None
                time.sleep(0.1)  # polling for readiness with a deadline
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the group we started (gunicorn's workers)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):  # what the group left behind, if any
            os.killpg(process.pid, signal.SIGKILL)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("server", ["uvicorn", "waitress", "gunicorn"])
def test_run_with_each_server(server: str) -> None:
    with running([MICROWEB, "run", "examples.hello:app", "--server", server]) as (url, process):
        r = httpx.get(url + "/")
        assert (r.status_code, r.text) == (200, "Hello, World!")
        assert httpx.get(url + "/users/7").json()["id"] == 7
        os.killpg(process.pid, signal.SIGTERM)  # the group we started
        out, _ = process.communicate(timeout=30)
    # each server says where it serves ("Uvicorn running on", "Serving on", "Listening at:")
    assert url in out


def test_gunicorn_with_several_workers() -> None:
    args = [MICROWEB, "run", "examples.hello:app", "--server", "gunicorn", "--workers", "2"]
    with running(args) as (url, process):
        assert httpx.get(url + "/").text == "Hello, World!"
        # gunicorn forks its workers one after another, some ms apart: the
        # first may serve before the second exists, so wait for both.
        children_file = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        deadline = time.monotonic() + 30
        while len(children := children_file.read_text().split()) < 2:
            assert time.monotonic() < deadline, f"gunicorn forked {children}"
            time.sleep(0.01)
        assert len(children) == 2


def test_python_dash_m_is_the_same_program() -> None:
    with running([sys.executable, "-m", "microweb", "run", "examples.hello:app"]) as (url, _):
        assert httpx.get(url + "/").text == "Hello, World!"


def test_routes() -> None:
    out = subprocess.run(
        [MICROWEB, "routes", "examples.chat:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["METHODS", "PATH", "NAME", "HANDLER", "SERVED", "BY"]
    assert lines[1].split() == ["GET,HEAD", "/", "page", "examples.chat:page", "wsgi,", "asgi"]
    assert lines[2].split() == [
        "WEBSOCKET", "/ws/{room}", "chat", "examples.chat:chat", "asgi", "only"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["routes", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["routes", "examples.hello:nothing"], "has no attribute 'nothing'"),
        (["routes", "examples.hello"], "expected module:app"),
        (["routes", "examples.hello:wsgi"], "not a microweb App"),
    ],
)
def test_clear_errors(args: list[str], message: str) -> None:
    result = subprocess.run([MICROWEB, *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_that_is_not_installed() -> None:
    code = (
        "import sys; sys.modules['waitress'] = None\n"
        "from microweb.cli import main\n"
        "main(['run', 'examples.hello:app', '--server', 'waitress'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "the waitress server is not installed; install it with: pip install waitress" in (
        result.stderr
    )


def test_app_run_from_a_script(tmp_path: Path) -> None:
    script = tmp_path / "site.py"
    script.write_text(
        "import sys\n"
        "from microweb import App\n"
        "app = App()\n"
        "@app.get('/')\n"
        "def index():\n"
        "    return 'from app.run'\n"
        "if __name__ == '__main__':\n"
        "    app.run(port=int(sys.argv[2]), server='waitress')\n"
    )
    with running([sys.executable, str(script)], cwd=tmp_path) as (url, _):
        assert httpx.get(url + "/").text == "from app.run"


def test_reload_restarts_on_a_change(tmp_path: Path) -> None:
    module = tmp_path / "reloaded.py"
    module.write_text(
        "from microweb import App\napp = App()\n@app.get('/')\ndef index():\n    return 'one'\n"
    )
    args = [MICROWEB, "run", "reloaded:app", "--reload"]
    with running(args, cwd=tmp_path) as (url, _):
        assert httpx.get(url + "/").text == "one"
        module.write_text(module.read_text().replace("'one'", "'two'"))
        deadline = time.monotonic() + 30
        text = "one"
        while text != "two" and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                text = httpx.get(url + "/", timeout=1).text
            time.sleep(0.1)  # polling another process with a deadline
        assert text == "two"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


@pytest.mark.parametrize("server", ["uvicorn", "waitress", "gunicorn"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_reload_stops_its_server_on_a_signal(tmp_path: Path, server: str, name: str) -> None:
    # the signal goes to the reloader's PID only, as a process manager sends it
    (tmp_path / "pids.py").write_text(
        "import os\nfrom microweb import App\napp = App()\n"
        "@app.get('/')\ndef index():\n    return str(os.getpid())\n"
    )
    args = [MICROWEB, "run", "pids:app", "--reload", "--server", server]
    with running(args, cwd=tmp_path) as (url, reloader):
        serving = int(httpx.get(url + "/").text)  # the server, or gunicorn's worker
        children = Path(f"/proc/{reloader.pid}/task/{reloader.pid}/children").read_text()
        server_pids = {serving, *map(int, children.split())}
        reloader.send_signal(getattr(signal, name))
        assert reloader.wait(60) == 0
        deadline = time.monotonic() + 30
        while any(map(_alive, server_pids)) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling other processes with a deadline
        assert [pid for pid in server_pids if _alive(pid)] == []
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/", timeout=5)


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_stopped_server_leaves_none_of_its_processes_behind() -> None:
    # a server that ignores SIGTERM past the deadline, with a worker of its own
    # that ignores it too (uvicorn's workers, waiting for an open stream):
    # stopping the server kills its whole process group
    from microweb.cli import _start_child, _stop_child

    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    script = (
        stubborn + "import subprocess, sys; "
        f"w = subprocess.Popen([sys.executable, '-c', {stubborn + 'time.sleep(120)'!r}]); "
        "print(w.pid, flush=True); time.sleep(120)"
    )
    child = _start_child([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert child.stdout is not None
    worker = int(child.stdout.readline())
    try:
        assert _alive(worker)
        _stop_child(child, timeout=1)
        assert child.returncode is not None
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling with a deadline: the kernel reaps it
        assert not _alive(worker)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # the group we started
        child.stdout.close()
        child.wait()
