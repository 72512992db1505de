"""Shared fixtures: every behavioural test runs under both protocols.

`protocol` is parametrized over ``wsgi`` and ``asgi``; `make_client` builds a
`TestClient` for an app under that protocol (the WSGI side wrapped in
``wsgiref.validate.validator``) and closes it after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from microweb import App
from microweb.testing import TestClient

MakeClient = Callable[..., TestClient]


@pytest.fixture(params=["wsgi", "asgi"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(protocol: str) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(app: App, **kwargs: Any) -> TestClient:
        client = TestClient(app, protocol=protocol, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=["lent", "direct", "general"])
def hop_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How a thread gets a coroutine run on a loop (`_concurrency.call_on_loop`):
    the shared loop, idle, is lent to the thread, which runs it ("lent", the
    default under WSGI); or the thread makes the task itself and wakes the
    loop (asyncio's loops: "direct"); or a callback on the loop makes it
    (uvloop, debug mode, a task factory: "general")."""
    from microweb import _concurrency, _shared_loop

    if request.param != "lent":
        monkeypatch.setattr(_shared_loop, "LEND", False)
    if request.param == "general":
        monkeypatch.setattr(_concurrency, "_direct", lambda loop: False)
    return str(request.param)


_SCREENSHOTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the browser tests save their screenshots in (named at the end of the run)."""
    directory = tmp_path_factory.mktemp("screenshots")
    request.config.stash[_SCREENSHOTS] = directory
    return directory


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    directory = config.stash.get(_SCREENSHOTS, None)
    if directory is not None:
        shots = sorted(path.name for path in directory.glob("*.png"))
        terminalreporter.write_line(f"{len(shots)} screenshots of the example pages in {directory}")
