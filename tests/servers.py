"""Start real servers (uvicorn, waitress, gunicorn) on 127.0.0.1 for integration tests.

Each server runs as a child process on a free port, its output in a log file;
`serve` waits until the port accepts connections (polling, with a deadline),
yields a `Server`, and stops it by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVERS = ("uvicorn", "waitress", "gunicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of the processes that serve requests (gunicorn's workers, else the server)."""
        if self.kind != "gunicorn":
            return [self.pid]
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []


#: What each server serves by default: the entry point the docs name for it.
ENTRY_POINTS = {"uvicorn": "app.asgi", "waitress": "app.wsgi", "gunicorn": "wsgi"}


def command(
    kind: str,
    module: str,
    port: int,
    *,
    threads: int = 8,
    workers: int = 1,
    attr: str | None = None,
    preload: bool = False,
) -> list[str]:
    """The command line a user would type: ``uvicorn mod:app.asgi``, ``waitress-serve
    mod:app.wsgi``, ``gunicorn mod:wsgi`` (gunicorn refuses attribute paths); `attr`
    serves another object of the module (``attr="app"``: ``uvicorn mod:app``);
    `preload` (gunicorn only): the master imports the app before it forks the workers."""
    target = f"{module}:{attr or ENTRY_POINTS[kind]}"
    if preload and kind != "gunicorn":
        raise ValueError(f"preload is gunicorn's option, not {kind}'s")
    if kind == "uvicorn":
        return [
            str(BIN / "uvicorn"),
            target,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", str(workers),
            "--log-level", "warning",
        ]  # fmt: skip
    if kind == "waitress":
        return [
            str(BIN / "waitress-serve"),
            f"--listen=127.0.0.1:{port}",
            f"--threads={threads}",
            target,
        ]
    if kind == "gunicorn":
        return [
            str(BIN / "gunicorn"),
            "--no-control-socket",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers),
            "--worker-class", "gthread",
            "--threads", str(threads),
            "--graceful-timeout", "5",
            *(["--preload"] if preload else []),
            target,
        ]  # fmt: skip
    raise ValueError(kind)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling for readiness with a deadline, not synchronisation
    raise TimeoutError(f"server did not listen on {port}:\n{log.read_text()}")


@contextlib.contextmanager
def serve(
    kind: str,
    module: str,
    *,
    threads: int = 8,
    workers: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    attr: str | None = None,
    preload: bool = False,
) -> Iterator[Server]:
    """Run `module` (importable from the project root) under server `kind`
    (`attr`, `preload`: see `command`); RuntimeError, with the log,
    if the server exits before it listens."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix=f"microweb-{kind}-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command(
                kind, module, port, threads=threads, workers=workers, attr=attr, preload=preload
            ),
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log_path, time.monotonic() + timeout)
        yield Server(kind, f"http://127.0.0.1:{port}", process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log_path.unlink(missing_ok=True)
