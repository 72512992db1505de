"""A typed todo API: msgspec models in, models out, and its OpenAPI docs at ``/docs``.

    uvicorn examples.todo_api:app.asgi
    waitress-serve --listen=127.0.0.1:8000 examples.todo_api:app.wsgi
    gunicorn examples.todo_api:wsgi      # one worker: the store lives in the process

    open http://127.0.0.1:8000/docs                                  # Swagger UI: try it out
    curl localhost:8000/openapi.json                                 # the OpenAPI 3.1 document
    curl -i localhost:8000/todos -H 'content-type: application/json' \\
         -d '{"title": "write the docs", "tags": ["docs"], "due": "2030-01-31"}'   # 201
    curl 'localhost:8000/todos?tag=docs&done=false&limit=10'          # filtered
    curl -X PATCH localhost:8000/todos/1 -H 'content-type: application/json' \\
         -d '{"done": true}'                                          # 200
    curl -i -X DELETE localhost:8000/todos/1                          # 204
    curl -i localhost:8000/todos/1                                    # 404
    curl -i localhost:8000/todos -H 'content-type: application/json' -d '{"title": ""}'  # 422
    curl -i localhost:8000/todos -d 'title=x'                         # 415: not JSON

Nothing here reads the request by hand: the handlers' annotations say what
each route takes (query parameters, a path parameter, a JSON body) and
returns; microweb converts and validates them (a 422 lists what is wrong) and
describes the API in the document behind ``/docs``. The store sits on
``app.state`` and `create_app` builds a fresh app, so tests get their own.
"""

from __future__ import annotations

import datetime
import threading
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from microweb import App, Query, Request, Router, abort

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=30)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=10)]
Priority = Literal["low", "normal", "high"]


class TodoIn(msgspec.Struct):
    """A todo to create."""

    title: Title
    due: datetime.date | None = None
    tags: Tags = []
    priority: Priority = "normal"


class TodoOut(TodoIn, kw_only=True):
    """A stored todo."""

    id: int
    done: bool = False


class TodoPatch(msgspec.Struct):
    """The fields to change; those left out stay as they are (``"due": null`` clears it)."""

    title: Title | UnsetType = UNSET
    due: datetime.date | UnsetType | None = UNSET
    tags: Tags | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    done: bool | UnsetType = UNSET


class Problem(msgspec.Struct):
    """An error: what went wrong."""

    detail: str


NOT_FOUND = {404: {"model": Problem, "description": "No todo with this id"}}


class TodoStore:
    """Todos by id. Handlers run in several threads at once, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._todos: dict[int, TodoOut] = {}
        self._next_id = 1

    def all(self) -> list[TodoOut]:
        with self._lock:
            return list(self._todos.values())

    def get(self, todo_id: int) -> TodoOut | None:
        with self._lock:
            return self._todos.get(todo_id)

    def create(self, todo: TodoIn) -> TodoOut:
        with self._lock:
            stored = TodoOut(**msgspec.structs.asdict(todo), id=self._next_id)
            self._todos[stored.id] = stored
            self._next_id += 1
            return stored

    def update(self, todo_id: int, patch: TodoPatch) -> TodoOut | None:
        changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not UNSET}
        with self._lock:
            todo = self._todos.get(todo_id)
            if todo is None:
                return None
            todo = self._todos[todo_id] = msgspec.structs.replace(todo, **changes)
            return todo

    def delete(self, todo_id: int) -> bool:
        with self._lock:
            return self._todos.pop(todo_id, None) is not None


def store(request: Request) -> TodoStore:
    todos: TodoStore = request.app.state.todos
    return todos


api = Router()


@api.get("/todos", tags=["todos"], summary="List todos")
def list_todos(
    request: Request,
    q: Annotated[str | None, Query(max_length=200, description="Text in the title")] = None,
    tag: Annotated[list[str], Query(description="Only todos with every one of these")] = [],  # noqa: B006 - copied per request
    done: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[TodoOut]:
    """The todos, oldest first, filtered and paged."""
    todos = store(request).all()
    if q is not None:
        todos = [t for t in todos if q.casefold() in t.title.casefold()]
    if tag:
        todos = [t for t in todos if all(name in t.tags for name in tag)]
    if done is not None:
        todos = [t for t in todos if t.done == done]
    return todos[offset : offset + limit]


@api.post("/todos", status=201, tags=["todos"], summary="Create a todo")
def create_todo(request: Request, todo: TodoIn) -> TodoOut:
    """A new todo, not done yet."""
    return store(request).create(todo)


@api.get("/todos/{todo_id:int}", tags=["todos"], summary="Get a todo", responses=NOT_FOUND)
def get_todo(request: Request, todo_id: int) -> TodoOut:
    todo = store(request).get(todo_id)
    if todo is None:
        abort(404, f"No todo with id {todo_id}")
    return todo


@api.patch("/todos/{todo_id:int}", tags=["todos"], summary="Change a todo", responses=NOT_FOUND)
async def update_todo(request: Request, todo_id: int, patch: TodoPatch) -> TodoOut:
    """Change the fields the body names; the others stay as they are."""
    todo = store(request).update(todo_id, patch)
    if todo is None:
        abort(404, f"No todo with id {todo_id}")
    return todo


@api.delete("/todos/{todo_id:int}", tags=["todos"], summary="Delete a todo", responses=NOT_FOUND)
def delete_todo(request: Request, todo_id: int) -> None:
    if not store(request).delete(todo_id):
        abort(404, f"No todo with id {todo_id}")
    # None: 204 No Content


def create_app() -> App:
    """A new app with an empty store (one per test, or one per process)."""
    app = App(title="Todo API", version="1.0.0", description="Todos, typed with msgspec.")
    app.state.todos = TodoStore()
    app.include_router(api)
    return app


app = create_app()
# gunicorn refuses attribute paths (mod:app.wsgi), so: gunicorn examples.todo_api:wsgi
wsgi = app.wsgi
