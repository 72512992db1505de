"""WebSocket echo over uvicorn: microweb against a raw ASGI app, in one run.

    python benchmarks/ws_echo.py [--seconds 3] [--rounds 5] [--idle 1000]

For each app (a uvicorn process of its own, 1 worker, started and stopped by
this script by PID): messages per second of a 1:1 echo (one client
connection, send a message, wait for the echo, repeat) over `--seconds`, in
`--rounds` alternating rounds (the best of each is reported); then the
memory per idle open connection: the server's RSS with `--idle` connections
open, minus its RSS before, divided by their number.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
APPS = {"raw ASGI": "benchmarks.ws_apps:raw", "microweb": "benchmarks.ws_apps:app.asgi"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(target: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"uvicorn did not start for {target}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def echo_rate(port: int, seconds: float) -> float:
    async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        for _ in range(200):  # warm up
            await ws.send("x" * 64)
            await ws.recv()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(100):
                await ws.send("x" * 64)
                await ws.recv()
            n += 100
        return n / (time.perf_counter() - t0)


async def idle_cost(port: int, pid: int, count: int) -> float:
    async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        await ws.send("warm")
        await ws.recv()
    before = rss_kib(pid)
    sockets = []
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        async with sem:
            sockets.append(await connect(f"ws://127.0.0.1:{port}/echo", open_timeout=60))

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(0.5)  # let the server settle before reading its RSS
    after = rss_kib(pid)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return (after - before) * 1024 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    servers = {name: start(target) for name, target in APPS.items()}
    try:
        rates: dict[str, list[float]] = {name: [] for name in APPS}
        for _ in range(args.rounds):
            for name, (_, port) in servers.items():
                rates[name].append(asyncio.run(echo_rate(port, args.seconds)))
        idle = {
            name: asyncio.run(idle_cost(port, process.pid, args.idle))
            for name, (process, port) in servers.items()
        }
    finally:
        for process, _ in servers.values():
            stop(process)
    raw_best = max(rates["raw ASGI"])
    print(f"1:1 echo over uvicorn, {args.rounds} rounds x {args.seconds} s, best round:")
    print("| app | messages/s (best) | median | vs raw | memory per idle connection |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in APPS:
        best, med = max(rates[name]), sorted(rates[name])[len(rates[name]) // 2]
        print(
            f"| {name} | {best:,.0f} | {med:,.0f} | {best / raw_best:.2f}x | "
            f"{idle[name] / 1024:.1f} KiB |"
        )


if __name__ == "__main__":
    main()
