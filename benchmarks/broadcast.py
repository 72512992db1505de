"""Broadcast fan-out over Redis: microweb against Starlette + encode/broadcaster, side by side.

    pip install starlette broadcaster     # the comparison's side only: not a microweb dependency
    python benchmarks/broadcast.py [--subscribers 1000] [--messages 500] [--rate 20] \\
        [--runs 3] [--idle 2000] [--many 10000] [--json broadcast.json] \\
        [--memory-routes sub-plain,watch,sub-taskgroup] [--profile DIR]

A few minutes for three runs on 2 cores; the figures and how to read them
are in docs/benchmarks.md ("Broadcast fan-out").

One redis-server (a free port, no persistence) serves every run. For each
framework, in turn (the order alternates between runs), two uvicorn processes
(1 worker each, free ports) serve `benchmarks/broadcast_apps.py`; client
processes (`--client-procs`, the `websockets` library on asyncio) open
`--subscribers` WebSocket connections to ``/sub``, spread evenly over the two
servers, and wait until every one has received a probe message (probes are
published every 0.1 s once all are connected, with a deadline). Then this
process publishes `--messages` messages to Redis itself (redis-py's
synchronous ``PUBLISH``), each carrying its ``time.perf_counter()`` at
publish time, in two scenarios:

- **paced**: at a fixed `--rate` (messages per second; below what the
  servers can deliver), for the latency of one message: p50/p99 of
  publish-to-receive over every delivery.
- **burst**: as fast as one publisher can (each ``PUBLISH`` waits for its
  reply), for throughput: deliveries per second from the first publish to the
  last receive, and the latency including the time spent queued. Keep
  `--messages` at most microweb's per-subscriber backlog (1000), or its
  subscribers overflow (by design) where broadcaster's queues grow.

Every client checks that its messages arrive in publish order. CPU seconds of
every process (servers, clients, redis-server, this publisher) are read from
/proc over each scenario, so a saturated machine shows.

Memory (`--idle K`): for each framework, a fresh uvicorn process with K idle
WebSocket subscribers, and another with K idle WebSockets that subscribe to
nothing (``/idle``); each figure is the VmRSS delta over the K connections
divided by K, after one warm-up connection to each route. `--memory-routes`
adds microweb routes that split an idle subscriber's cost (see
broadcast_apps.py).

Many (`--many`): one fresh microweb process with that many idle subscribers,
all of which must receive a probe and then `--many-messages` messages,
without errors (RLIMIT_NOFILE is raised to its hard limit first).

`--profile DIR`: py-spy (``pip install py-spy``) records one server of each
app during the burst, as collapsed stacks.

Timestamps are `time.perf_counter()` (CLOCK_MONOTONIC, one clock for every
process of the machine). Every process this script starts is stopped by its
PID, on every path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {
    "microweb": "benchmarks.broadcast_apps:microweb",
    "starlette": "benchmarks.broadcast_apps:starlette",
}
LABELS = {"microweb": "microweb Broadcast", "starlette": "Starlette + broadcaster"}
CHANNEL = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# the shared counters of a client process
CONNECTED, READY, RECEIVED, FAILED, DROPPED, DISORDERED = range(6)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port}")


@dataclass
class Child:
    """A process this script started: stopped by its PID, its output in a log file."""

    what: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)


def spawn(what: str, args: list[str], env: dict[str, str] | None = None) -> Child:
    fd, name = tempfile.mkstemp(prefix="microweb-bench-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Child(what, process, Path(name))


def start_redis() -> Child:
    server = "redis-server"
    port = free_port()
    args = [
        server,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "no",
        "--maxclients", "20000",
    ]  # fmt: skip
    child = spawn("redis-server", args)
    child.port = port
    try:
        wait_for_port(port, child.process, "redis-server", 20)
    except BaseException:
        child.stop()
        raise
    return child


def start_uvicorn(framework: str, redis_url: str) -> Child:
    port = free_port()
    args = [
        sys.executable, "-m", "uvicorn", FRAMEWORKS[framework], "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--backlog", "4096",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REDIS_URL": redis_url}
    child = spawn(f"uvicorn {framework}", args, env)
    child.port = port
    try:
        wait_for_port(port, child.process, child.what, 30)
    except BaseException:
        print(child.log(), file=sys.stderr)
        child.stop()
        raise
    return child


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def log_errors(text: str) -> int:
    return sum(1 for line in text.splitlines() if "Traceback" in line or "ERROR" in line)


# --------------------------------------------------------------------------
# The client processes
# --------------------------------------------------------------------------


def client_main(conn: Connection, counters: Any, urls: list[str], concurrency: int) -> None:
    """A client process: opens its WebSockets, then answers the controller's commands."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_client(conn, counters, urls, concurrency))


