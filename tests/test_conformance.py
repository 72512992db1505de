"""The todo example against its own OpenAPI document, by schemathesis, under both protocols.

A bounded run, in process and without a network: schemathesis loads
``/openapi.json`` from `app.wsgi` (through werkzeug's test client) or from
`app.asgi` (through its own ASGI client), then sends each operation valid and
invalid requests (fixed seed, derandomized, 50 examples per operation in its
fuzzing phase, plus its examples and coverage phases; no example database on
disk) and checks every answer: no 5xx, no status the document does not list,
no body its schema refuses, and invalid data refused with a 4xx.

The WSGI side is not behind ``wsgiref.validate`` here: werkzeug's client does
not close the response iterators, and schemathesis sends methods the validator
does not know (``QUERY``); the tests in ``test_examples_todo_api.py`` run this
app through the validator.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from examples import todo_api

CONFIG = {
    "seed": 20250610,
    "generation": {
        "mode": "all",  # valid and invalid data: the 400, 404, 415 and 422 answers too
        "max-examples": 50,
        "deterministic": True,
        "database": "none",
    },
    "phases": {"stateful": {"enabled": False}},
}

CHECKS = [
    not_a_server_error,  # no 5xx
    status_code_conformance,  # every status is one the operation lists
    response_schema_conformance,  # every body fits the schema of its status
    content_type_conformance,
    negative_data_rejection,  # invalid data gets a 4xx
    positive_data_acceptance,  # valid data gets no 4xx but 404
    unsupported_method,  # another method gets a 405 ...
    allow_header_conformance,  # ... with an Allow header
]


def load(protocol: str) -> Any:
    """The document ``/openapi.json`` serves, from a new todo app under `protocol`;
    schemathesis calls that app."""
    app = todo_api.create_app()
    config = schemathesis.Config.from_dict(CONFIG)
    if protocol == "asgi":
        return schemathesis.openapi.from_asgi("/openapi.json", app.asgi, config=config)
    return schemathesis.openapi.from_wsgi("/openapi.json", app.wsgi, config=config)


@schemathesis.pytest.parametrize(wsgi=load("wsgi"), asgi=load("asgi"))
def test_the_todo_api_keeps_to_its_document(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
