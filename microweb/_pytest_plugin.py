"""The ``microweb`` pytest plugin: a `client` fixture for both protocols.

Define an ``app`` fixture returning your `App`; every test that asks for
``client`` then runs twice, once through ``app.wsgi`` and once through
``app.asgi``, with a started `TestClient`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(params=["wsgi", "asgi"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A `microweb.testing.TestClient` for the ``app`` fixture, once per protocol."""
    from microweb.testing import TestClient

    app = request.getfixturevalue("app")
    with TestClient(app, protocol=request.param) as test_client:
        yield test_client