async def _client(conn: Connection, counters: Any, urls: list[str], concurrency: int) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    perf = time.perf_counter
    latencies = array("d")
    # (sequence number, server's port) -> the slowest delivery of that message here
    worst: dict[tuple[int, int], float] = {}
    times = {"first": 0.0, "last": 0.0}
    failures: list[str] = []
    sockets: list[Any] = []
    closing = False
    limit = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with limit:
            try:
                ws = await connect(
                    url, compression=None, ping_interval=None, open_timeout=120, max_size=None
                )
            except Exception as exc:
                counters[FAILED] += 1
                failures.append(repr(exc))
                return
        sockets.append(ws)
        counters[CONNECTED] += 1
        ready = False
        last_seq = -1
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        try:
            async for message in ws:
                if message[0] == "m":  # "m <seq> <perf_counter at publish> <padding>"
                    now = perf()
                    _, seq, sent, _ = message.split(" ", 3)
                    latency = now - float(sent)
                    latencies.append(latency)
                    key = (int(seq), port)
                    if latency > worst.get(key, 0.0):
                        worst[key] = latency
                    if not times["first"]:
                        times["first"] = now
                    times["last"] = now
                    counters[RECEIVED] += 1
                    if int(seq) <= last_seq:
                        counters[DISORDERED] += 1
                    last_seq = int(seq)
                elif not ready:  # "p": a probe
                    ready = True
                    counters[READY] += 1
        except ConnectionClosed:
            pass
        if not closing:
            counters[DROPPED] += 1

    tasks = [asyncio.create_task(one(url)) for url in urls]
    while True:
        command = await commands.get()
        if command == "reset":
            latencies = array("d")
            worst.clear()
            times.update(first=0.0, last=0.0)
            counters[RECEIVED] = counters[DISORDERED] = 0
            conn.send("ok")
        elif command == "report":
            conn.send({"latencies": latencies, "worst": worst, "failures": failures[:5], **times})
        elif command == "close":
            closing = True
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.remove_reader(conn.fileno())
            conn.send("closed")
            return


class Clients:
    """`count` WebSocket clients, spread round-robin over `urls`, in `procs` processes."""

    def __init__(self, urls: list[str], count: int, procs: int, concurrency: int = 64) -> None:
        context = multiprocessing.get_context("spawn")
        every = [urls[i % len(urls)] for i in range(count)]
        procs = max(1, min(procs, count))
        self.count = count
        self.published = 0  # sequence numbers go on across rounds: each client checks order
        self.workers: list[tuple[Any, Connection, Any]] = []
        for i in range(procs):
            mine, theirs = context.Pipe()
            counters = context.Array("q", 6, lock=False)
            process = context.Process(
                target=client_main,
                args=(theirs, counters, every[i::procs], concurrency),
                daemon=True,
            )
            process.start()
            self.workers.append((process, mine, counters))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _, _ in self.workers]

    def total(self, index: int) -> int:
        return sum(counters[index] for _, _, counters in self.workers)

    def wait(
        self, index: int, target: int, timeout: float, between: Callable[[], None] | None = None
    ) -> bool:
        """Poll a counter until it reaches `target`; False once it cannot (connections failed or
        dropped) or after `timeout` seconds without progress."""
        last, progress = -1, time.monotonic()
        while True:
            value = self.total(index)
            if value >= target:
                return True
            if index == CONNECTED and value + self.total(FAILED) >= target:
                return False
            if index == READY and value + self.total(FAILED) + self.total(DROPPED) >= target:
                return False
            now = time.monotonic()
            if value != last:
                last, progress = value, now
            elif now - progress > timeout:
                return False
            for process, _, _ in self.workers:
                if not process.is_alive():
                    raise RuntimeError("a client process died")
            if between is not None:
                between()
            time.sleep(0.01)  # polling shared counters

    def ask(self, command: str, timeout: float = 120) -> list[Any]:
        for _, conn, _ in self.workers:
            conn.send(command)
        answers = []
        for _, conn, _ in self.workers:
            if not conn.poll(timeout):
                raise TimeoutError(f"a client process did not answer {command!r}")
            answers.append(conn.recv())
        return answers

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("close", timeout=60)
        for process, conn, _ in self.workers:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()


