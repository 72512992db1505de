"""An app that tests/test_mistakes.py serves the wrong way on purpose.

``uvicorn tests.apps.mistakes_app:app`` (the App itself),
``uvicorn tests.apps.mistakes_app:app.wsgi`` (the WSGI entry point under an
ASGI server), ``gunicorn tests.apps.mistakes_app:app``, and so on: each must
say what to serve instead.
"""

from __future__ import annotations

from microweb import App

app = App()
wsgi = app.wsgi
asgi = app.asgi


@app.get("/")
def index() -> str:
    return "served"
