"""A small JSON CRUD API over an in-memory store: todos under ``/api``.

    uvicorn examples.crud:app.asgi
    waitress-serve --listen=127.0.0.1:8000 examples.crud:app.wsgi
    gunicorn examples.crud:wsgi          # one worker: the store lives in the process

    curl -i localhost:8000/api/todos -H 'content-type: application/json' \\
         -d '{"title": "write the docs"}'                          # 201, Location: /api/todos/1
    curl localhost:8000/api/todos                                  # [{"id":1,...}]
    curl localhost:8000/api/todos?done=false                       # filtered
    curl -X PUT localhost:8000/api/todos/1 -H 'content-type: application/json' \\
         -d '{"title": "write the docs", "done": true}'            # 200
    curl -i -X DELETE localhost:8000/api/todos/1                   # 204
    curl -i localhost:8000/api/todos/1                             # 404

The routes live on a `Router` (included under ``/api``); a ``before_request``
hook on it refuses bodies that are not JSON (415); invalid fields raise
`ValidationError`, which an exception handler turns into a 422. The store sits
on ``app.state`` and `create_app` builds a fresh app, so tests get their own.
"""

from __future__ import annotations

import threading
from typing import Any

from microweb import App, Request, Router, abort

api = Router()


class TodoStore:
    """Todos by id. Handlers run in several threads at once, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._todos: dict[int, dict[str, Any]] = {}
        self._next_id = 1

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(todo) for todo in self._todos.values()]

    def get(self, todo_id: int) -> dict[str, Any] | None:
        with self._lock:
            todo = self._todos.get(todo_id)
            return dict(todo) if todo is not None else None

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            todo = {"id": self._next_id, **fields}
            self._todos[self._next_id] = todo
            self._next_id += 1
            return dict(todo)

    def replace(self, todo_id: int, fields: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if todo_id not in self._todos:
                return None
            todo = self._todos[todo_id] = {"id": todo_id, **fields}
            return dict(todo)

    def delete(self, todo_id: int) -> bool:
        with self._lock:
            return self._todos.pop(todo_id, None) is not None


class ValidationError(Exception):
    """The request's JSON does not describe a todo; `errors` maps field to message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def todo_fields(data: Any) -> dict[str, Any]:
    """The fields of a todo from a request's JSON, or raise ValidationError."""
    if not isinstance(data, dict):
        raise ValidationError({"body": "expected a JSON object"})
    errors: dict[str, str] = {}
    title = data.get("title")
    if isinstance(title, str) and title.strip():
        title = title.strip()
    else:
        errors["title"] = "required, a non-empty string"
    done = data.get("done", False)
    if not isinstance(done, bool):
        errors["done"] = "must be true or false"
    unknown = sorted(set(data) - {"title", "done"})
    if unknown:
        errors["body"] = f"unknown field(s): {', '.join(unknown)}"
    if errors:
        raise ValidationError(errors)
    return {"title": title, "done": done}


def store(request: Request) -> TodoStore:
    todos: TodoStore = request.app.state.todos
    return todos


@api.before_request
def require_json(request: Request) -> None:
    """Refuse a body that is not JSON before any handler parses it."""
    if request.method in ("POST", "PUT", "PATCH"):
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            abort(415, "Send JSON, with Content-Type: application/json")


@api.get("/todos")
def list_todos(request: Request) -> list[dict[str, Any]]:
    todos = store(request).all()
    done = request.query_params.get("done")
    if done is not None:
        if done not in ("true", "false"):
            abort(400, "done must be true or false")
        todos = [todo for todo in todos if todo["done"] == (done == "true")]
    return todos


@api.post("/todos")
def create_todo(request: Request) -> tuple[dict[str, Any], int, dict[str, str]]:
    todo = store(request).create(todo_fields(request.json()))
    location = request.url_for("get_todo", todo_id=todo["id"])
    return todo, 201, {"Location": location}


@api.get("/todos/{todo_id:int}")
def get_todo(request: Request, todo_id: int) -> dict[str, Any]:
    todo = store(request).get(todo_id)
    if todo is None:
        abort(404, f"No todo with id {todo_id}")
    return todo


@api.put("/todos/{todo_id:int}")
def update_todo(request: Request, todo_id: int) -> dict[str, Any]:
    todo = store(request).replace(todo_id, todo_fields(request.json()))
    if todo is None:
        abort(404, f"No todo with id {todo_id}")
    return todo


@api.delete("/todos/{todo_id:int}")
def delete_todo(request: Request, todo_id: int) -> None:
    if not store(request).delete(todo_id):
        abort(404, f"No todo with id {todo_id}")
    # None: 204 No Content


def validation_failed(request: Request, exc: ValidationError) -> tuple[dict[str, Any], int]:
    return {"detail": "Invalid todo", "errors": exc.errors}, 422


def create_app() -> App:
    """A new app with an empty store (one per test, or one per process)."""
    app = App()
    app.state.todos = TodoStore()
    app.include_router(api, prefix="/api")
    app.exception_handler(ValidationError)(validation_failed)
    return app


app = create_app()
# gunicorn refuses attribute paths (mod:app.wsgi), so: gunicorn examples.crud:wsgi
wsgi = app.wsgi
