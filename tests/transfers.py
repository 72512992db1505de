"""Big uploads and downloads against a running server, with the server's peak memory.

Shared by tests/test_uploads_memory.py (256 MiB) and benchmarks/uploads.py (1 GiB).

The data is made as it is sent, never held whole: a deterministic pattern of
1 MiB blocks, each a fixed random block stamped with its index, so a lost,
repeated or reordered block changes the SHA-256. Memory is read from
``/proc/<pid>/status``: VmRSS just before the transfer, VmHWM (the peak
resident set) just after. Where the kernel allows it (Linux >= 4.0, the
same user), the peak is first reset to the current RSS by writing ``5`` to
``/proc/<pid>/clear_refs``, so it covers this transfer alone; where it does
not, VmHWM is the process's lifetime peak, which can only overstate the
growth (a bound that holds still holds).
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.servers import Server

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BLOCK = MiB
_BASE = random.Random(20261201).randbytes(BLOCK)


def pattern(size: int) -> Iterator[bytes]:
    """`size` bytes of the pattern, in blocks of 1 MiB (the last one shorter)."""
    for index, offset in enumerate(range(0, size, BLOCK)):
        block = index.to_bytes(8, "big") + _BASE[8:]
        yield block if offset + BLOCK <= size else block[: size - offset]


@functools.lru_cache(maxsize=8)
def pattern_sha256(size: int) -> str:
    sha = hashlib.sha256()
    for block in pattern(size):
        sha.update(block)
    return sha.hexdigest()


def write_pattern_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for block in pattern(size):
            f.write(block)


# ------------------------------------------------------------------ multipart

BOUNDARY = "microweb-big-upload-0123456789abcdef"
NOTE = "a text field before the file"


@dataclass
class MultipartUpload:
    """A multipart body with a text field and a `size`-byte file part, made as it is sent."""

    size: int

    def head(self) -> bytes:
        return (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="note"\r\n\r\n'
            f"{NOTE}\r\n"
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()

    def tail(self) -> bytes:
        return f"\r\n--{BOUNDARY}--\r\n".encode()

    @property
    def length(self) -> int:
        return len(self.head()) + self.size + len(self.tail())

    def chunks(self) -> Iterator[bytes]:
        yield self.head()
        yield from pattern(self.size)
        yield self.tail()

    def headers(self, framing: str) -> dict[str, str]:
        """Request headers; ``content-length`` declares the length up front, ``chunked`` not."""
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        if framing == "content-length":
            headers["Content-Length"] = str(self.length)
        elif framing != "chunked":
            raise ValueError(framing)
        return headers

    def expected(self, kind: str) -> dict[str, Any]:
        """What the upload app answers for this body."""
        return {
            "kind": kind,
            "note": NOTE,
            "filename": "big.bin",
            "declared_size": self.size,
            "size": self.size,
            "sha256": pattern_sha256(self.size),
        }


# --------------------------------------------------------------------- memory


def serving_pid(server: Server) -> int:
    """The PID of the process that answers requests (gunicorn's worker, else the server)."""
    # gunicorn listens before its worker has booted: this waits in the backlog until it has
    with httpx.Client(base_url=server.url, timeout=30) as client:
        pid = int(client.get("/pid").json()["pid"])
    assert pid in server.worker_pids(), (pid, server.worker_pids())
    return pid


def proc_status(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/<pid>/status``, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith(" kB"):
            out[key] = int(value.split()[0]) * KiB
    return out


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS; False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Measurement:
    rss_before: int
    hwm_after: int
    rss_after: int
    peak_reset: bool
    seconds: float
    nbytes: int
    result: Any = None

    @property
    def growth(self) -> int:
        """Peak RSS during the transfer minus RSS before it (an upper bound without reset)."""
        return self.hwm_after - self.rss_before

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / MiB / self.seconds

    def describe(self) -> str:
        return (
            f"VmRSS before {self.rss_before / MiB:.1f} MiB, VmHWM after "
            f"{self.hwm_after / MiB:.1f} MiB (growth {self.growth / MiB:.1f} MiB), VmRSS after "
            f"{self.rss_after / MiB:.1f} MiB, peak reset first: {self.peak_reset}"
        )


def measure(pid: int, transfer: Callable[[], Any], nbytes: int) -> Measurement:
    """Run `transfer()` and read process `pid`'s memory around it."""
    reset = reset_peak(pid)
    rss_before = proc_status(pid)["VmRSS"]
    start = time.perf_counter()
    result = transfer()
    seconds = time.perf_counter() - start
    after = proc_status(pid)
    return Measurement(rss_before, after["VmHWM"], after["VmRSS"], reset, seconds, nbytes, result)


# ------------------------------------------------------------------- transfers


def upload(client: httpx.Client, kind: str, body: MultipartUpload, framing: str) -> httpx.Response:
    """POST `body` to ``/upload/<kind>``, streamed from its generator."""
    response = client.post(f"/upload/{kind}", content=body.chunks(), headers=body.headers(framing))
    sent = response.request.headers
    if framing == "chunked":
        assert sent.get("transfer-encoding") == "chunked", sent
        assert "content-length" not in sent, sent
    else:
        assert sent["content-length"] == str(body.length), sent
        assert "transfer-encoding" not in sent, sent
    return response


def download(client: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET ``/download``, hashing and discarding the chunks as they arrive."""
    sha, size = hashlib.sha256(), 0
    with client.stream("GET", "/download", headers=headers) as response:
        for chunk in response.iter_raw():
            sha.update(chunk)
            size += len(chunk)
        return {
            "status": response.status_code,
            "content_length": response.headers.get("content-length"),
            "size": size,
            "sha256": sha.hexdigest(),
        }


# ------------------------------------------- warmed-up, measured transfers

#: The warm-up upload: beyond the spool threshold, so it writes a temporary file too.
WARMUP = 4 * MiB


def measured_upload(url: str, pid: int, kind: str, framing: str, size: int) -> Measurement:
    """On a fresh client: a small upload of the same kind, then one of `size` bytes, measured.

    The measurement's `result` is the big upload's response (for the caller to check).
    """
    with httpx.Client(base_url=url, timeout=600) as client:
        warmup = MultipartUpload(WARMUP)
        r = upload(client, kind, warmup, framing)
        assert r.status_code == 200 and r.json() == warmup.expected(kind), r.text
        body = MultipartUpload(size)
        return measure(pid, functools.partial(upload, client, kind, body, framing), body.length)


def measured_download(url: str, pid: int, size: int, ranged: bool) -> Measurement:
    """On a fresh client: a 1 MiB range of ``/download``, then all of it, measured.

    `ranged` asks for the whole file as ``Range: bytes=0-`` (a 206). The
    measurement's `result` is what `download` returns.
    """
    headers = {"Range": "bytes=0-"} if ranged else None
    with httpx.Client(base_url=url, timeout=600) as client:
        warmup = client.get("/download", headers={"Range": f"bytes=0-{MiB - 1}"})
        assert warmup.status_code == 206 and len(warmup.content) == MiB, warmup
        return measure(pid, functools.partial(download, client, headers), size)


def expected_download(size: int, ranged: bool) -> dict[str, Any]:
    return {
        "status": 206 if ranged else 200,
        "content_length": str(size),
        "size": size,
        "sha256": pattern_sha256(size),
    }
