"""benchmarks/broadcast.py keeps working: run with tiny numbers against a real redis-server.

The benchmark is run by hand (docs/benchmarks.md); this only checks, for each
app, that every process starts, every subscriber gets every message in order,
the memory comparison and the many-subscribers check complete, and the JSON
report says so. No figure is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redisserver import require_redis

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "broadcast.py"

pytestmark = pytest.mark.servers


def run_benchmark(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()  # the script stops every process it started, by PID
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        pytest.fail(f"the benchmark did not finish in {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("framework", ["microweb", "starlette"])
def test_benchmark_runs_with_small_numbers(framework: str, tmp_path: Path) -> None:
    require_redis()
    if framework == "starlette" and not all(
        importlib.util.find_spec(name) for name in ("starlette", "broadcaster")
    ):
        pytest.skip("the comparison side needs: pip install starlette broadcaster")
    report = tmp_path / "broadcast.json"
    many = "40" if framework == "microweb" else "0"
    args = [
        "--frameworks", framework,
        "--subscribers", "20",
        "--messages", "20",
        "--rate", "200",
        "--idle", "20",
        "--many", many,
        "--many-messages", "3",
        "--client-procs", "1",
        "--timeout", "30",
        "--json", str(report),
    ]  # fmt: skip
    result = run_benchmark(args)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    (run,) = data["runs"]
    assert run["framework"] == framework
    for scenario in ("paced", "burst"):
        figures = run[scenario]
        assert figures["delivered"] == figures["expected"] == 20 * 20
        assert (figures["lost"], figures["disordered"], figures["dropped"]) == (0, 0, 0)
        assert figures["p50_ms"] <= figures["p99_ms"]
    assert run["server_log_errors"] == 0
    assert sorted(m["route"] for m in data["memory"]) == ["idle", "sub"]
    assert all(m["failed"] == m["dropped"] == 0 for m in data["memory"])
    if framework == "microweb":
        assert data["many"]["ok"], data["many"]
        assert data["many"]["burst"]["delivered"] == 40 * 3
    assert "| " in result.stdout  # the table
