"""Shared fixtures: every behavioural test runs under both protocols.

`protocol` is parametrized over ``wsgi`` and ``asgi``; `make_client` builds a
`TestClient` for an app under that protocol (the WSGI side wrapped in
``wsgiref.validate.validator``) and closes it after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
