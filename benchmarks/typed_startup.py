"""Startup of a typed API: 500 typed routes over 200 models.

Registers the routes in a fresh process (a third GET with query, path and
header parameters returning ``list[Model]``, a third GET returning one model,
a third POST with a model body), several times, and prints the best and the
median wall-clock time of registration, of the first request to every route
(msgspec builds a type's decoder lazily, on first use) and, where the app has
it, of ``app.openapi()``.

    .venv/bin/python benchmarks/typed_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

N_MODELS = 200
N_ROUTES = 500

# One round, run in a child process of its own: imports and every cache cold.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from typing import Annotated
import msgspec
from microweb import App, Header, Query
from microweb.testing import TestClient
t_import = time.perf_counter() - t0

N_MODELS, N_ROUTES = int(sys.argv[1]), int(sys.argv[2])
models = []
for i in range(N_MODELS):
    fields = [
        ("id", int),
        ("name", Annotated[str, msgspec.Meta(min_length=1, max_length=100)]),
        ("price", Annotated[float, msgspec.Meta(gt=0)]),
        ("tags", list[str], msgspec.field(default_factory=list)),
        ("note", str | None, None),
    ]
    if models:  # some nesting: each model may hold the previous one
        fields.append(("parent", models[-1] | None, None))
    models.append(msgspec.defstruct(f"Model{i}", fields, kw_only=True))

Limit = Annotated[int, Query(ge=1, le=100)]
Token = Annotated[str | None, Header()]


def handlers(i, Model):
    def list_items(item_id: int, q: str | None = None, limit: Limit = 10,
                   tag: list[str] = [], x_token: Token = None) -> list[Model]:
        return [Model(id=item_id, name="x", price=1.0, tags=tag)]

    def get_item(item_id: int, x_token: Token = None) -> Model:
        return Model(id=item_id, name="x", price=1.0)

    def create_item(item: Model) -> Model:
        return item

    return [("GET", f"/a{i}/{{item_id:int}}", list_items),
            ("GET", f"/b{i}/{{item_id:int}}", get_item),
            ("POST", f"/c{i}", create_item)]


routes = []
for i in range(N_ROUTES):
    routes.append(handlers(i, models[i % N_MODELS])[i % 3])

app = App()
t0 = time.perf_counter()
for i, (method, path, fn) in enumerate(routes):
    app.route(path, methods=[method], name=f"r{i}")(fn)
t_register = time.perf_counter() - t0

client = TestClient(app, protocol="wsgi")
t0 = time.perf_counter()
for method, path, fn in routes:
    url = path.replace("{item_id:int}", "7")
    if method == "GET":
        r = client.get(url + "?limit=5&tag=a", headers={"x-token": "t"})
    else:
        r = client.post(url, json={"id": 1, "name": "n", "price": 2.5})
    assert r.status_code == 200, (url, r.status_code, r.text)
t_first = time.perf_counter() - t0
client.close()

t_openapi = None
if hasattr(app, "openapi"):
    t0 = time.perf_counter()
    doc = app.openapi()
    t_openapi = time.perf_counter() - t0
    assert len(doc["paths"]) == N_ROUTES

print(json.dumps({"import": t_import, "register": t_register, "first_requests": t_first,
                  "openapi": t_openapi}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    runs = []
    for _ in range(args.rounds):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(N_MODELS), str(N_ROUTES)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    print(f"{N_ROUTES} typed routes over {N_MODELS} models, {args.rounds} fresh processes")
    print(f"{'':28} {'best':>9} {'median':>9}")
    for key, label in [
        ("import", "import microweb"),
        ("register", "register the 500 routes"),
        ("first_requests", "first request to each route"),
        ("openapi", "app.openapi()"),
    ]:
        values = [r[key] for r in runs if r[key] is not None]
        if values:
            best, median = min(values), statistics.median(values)
            print(f"{label:28} {best * 1000:7.0f}ms {median * 1000:7.0f}ms")


if __name__ == "__main__":
    main()
