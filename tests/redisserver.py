"""Start a real ``redis-server`` (Debian's package) on 127.0.0.1 for the Broadcast tests.

Each server runs as a child process on a free port with no persistence
(``--save "" --appendonly no``); `redis_server` waits until it answers PING
(polling, with a deadline), yields a `Redis`, and stops it by its PID.

`Redis.freeze` / `thaw` send SIGSTOP / SIGCONT (a server that stops
answering but keeps its connections open), `kill` / `restart` stop it and
start it again on the same port.

When ``redis-server`` is not installed, the tests that need it fail under CI
(``.ci/run`` installs it and sets ``MICROWEB_CI=1``) and are skipped
elsewhere, with the command that installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

REDIS_SERVER = shutil.which("redis-server")
INSTALL = "apt-get install -y redis-server"


def require_redis() -> str:
    """The path of redis-server; fails the test under CI, skips it elsewhere."""
    if REDIS_SERVER is None:
        message = f"needs Debian's redis-server ({INSTALL}; .ci/run installs it)"
        if os.environ.get("MICROWEB_CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_SERVER


def _ping(port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


class Redis:
    """A redis-server child process on a port of its own."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        fd, name = tempfile.mkstemp(prefix="microweb-redis-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def stream_url(self) -> str:
        return f"redis-stream://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 20.0) -> None:
        server = require_redis()
        with open(self.log_path, "ab") as log:
            args = [
                server,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "no",
            ]  # fmt: skip
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server did not answer on {self.port}:\n{self.log()}")
            time.sleep(0.02)  # polling for readiness with a deadline

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)  # our own child, by PID

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL): its clients see their connections drop."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a frozen server cannot stop
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def client(self) -> socket.socket:
        """A plain socket to the server, for tests that speak RESP themselves."""
        return socket.create_connection(("127.0.0.1", self.port), 5)


@contextlib.contextmanager
def redis_server() -> Iterator[Redis]:
    server = Redis()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)
