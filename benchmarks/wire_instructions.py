"""Instructions a server process spends per request over the wire, counted by cachegrind.

On a shared machine, CPU time per request moves by 10-20 % from one run to
the next; the number of instructions a server executes per request does not.
This serves each app of the shared benchmark (``../shared/bench``) with
uvicorn (one worker, httptools, uvloop, as its ``wire`` command does) under
``valgrind --tool=cachegrind``, sends it N requests over 8 keep-alive
connections, then 3N, and reports (instructions for 3N - for N) / 2N: the
whole server's instructions per request, uvicorn's included, without its
startup.

    python benchmarks/wire_instructions.py --apps raw_asgi,microweb_asgi --paths /,/json

It runs the apps with the benchmark's own environment (``--python``, by
default the one ``../shared/bench/run`` builds), and this checkout first on
the path. Needs valgrind (``apt-get install -y valgrind``). About 15 s per
app and path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(port: int, path: str, n: int, conns: int) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if not head.startswith(b"HTTP/1.1 200") or match is None:
                raise RuntimeError(f"unexpected answer: {head[:80]!r}")
            await reader.readexactly(int(match.group(1)))
        writer.close()

    await asyncio.gather(*(one(n // conns) for _ in range(conns)))


def _wait_for(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited before it answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start in time")


def count(python: str, bench: Path, app: str, path: str, n: int) -> int:
    """The server's total instructions after serving `n` requests for `path`."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "valgrind.txt"
        env = dict(
            os.environ,
            ANCHOR_APP=app,
            PYTHONHASHSEED="0",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(bench)]),
        )
        cmd = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no",
            "--cachegrind-out-file=/dev/null", f"--log-file={out}",
            python, "-m", "uvicorn", "anchor_bench.serve:app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, cwd=bench)
        try:
            _wait_for(port, proc, time.monotonic() + 120)
            asyncio.run(_client(port, path, n, 8))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        found = re.search(r"I\s+refs:\s+([\d,]+)", out.read_text())
        if found is None:
            raise RuntimeError(f"no instruction count in valgrind's output for {app}")
        return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default="raw_asgi,microweb_asgi")
    parser.add_argument("--paths", default="/,/json")
    parser.add_argument("--requests", type=int, default=1000, help="N (then 3N)")
    parser.add_argument("--bench", default=str(ROOT.parent / "shared" / "bench"))
    default_python = Path(tempfile.gettempdir()) / "microweb-bench-venv" / "bin" / "python"
    parser.add_argument("--python", default=str(default_python))
    args = parser.parse_args()
    bench = Path(args.bench).resolve()
    apps, paths, n = args.apps.split(","), args.paths.split(","), args.requests
    print(f"instructions per request (server process, uvicorn included), N={n}")
    results: dict[tuple[str, str], float] = {}
    for path in paths:
        for app in apps:
            low = count(args.python, bench, app, path, n)
            high = count(args.python, bench, app, path, 3 * n)
            results[app, path] = per = (high - low) / (2 * n)
            base = results.get((apps[0], path))
            ratio = f"{per / base:.3f}x" if base else ""
            print(f"{path:8s} {app:16s} {per:10,.0f}  {ratio}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