# --------------------------------------------------------------------------
# Publishing and measuring
# --------------------------------------------------------------------------


def payload(kind: str, seq: int, size: int) -> str:
    head = f"{kind} {seq} {time.perf_counter():.9f} "
    return head + "x" * max(0, size - len(head))


def subscribe_all(
    clients: Clients, redis: Any, timeout: float, subscribers: int | None = None
) -> None:
    """Wait until every client is connected, then probe until `subscribers` (all by default)
    received a probe."""
    if not clients.wait(CONNECTED, clients.count, timeout):
        raise RuntimeError(
            f"{clients.total(CONNECTED)}/{clients.count} connected "
            f"({clients.total(FAILED)} failed): {clients.ask('report')[0]['failures']}"
        )
    next_probe = [0.0]

    def probe() -> None:
        if time.monotonic() >= next_probe[0]:
            redis.publish(CHANNEL, payload("p", 0, 16))
            next_probe[0] = time.monotonic() + 0.1

    subscribers = clients.count if subscribers is None else subscribers
    if not clients.wait(READY, subscribers, timeout, between=probe):
        raise RuntimeError(
            f"{clients.total(READY)}/{subscribers} subscribed ({clients.total(DROPPED)} dropped)"
        )
    time.sleep(0.5)  # let the last probes in flight land before anything is timed


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def publish_round(
    clients: Clients,
    redis: Any,
    pids: dict[str, list[int]],
    messages: int,
    rate: float,
    size: int,
    stall: float,
) -> dict[str, Any]:
    """Publish `messages` (at `rate` per second, or as fast as possible when 0) and measure."""
    clients.ask("reset")
    expected = messages * clients.count
    cpu0 = {role: [cpu_seconds(pid) for pid in group] for role, group in pids.items()}
    wall0 = time.perf_counter()
    first_publish = wall0
    for i in range(messages):
        if rate:
            delay = wall0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        redis.publish(CHANNEL, payload("m", clients.published + i, size))
    clients.published += messages
    published = time.perf_counter()
    complete = clients.wait(RECEIVED, expected, stall)
    wall = time.perf_counter() - wall0
    cpu = {
        role: sum(cpu_seconds(pid) for pid in group) - sum(cpu0[role])
        for role, group in pids.items()
    }
    reports = clients.ask("report")
    latencies = sorted(value for report in reports for value in report["latencies"])
    worst: dict[tuple[int, int], float] = {}
    for report in reports:
        for (seq, port), latency in report["worst"].items():
            key = (seq - (clients.published - messages), port)
            worst[key] = max(latency, worst.get(key, 0.0))
    slowest = sorted(worst.items(), key=lambda item: -item[1])[:8]
    delivered = len(latencies)
    last = max(report["last"] for report in reports)
    span = (last - first_publish) if delivered else float("nan")
    return {
        "messages": messages,
        "rate": rate or None,
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "complete": complete,
        "disordered": clients.total(DISORDERED),
        "dropped": clients.total(DROPPED),
        "publish_seconds": published - wall0,
        "seconds": span,
        "deliveries_per_s": delivered / span if delivered else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        # the slowest deliveries: (message's index in this round, server's port, ms)
        "slowest": [(seq, port, round(latency * 1000, 1)) for (seq, port), latency in slowest],
        "cpu_seconds": cpu,
        "cpu_percent": {role: 100 * value / wall for role, value in cpu.items()},
        "server_cpu_us_per_delivery": (cpu["servers"] * 1e6 / delivered) if delivered else None,
    }


