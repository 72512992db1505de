"""The docs and the packaging say what is true: server commands, names, the API reference."""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import microweb
import microweb.broadcast
import microweb.middleware
import microweb.testing

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


#: The modules whose ``__all__`` is the public API.
PUBLIC_MODULES = [microweb, microweb.testing, microweb.middleware, microweb.broadcast]


def public_names() -> list[str]:
    """``microweb.App``, ``microweb.testing.TestClient``, ...: each name in the ``__all__``s."""
    return [f"{module.__name__}.{name}" for module in PUBLIC_MODULES for name in module.__all__]


def _resolve(qualified: str) -> Any:
    module_name, _, name = qualified.rpartition(".")
    module: ModuleType = next(m for m in PUBLIC_MODULES if m.__name__ == module_name)
    return getattr(module, name)


def public_members(cls: type) -> Iterator[tuple[str, type, Any]]:
    """The public methods and properties of `cls` that microweb defines (inherited ones too)."""
    seen: set[str] = set()
    for klass in cls.__mro__:  # the first definition of a name is the one used
        for name, value in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if name.startswith("_") or not klass.__module__.startswith("microweb"):
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property | functools.cached_property):
                yield name, klass, value


def test_every_public_name_has_a_docstring() -> None:
    undocumented = []
    for qualified in public_names():
        obj = _resolve(qualified)
        if not (obj.__doc__ or "").strip():  # a class's own, never its base's
            undocumented.append(qualified)
        if inspect.isclass(obj):
            undocumented += [
                f"{qualified}.{name} (defined in {klass.__module__}.{klass.__qualname__})"
                for name, klass, value in public_members(obj)
                if not (value.__doc__ or "").strip()
            ]
    assert not undocumented, "no docstring:\n" + "\n".join(sorted(set(undocumented)))


def test_the_api_reference_lists_every_public_name() -> None:
    # docs/reference.md renders each name with mkdocstrings' `::: microweb.X`
    reference = (ROOT / "docs" / "reference.md").read_text()
    listed = re.findall(r"^::: ([\w.]+)\s*$", reference, flags=re.MULTILINE)
    assert sorted(listed) == sorted(set(listed)), "a name is listed twice"
    assert set(listed) == set(public_names()), (
        f"add to docs/reference.md (a `::: name` line each): "
        f"{sorted(set(public_names()) - set(listed))}; "
        f"listed there but not public: {sorted(set(listed) - set(public_names()))}"
    )
    assert "reference.md" in (ROOT / "mkdocs.yml").read_text()
