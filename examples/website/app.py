"""A small server-rendered site: templates, a login form with sessions, static files.

    uvicorn examples.website.app:app.asgi
    waitress-serve --listen=127.0.0.1:8000 examples.website.app:app.wsgi

Log in as ada / lovelace. Set MICROWEB_SECRET to keep sessions across
restarts (and across worker processes: every worker must share the key).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from microweb import App, RedirectResponse, Request, Response
from microweb.middleware import Sessions
from microweb.templating import Templates

HERE = Path(__file__).parent
#: user -> sha256 of the password (a demo: use a real password hash, e.g. argon2)
USERS = {"ada": hashlib.sha256(b"lovelace").hexdigest()}

secret = os.environ.get("MICROWEB_SECRET")
if not secret:
    secret = secrets.token_urlsafe(32)
    logging.getLogger(__name__).warning("MICROWEB_SECRET is not set: sessions end on restart")

app = App()
app.add_middleware(Sessions(secret_key=secret))
app.static("/static", HERE.parent / "static")  # style.css, shared by the examples
templates = Templates(HERE / "templates")


def check_password(user: str, password: str) -> bool:
    expected = USERS.get(user)
    given = hashlib.sha256(password.encode("utf-8")).hexdigest()
    return expected is not None and hmac.compare_digest(expected, given)


@app.get("/")
def home(request: Request) -> Response:
    return templates.render("index.html", {"user": request.session.get("user")}, request=request)


@app.get("/login")
def login_form(request: Request) -> Response:
    return templates.render("login.html", {"next": _next(request)}, request=request)


@app.post("/login")
def login(request: Request) -> Response:
    form = request.form()
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    if not check_password(user, password):
        context = {"error": "Wrong user name or password.", "user": user, "next": _next(request)}
        return templates.render("login.html", context, request=request, status=401)
    request.session["user"] = user
    return RedirectResponse(_next(request), status=303)


@app.post("/logout")
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse(request.url_for("home"), status=303)


@app.get("/private")
def private(request: Request) -> Response:
    user = request.session.get("user")
    if user is None:
        return RedirectResponse(request.url_for("login_form") + "?next=/private", status=303)
    return templates.render("private.html", {"user": user}, request=request)


def _next(request: Request) -> str:
    """Where to go after logging in: a local path only (never another site)."""
    target = str(request.query_params.get("next") or "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


wsgi = app.wsgi
