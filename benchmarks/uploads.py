"""Big uploads and downloads: the servers' peak memory, and in-process upload throughput.

    python benchmarks/uploads.py [--size-mib 1024] [--part-mib 100] [--rounds 15]
                                 [--skip-servers] [--skip-inprocess]

(a) **Memory under real servers.** uvicorn (``app.asgi``), waitress and
gunicorn (``app.wsgi``; gthread, 1 worker) each run `tests/apps/upload_app.py`
in a process of their own, started and stopped by PID (tests/servers.py).
For each ``def`` / ``async def`` upload handler and each framing (a declared
Content-Length, or chunked): a 4 MiB warm-up upload, then a `--size-mib`
multipart upload streamed from a generator (the handler parses the form and
answers the file part's size and SHA-256, checked here); then a download of a
`--size-mib` file, whole (under WSGI: the server's ``wsgi.file_wrapper``) and
as ``Range: bytes=0-`` (microweb's own chunked reads), hashed and discarded
as it arrives. Around each transfer the serving process's VmHWM is reset to
its VmRSS (``/proc/<pid>/clear_refs``), VmRSS is read before and VmHWM after:
their difference is the growth, to stay under 64 MiB. waitress buffers the
whole request body (in a temporary file) before calling the app; that is in
the measured process too. (Under waitress, VmRSS after a download stays
higher: about 16 MiB per server thread that has sent a big body, kept by
glibc's per-thread malloc arenas -- a plain WSGI app does the same.)

(b) **In-process upload throughput.** A multipart body with a `--part-mib`
file part, fed in 64 KiB chunks to (1) a bare ``multipart.PushMultipartParser``
loop writing the file data to a ``tempfile.TemporaryFile`` (the baseline),
(2) ``app.wsgi`` with a raw environ whose ``wsgi.input`` is a BytesIO, and
(3) ``app.asgi`` with a raw scope and a ``receive`` that yields 64 KiB
``http.request`` messages, each with a ``def`` and an ``async def`` handler
that parses the form and answers the file part's size. Every variant is
checked once first (microweb's through the hashing handlers of the upload
app), then `--rounds` rounds run every variant once, in turn; the minimum
time of each is reported, with microweb's throughput as a fraction of the
baseline's (goal: at least 0.70).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import multipart  # type: ignore[import-untyped]  # noqa: E402

from microweb import App, Request  # noqa: E402
from tests import servers  # noqa: E402
from tests.apps import upload_app  # noqa: E402
from tests.transfers import (  # noqa: E402
    BOUNDARY,
    GiB,
    KiB,
    Measurement,
    MiB,
    MultipartUpload,
    expected_download,
    measured_download,
    measured_upload,
    pattern_sha256,
    serving_pid,
    write_pattern_file,
)

BOUND = 64 * MiB
CHUNK = 64 * KiB
MODULE = "tests.apps.upload_app"
_server_command = servers.command


def _command(kind: str, module: str, port: int, **options: Any) -> list[str]:
    # waitress refuses bodies over 1 GiB by default (max_request_body_size): a
    # 1 GiB file part plus its multipart framing is just over. serve() builds
    # its command line through servers.command, so it is widened here.
    cmd = _server_command(kind, module, port, **options)
    if kind == "waitress":
        cmd.insert(1, f"--max-request-body-size={4 * GiB}")
    return cmd


# ------------------------------------------------------- (a) real servers


def _row(server: str, what: str, m: Measurement) -> str:
    verdict = "ok" if m.growth < BOUND else "OVER"
    return (
        f"| {server} | {what} | {m.seconds:.1f} | {m.mib_per_s:.0f} | {m.rss_before / MiB:.1f} "
        f"| {m.hwm_after / MiB:.1f} | **{m.growth / MiB:.1f}** | {m.rss_after / MiB:.1f} "
        f"| {verdict} |"
    )


def memory_under_servers(size: int) -> bool:
    servers.command = _command
    print(f"## (a) Peak memory of the serving process, {size // MiB} MiB transfers\n")
    print(
        "| server | transfer | s | MiB/s | VmRSS before (MiB) | VmHWM after (MiB) "
        "| growth (MiB) | VmRSS after (MiB) | < 64 MiB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    t0 = time.perf_counter()
    pattern_sha256(size)  # computed once, before anything is timed
    fd, name = tempfile.mkstemp(prefix="microweb-bench-download-", suffix=".bin")
    os.close(fd)
    big = Path(name)
    all_ok = True
    try:
        write_pattern_file(big, size)
        for kind in servers.SERVERS:
            env = {upload_app.BIG_FILE_ENV: str(big)}
            with servers.serve(kind, MODULE, env=env) as server:
                pid = serving_pid(server)
                for handler in ("sync", "async"):
                    for framing in ("content-length", "chunked"):
                        m = measured_upload(server.url, pid, handler, framing, size)
                        response = m.result
                        assert response.status_code == 200, response.text
                        assert response.json() == MultipartUpload(size).expected(handler)
                        all_ok &= m.growth < BOUND
                        style = "def" if handler == "sync" else "async def"
                        print(_row(kind, f"upload, `{style}`, {framing}", m), flush=True)
                for ranged in (False, True):
                    m = measured_download(server.url, pid, size, ranged)
                    assert m.result == expected_download(size, ranged), m.result
                    all_ok &= m.growth < BOUND
                    label = "download, Range: bytes=0- (206)" if ranged else "download, whole (200)"
                    print(_row(kind, label, m), flush=True)
    finally:
        big.unlink(missing_ok=True)
        servers.command = _server_command
    print(f"\n(a) took {time.perf_counter() - t0:.0f} s; every answer's size and SHA-256 checked.")
    return all_ok


# ------------------------------------------------------- (b) in-process

bench = App(max_body_size=upload_app.MAX_BODY_SIZE)


@bench.post("/upload/sync")
def bench_sync(request: Request) -> dict[str, Any]:
    return {"size": request.form()["file"].size}


@bench.post("/upload/async")
async def bench_async(request: Request) -> dict[str, Any]:
    return {"size": (await request.form())["file"].size}


def baseline(body: bytes, check: bool = False) -> dict[str, Any]:
    """The floor: the parser alone, file data to a temporary file, text kept in a list."""
    with (
        tempfile.TemporaryFile() as f,
        multipart.PushMultipartParser(BOUNDARY, content_length=len(body), strict=True) as parser,
    ):
        text: list[bytes] = []
        is_file = False
        for offset in range(0, len(body), CHUNK):
            for event in parser.parse(body[offset : offset + CHUNK]):
                if event is None:
                    is_file = False
                elif isinstance(event, bytes | bytearray):
                    if is_file:
                        f.write(event)
                    else:
                        text.append(bytes(event))
                else:
                    is_file = event.filename is not None
        answer: dict[str, Any] = {"size": f.tell()}
        if check:  # not timed
            f.seek(0)
            sha = hashlib.sha256()
            while data := f.read(MiB):
                sha.update(data)
            answer["sha256"] = sha.hexdigest()
    return answer


def _environ(path: str, body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def call_wsgi(app: App, path: str, body: bytes) -> Any:
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(line)

    result = app.wsgi(_environ(path, body), start_response)
    try:
        out = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    assert status == ["200 OK"], (status, out[:300])
    return json.loads(out)


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call_asgi(app: App, path: str, body: bytes) -> Any:
    offset = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal offset
        if offset >= len(body):
            return {"type": "http.disconnect"}  # what a server sends after the body
        chunk = body[offset : offset + CHUNK]
        offset += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": offset < len(body)}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app.asgi(_scope(path, body), receive, send)
    assert messages[0]["status"] == 200, messages
    return json.loads(b"".join(m.get("body", b"") for m in messages[1:]))


def throughput_inprocess(part: int, rounds: int) -> bool:
    print(f"\n## (b) In-process upload throughput, a {part // MiB} MiB file part\n")
    upload_body = MultipartUpload(part)
    body = b"".join(upload_body.chunks())
    loop = asyncio.new_event_loop()

    def asgi(app: App, path: str) -> Any:
        return loop.run_until_complete(_call_asgi(app, path, body))

    variants: dict[str, Callable[[App], Any]] = {
        "bare PushMultipartParser → TemporaryFile": lambda app: baseline(body),
        "app.wsgi, def handler": lambda app: call_wsgi(app, "/upload/sync", body),
        "app.wsgi, async def handler": lambda app: call_wsgi(app, "/upload/async", body),
        "app.asgi, async def handler": lambda app: asgi(app, "/upload/async"),
        "app.asgi, def handler": lambda app: asgi(app, "/upload/sync"),
    }
    names = list(variants)
    # correctness first (and a warm-up), through the hashing handlers of the upload app
    assert baseline(body, check=True) == {"size": part, "sha256": pattern_sha256(part)}
    for name in names[1:]:
        kind = "async" if "async def" in name else "sync"
        answer = variants[name](upload_app.app)
        assert answer == upload_body.expected(kind), (name, answer)
        assert variants[name](bench) == {"size": part}, name
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            start = time.perf_counter()
            variants[name](bench)
            times[name].append(time.perf_counter() - start)
    loop.close()
    base = min(times[names[0]])
    print("| variant | min s | median s | MiB/s (min) | throughput / baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ok = True
    for name in names:
        ts = sorted(times[name])
        ratio = base / ts[0]
        if name != names[0]:
            ok &= ratio >= 0.70
        print(
            f"| {name} | {ts[0]:.3f} | {ts[len(ts) // 2]:.3f} | {part / MiB / ts[0]:.0f} "
            f"| **{ratio:.2f}** |"
        )
    print(
        f"\n{rounds} rounds, each running every variant once in this order; body "
        f"{len(body):,} bytes in {CHUNK // KiB} KiB chunks; the handlers parse the form and "
        "answer the file part's size (correctness was checked before timing, with SHA-256)."
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="(a): transfer size")
    parser.add_argument("--part-mib", type=int, default=100, help="(b): file part size")
    parser.add_argument("--rounds", type=int, default=15, help="(b): timed rounds")
    parser.add_argument("--skip-servers", action="store_true")
    parser.add_argument("--skip-inprocess", action="store_true")
    args = parser.parse_args()
    print(
        f"# microweb uploads/downloads — Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}; load average at start "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + "\n"
    )
    ok = True
    if not args.skip_servers:
        ok &= memory_under_servers(args.size_mib * MiB)
    if not args.skip_inprocess:
        ok &= throughput_inprocess(args.part_mib * MiB, args.rounds)
    print("\nall goals met" if ok else "\nGOAL MISSED (see the tables)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