@contextlib.contextmanager
def profiling(directory: Path | None, name: str, pid: int) -> Iterator[None]:
    """py-spy records `pid` meanwhile (``pip install py-spy``), as collapsed stacks."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{name}-{pid}.txt"
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--format", "raw", "--rate", "250", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # py-spy attaches
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # it writes its file and exits
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
        print(f"profile of {name} ({pid}) during the burst: {out}", file=sys.stderr)


@contextlib.contextmanager
def running(children: list[Child]) -> Iterator[list[Child]]:
    try:
        yield children
    finally:
        for child in children:
            child.stop()


@contextlib.contextmanager
def client_pool(urls: list[str], count: int, procs: int) -> Iterator[Clients]:
    clients = Clients(urls, count, procs)
    try:
        yield clients
    finally:
        clients.close()


def fan_out(framework: str, redis_child: Child, redis: Any, args: argparse.Namespace) -> dict:
    url = f"redis://127.0.0.1:{redis_child.port}/0"
    servers: list[Child] = []
    with running(servers):
        for _ in range(2):
            servers.append(start_uvicorn(framework, url))
        urls = [f"ws://127.0.0.1:{server.port}/sub" for server in servers]
        with client_pool(urls, args.subscribers, args.client_procs) as clients:
            t0 = time.monotonic()
            subscribe_all(clients, redis, args.timeout)
            pids = {
                "servers": [server.pid for server in servers],
                "clients": clients.pids,
                "redis": [redis_child.pid],
                "publisher": [os.getpid()],
            }
            result: dict[str, Any] = {
                "framework": framework,
                "subscribe_seconds": time.monotonic() - t0,
                "ports": [server.port for server in servers],
            }
            result["paced"] = publish_round(
                clients, redis, pids, args.messages, args.rate, args.size, args.timeout
            )
            with profiling(args.profile, framework, servers[0].pid):
                result["burst"] = publish_round(
                    clients, redis, pids, args.messages, 0, args.size, args.timeout
                )
            result["rss_kib"] = [rss_kib(server.pid) for server in servers]
        result["server_log_errors"] = sum(log_errors(server.log()) for server in servers)
        if result["server_log_errors"]:
            print(servers[0].log()[-3000:], file=sys.stderr)
    return result


def idle_rss(
    framework: str,
    route: str,
    count: int,
    redis_child: Child,
    redis: Any,
    procs: int,
    timeout: float,
) -> dict[str, Any]:
    """VmRSS of a fresh server before and after `count` idle connections to `route`."""
    url = f"redis://127.0.0.1:{redis_child.port}/0"
    with running([start_uvicorn(framework, url)]) as (server,):
        base = f"ws://127.0.0.1:{server.port}"
        with client_pool([f"{base}/sub", f"{base}/idle"], 2, 1) as warm:  # imports, Redis, ...
            subscribe_all(warm, redis, timeout, subscribers=1)
        time.sleep(1.0)  # let the server settle before reading its RSS
        before = rss_kib(server.pid)
        t0 = time.monotonic()
        with client_pool([f"{base}/{route}"], count, procs) as clients:
            if route.startswith("sub"):
                subscribe_all(clients, redis, timeout)
            elif not clients.wait(CONNECTED, count, timeout):
                raise RuntimeError(f"{clients.total(CONNECTED)}/{count} connected")
            seconds = time.monotonic() - t0
            time.sleep(1.0)
            after = rss_kib(server.pid)
            failed, dropped = clients.total(FAILED), clients.total(DROPPED)
        errors = log_errors(server.log())
    return {
        "route": route,
        "count": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": (after - before) * 1024 / count,
        "connect_seconds": seconds,
        "failed": failed,
        "dropped": dropped,
        "server_log_errors": errors,
    }


def many_idle(redis_child: Child, redis: Any, args: argparse.Namespace) -> dict[str, Any]:
    """`--many` idle subscribers in one microweb process: all subscribed, then all delivered."""
    url = f"redis://127.0.0.1:{redis_child.port}/0"
    count = args.many
    with running([start_uvicorn("microweb", url)]) as (server,):
        before = rss_kib(server.pid)
        t0 = time.monotonic()
        with client_pool([f"ws://127.0.0.1:{server.port}/sub"], count, args.client_procs) as c:
            subscribe_all(c, redis, args.timeout)
            seconds = time.monotonic() - t0
            after = rss_kib(server.pid)
            pids = {
                "servers": [server.pid],
                "clients": c.pids,
                "redis": [redis_child.pid],
                "publisher": [os.getpid()],
            }
            burst = publish_round(c, redis, pids, args.many_messages, 0, args.size, args.timeout)
            failed = c.total(FAILED)
        errors = log_errors(server.log())
        if errors:
            print(server.log()[-3000:], file=sys.stderr)
    return {
        "count": count,
        "subscribe_seconds": seconds,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_subscriber": (after - before) * 1024 / count,
        "failed": failed,
        "server_log_errors": errors,
        "burst": burst,
        "ok": not failed and not errors and burst["lost"] == 0 and not burst["dropped"],
    }


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = []
    runs = results["runs"]
    names = [name for name in FRAMEWORKS if any(r["framework"] == name for r in runs)]

    def of(name: str, *path: str) -> list[float]:
        values = []
        for run in runs:
            if run["framework"] == name:
                value: Any = run
                for key in path:
                    value = value[key]
                values.append(value)
        return values

    if runs:
        n = len(of(names[0], "framework"))
        lines.append(
            f"Fan-out: {args.subscribers} WebSocket subscribers over 2 uvicorn processes, one "
            f"Redis, {args.messages} messages of {args.size} bytes; median of {n} run(s)"
        )
        lines.append("")
        lines.append(
            "| | burst deliveries/s | burst p50 | burst p99 | paced p50 | paced p99 "
            "| server CPU per delivery | lost | CPU % servers / clients / redis |"
        )
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for name in names:
            lost = sum(of(name, "burst", "lost")) + sum(of(name, "paced", "lost"))
            cpu = [
                median([r["burst"]["cpu_percent"][role] for r in runs if r["framework"] == name])
                for role in ("servers", "clients", "redis")
            ]
            lines.append(
                f"| {LABELS[name]} | {median(of(name, 'burst', 'deliveries_per_s')):,.0f} "
                f"| {median(of(name, 'burst', 'p50_ms')):.1f} ms "
                f"| {median(of(name, 'burst', 'p99_ms')):.1f} ms "
                f"| {median(of(name, 'paced', 'p50_ms')):.2f} ms "
                f"| {median(of(name, 'paced', 'p99_ms')):.2f} ms "
                f"| {median(of(name, 'burst', 'server_cpu_us_per_delivery')):.1f} µs "
                f"| {lost} | {cpu[0]:.0f} / {cpu[1]:.0f} / {cpu[2]:.0f} |"
            )
        if len(names) == 2:
            a, b = names

            def ratio(*path: str) -> float:
                below = median(of(b, *path))
                return median(of(a, *path)) / below if below else float("nan")

            lines.append(
                f"| {a} / {b} | {ratio('burst', 'deliveries_per_s'):.2f}x "
                f"| {ratio('burst', 'p50_ms'):.2f}x | {ratio('burst', 'p99_ms'):.2f}x "
                f"| {ratio('paced', 'p50_ms'):.2f}x | {ratio('paced', 'p99_ms'):.2f}x "
                f"| {ratio('burst', 'server_cpu_us_per_delivery'):.2f}x | | |"
            )
        lines.append("")
        lines.append("Per run (burst deliveries/s; paced p99):")
        for name in names:
            rates = ", ".join(f"{v:,.0f}" for v in of(name, "burst", "deliveries_per_s"))
            p99s = ", ".join(f"{v:.2f} ms" for v in of(name, "paced", "p99_ms"))
            lines.append(f"- {LABELS[name]}: {rates}; {p99s}")
    memory = results["memory"]
    if memory:
        lines.append("")
        lines.append(f"Memory per idle connection ({args.idle} connections, VmRSS delta / count):")
        lines.append("")
        lines.append("| | route | per connection | / idle WebSocket |")
        lines.append("| --- | --- | ---: | ---: |")
        for name in names or list(FRAMEWORKS):
            per_route: dict[str, list[float]] = {}
            for m in memory:
                if m["framework"] == name:
                    per_route.setdefault(m["route"], []).append(m["bytes_per_connection"])
            floor = median(per_route.get("idle", []))
            for route, values in per_route.items():
                lines.append(
                    f"| {LABELS[name]} | /{route} | {median(values) / 1024:.1f} KiB "
                    f"| {median(values) / floor:.2f} |"
                )
    many = results.get("many")
    if many:
        lines.append("")
        burst = many["burst"]
        status = "OK" if many["ok"] else "FAILED"
        lines.append(
            f"{many['count']:,} idle subscribers in one microweb process: {status}; "
            f"all subscribed in {many['subscribe_seconds']:.1f} s, VmRSS "
            f"{many['rss_before_kib'] / 1024:.0f} -> {many['rss_after_kib'] / 1024:.0f} MiB "
            f"({many['bytes_per_subscriber'] / 1024:.1f} KiB each); {burst['messages']} "
            f"messages: {burst['delivered']:,}/{burst['expected']:,} delivered, "
            f"{burst['deliveries_per_s']:,.0f}/s, p50 {burst['p50_ms']:.0f} ms, "
            f"p99 {burst['p99_ms']:.0f} ms; {many['failed']} failed connections, "
            f"{many['server_log_errors']} server errors"
        )
        if many.get("nofile"):
            lines.append(f"(open files limit: {many['nofile']})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="paced messages per second")
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--idle", type=int, default=2000, help="0: no memory comparison")
    parser.add_argument(
        "--memory-routes",
        default="",
        help="more microweb routes for the memory comparison: sub-plain (no while_connected), "
        "watch (while_connected, no subscription), sub-taskgroup (the Starlette app's pattern)",
    )
    parser.add_argument("--many", type=int, default=10_000, help="0: skip")
    parser.add_argument("--many-messages", type=int, default=10)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without progress")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="a directory: py-spy records one server of each app"
    )
    args = parser.parse_args()
    # SIGTERM (a test's timeout, say) unwinds like Ctrl-C: every process started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    frameworks = [name.strip() for name in args.frameworks.split(",") if name.strip()]
    for name in frameworks:
        if name not in FRAMEWORKS:
            parser.error(f"unknown framework {name!r}")
    if "starlette" in frameworks:
        try:
            import broadcaster  # noqa: F401
            import starlette  # noqa: F401
        except ImportError:
            parser.error("the comparison needs: pip install starlette broadcaster")

    import redis as redis_py

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(args.many, args.subscribers, args.idle) + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        print(f"warning: the open files hard limit is {hard} (< {wanted})", file=sys.stderr)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_before": os.getloadavg(),
            "nofile": hard,
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [],
        "memory": [],
    }
    redis_child = start_redis()
    try:
        redis = redis_py.Redis(port=redis_child.port, socket_timeout=30)
        for run in range(args.runs):
            order = frameworks if run % 2 == 0 else frameworks[::-1]
            for name in order:
                print(f"run {run + 1}/{args.runs}: {name} fan-out", file=sys.stderr)
                results["runs"].append(fan_out(name, redis_child, redis, args))
                if args.idle:
                    routes = ["idle", "sub"]
                    if name == "microweb":
                        routes += [r for r in args.memory_routes.split(",") if r]
                    for route in routes:
                        print(f"run {run + 1}/{args.runs}: {name} idle {route}", file=sys.stderr)
                        memory = idle_rss(
                            name, route, args.idle, redis_child, redis, args.client_procs,
                            args.timeout,
                        )  # fmt: skip
                        results["memory"].append({"framework": name, **memory})
        if args.many:
            print(f"{args.many} idle microweb subscribers", file=sys.stderr)
            results["many"] = many_idle(redis_child, redis, args)
            results["many"]["nofile"] = hard
        redis.close()
    finally:
        redis_child.stop()
    results["machine"]["load_after"] = os.getloadavg()
    print(summarise(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    problems = [
        f"{run['framework']} {scenario}: {run[scenario]['lost']} lost, "
        f"{run[scenario]['disordered']} out of order, {run[scenario]['dropped']} dropped"
        for run in results["runs"]
        for scenario in ("paced", "burst")
        if run[scenario]["lost"] or run[scenario]["disordered"] or run[scenario]["dropped"]
    ]
    if results.get("many") and not results["many"]["ok"]:
        problems.append("many idle subscribers: not all delivered without errors")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
