"""The quickstart's commands, run as written: every server line of its "Run it"
block serves examples/hello.py on 127.0.0.1:8000 and answers what the page shows.

The commands are read from docs/quickstart.md, so a line that stops working (a
wrong port, a server that refuses the target) fails here. Only ``.venv/bin/`` is
mapped to the environment running the tests; everything else is verbatim.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .servers import BIN, ROOT

pytestmark = pytest.mark.servers

QUICKSTART = ROOT / "docs" / "quickstart.md"


def run_block() -> list[str]:
    """The command lines of the quickstart's "Run it" block (comments dropped)."""
    text = QUICKSTART.read_text()
    section = text.split("## Run it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the quickstart's Run it section has no sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def shown_answer() -> str:
    """The body the quickstart shows for ``curl localhost:8000/users/42``."""
    text = QUICKSTART.read_text()
    m = re.search(r"\$ curl localhost:8000/users/42\n(.*)\n", text)
    assert m is not None, "the quickstart no longer shows the /users/42 answer"
    return m.group(1)


COMMANDS = run_block()


def test_the_run_block_names_every_server() -> None:
    programs = {shlex.split(c)[0].removeprefix(".venv/bin/") for c in COMMANDS}
    assert {"uvicorn", "waitress-serve", "gunicorn", "python"} <= programs


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def port_8000(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Port 8000 for this test alone: suites of other checkouts running at the same
    time wait for it (a lock file all of them share), other programs skip the test."""
    lock = Path(tempfile.gettempdir()) / "microweb-tests-port-8000.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if not _port_free(8000):
                pytest.skip(
                    "port 8000 is taken on this machine, and the quickstart's servers listen there"
                )
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.mark.parametrize("line", COMMANDS, ids=[shlex.split(c)[0].split("/")[-1] for c in COMMANDS])
@pytest.mark.usefixtures("port_8000")
def test_each_quickstart_command_serves_the_example(line: str, tmp_path: Path) -> None:
    argv = shlex.split(line)
    assert argv[0].startswith(".venv/bin/"), line
    argv[0] = str(BIN / argv[0].removeprefix(".venv/bin/"))
    # HOME and XDG_RUNTIME_DIR in tmp: gunicorn's control socket (one per user)
    # stays out of the real home directory
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"{line} exited:\n{log_path.read_text()}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 8000), 0.2):
                break
            assert time.monotonic() < deadline, f"{line} never listened:\n{log_path.read_text()}"
            time.sleep(0.05)  # polling for readiness with a deadline
        with httpx.Client(base_url="http://localhost:8000", timeout=10) as client:
            found = client.get("/users/42")
            missing = client.get("/users/abc")
        assert found.status_code == 200
        assert found.text == shown_answer()
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"
        assert missing.json() == {"detail": "Not Found"}
    finally:
        # the server and whatever it started (gunicorn's workers), by our PID
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # the group's last processes (gunicorn's workers) release the port too
        deadline = time.monotonic() + 15
        while not _port_free(8000) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling with a deadline
