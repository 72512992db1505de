"""Big uploads and downloads under uvicorn, waitress and gunicorn keep the worker's memory bounded.

Each server starts once for this module and runs `tests/apps/upload_app.py`.
A test warms the path up with a small transfer of the same kind, reads the
serving process's VmRSS, runs one 256 MiB transfer (streamed from a generator
on the client side, hashed and discarded on the way back), then reads its
VmHWM: the peak may exceed the RSS before by less than `BOUND`. Held in
memory anywhere, the 256 MiB would overshoot the bound fourfold. (waitress
buffers a request body before calling the app -- in a temporary file beyond
its ``inbuf_overflow`` -- and that counts too: the measured process is the
server's.) See tests/transfers.py for how the peak is read.

Observed (2 cores, 256 MiB): uploads grow the peak by 0-6 MiB under all
three servers; downloads by 0 MiB under uvicorn and gunicorn, and 14-30 MiB
under waitress -- its own buffering, kept by glibc's per-thread malloc arenas
(a plain WSGI generator app does the same; with ``MALLOC_ARENA_MAX=1`` the
RSS stays flat), so waitress's RSS settles about 16 MiB higher for each of
its threads that has sent a big body, not for each request.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.upload_app import BIG_FILE_ENV
from tests.servers import SERVERS, Server, serve
from tests.transfers import (
    MiB,
    MultipartUpload,
    expected_download,
    measured_download,
    measured_upload,
    serving_pid,
    write_pattern_file,
)

pytestmark = pytest.mark.servers

MODULE = "tests.apps.upload_app"
SIZE = 256 * MiB
#: The most the serving process's peak RSS may grow during one transfer.
BOUND = 64 * MiB


@pytest.fixture(scope="module")
def big_file() -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="microweb-download-", suffix=".bin")
    os.close(fd)
    path = Path(name)
    try:
        write_pattern_file(path, SIZE)
        yield path
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, big_file: Path) -> Iterator[Server]:
    with serve(str(request.param), MODULE, env={BIG_FILE_ENV: str(big_file)}) as srv:
        yield srv


@pytest.mark.parametrize(
    ("kind", "framing"),
    [
        ("sync", "content-length"),
        ("sync", "chunked"),
        ("async", "content-length"),
        ("async", "chunked"),
    ],
)
def test_upload_keeps_memory_bounded(
    server: Server, kind: str, framing: str, request: pytest.FixtureRequest
) -> None:
    m = measured_upload(server.url, serving_pid(server), kind, framing, SIZE)
    request.node.user_properties.append(("memory", m.describe()))
    r = m.result
    assert r.status_code == 200, r.text
    assert r.json() == MultipartUpload(SIZE).expected(kind)
    assert m.growth < BOUND, m.describe()


@pytest.mark.parametrize(
    "ranged",
    [
        # the whole file: under WSGI, through the server's wsgi.file_wrapper
        pytest.param(False, id="whole"),
        # "bytes=0-" is the whole file as a 206: microweb's own chunked reads everywhere
        pytest.param(True, id="range"),
    ],
)
def test_download_keeps_memory_flat(
    server: Server, ranged: bool, request: pytest.FixtureRequest
) -> None:
    m = measured_download(server.url, serving_pid(server), SIZE, ranged)
    request.node.user_properties.append(("memory", m.describe()))
    assert m.result == expected_download(SIZE, ranged)
    assert m.growth < BOUND, m.describe()
