"""The docs and the packaging say what is true: server commands, names, the API reference."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import microweb

ROOT = Path(__file__).resolve().parent.parent

#: Where a user copies server commands from.
COMMAND_SOURCES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.py")]
)

#: ``waitress-serve [options] module:attribute``: the options before the app.
WAITRESS = re.compile(r"waitress-serve((?:\s+--?[\w-]+(?:=\S+)?)*)\s+([\w.]+:[\w.]+)")


def waitress_commands() -> list[tuple[str, str, str]]:
    """Every ``waitress-serve`` command in COMMAND_SOURCES: (file:line, options, app)."""
    found = []
    for path in COMMAND_SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in WAITRESS.finditer(line):
                where = f"{path.relative_to(ROOT)}:{number}"
                found.append((where, match.group(1), match.group(2)))
    return found


def test_every_waitress_command_says_where_it_listens() -> None:
    # waitress-serve alone listens on 0.0.0.0:8080, every interface, and not on
    # the 127.0.0.1:8000 the docs' curl commands use
    commands = waitress_commands()
    assert len(commands) >= 10  # the pattern still finds the commands
    missing = [
        f"{where}: waitress-serve{options} {app}"
        for where, options, app in commands
        if not re.search(r"--(listen|port)\b", options)
    ]
    assert not missing, "waitress-serve without --listen:\n" + "\n".join(missing)


def test_the_distribution_is_named_microweb_framework() -> None:
    # "microweb" on PyPI is an unrelated MicroPython project
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the stdlib from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == "microweb-framework"
    assert project["tool"]["microweb"]["name"] == "microweb"  # the import name

    dist = importlib.metadata.distribution("microweb-framework")
    assert dist.version == microweb.__version__
    assert (dist.read_text("top_level.txt") or "").split() == ["microweb"]
    entry_points = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert entry_points[("console_scripts", "microweb")] == "microweb.cli:main"
    assert entry_points[("pytest11", "microweb")] == "microweb._pytest_plugin"


def test_no_install_under_the_old_name() -> None:
    # an install named "microweb" (this project before the rename, or the
    # MicroPython project) would put a second `microweb` on the path
    stale = [
        dist.locate_file("")
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] == "microweb"
        # setuptools' build leftover in a checkout: metadata only, no code
        and Path(dist.locate_file("")).resolve() != ROOT
    ]
    assert not stale, (
        f"a distribution named 'microweb' is installed in {stale}: "
        "pip uninstall -y microweb && pip install -e '.[dev]'"
    )
