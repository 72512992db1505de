"""The smallest microweb app: a text route, a JSON route, an async handler.

One module, either kind of server (from the project's root)::

    uvicorn examples.hello:app.asgi
    waitress-serve --listen=127.0.0.1:8000 examples.hello:app.wsgi
    gunicorn examples.hello:wsgi
    python -m examples.hello             # app.run(): uvicorn, for development

Then::

    curl localhost:8000/                 # Hello, World!
    curl localhost:8000/users/42         # {"id":42,"name":"user 42"}
    curl localhost:8000/sleep/50         # {"slept_ms":50}
"""

from __future__ import annotations

import asyncio

from microweb import App, PlainTextResponse

app = App()


@app.get("/")
def hello() -> PlainTextResponse:
    return PlainTextResponse("Hello, World!")


@app.get("/users/{user_id:int}")
def show_user(user_id: int) -> dict[str, object]:
    # a dict becomes JSON; user_id is already an int (/users/abc is a 404)
    return {"id": user_id, "name": f"user {user_id}"}


@app.get("/sleep/{ms:int}")
async def sleep(ms: int) -> dict[str, int]:
    # async def and def handlers mix freely, under both entry points
    ms = min(ms, 1000)
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


# gunicorn refuses attribute paths (mod:app.wsgi), so: gunicorn examples.hello:wsgi
wsgi = app.wsgi

if __name__ == "__main__":
    app.run()
