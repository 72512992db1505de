"""The server-rendered example site (templates, sessions, static files), both protocols."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from microweb.testing import TestClient

from .conftest import MakeClient


@pytest.fixture
def client(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("MICROWEB_SECRET", "test secret")
    module: Any = importlib.reload(importlib.import_module("examples.website.app"))
    return make_client(module.app)


def _login(client: TestClient, user: str, password: str, next_path: str = "/") -> Any:
    return client.post(f"/login?next={next_path}", data={"user": user, "password": password})


def test_home_for_a_stranger(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "<h1>Hello, stranger.</h1>" in r.text
    assert 'href="/static/style.css"' in r.text
    assert 'href="/login"' in r.text


def test_static_stylesheet(client: TestClient) -> None:
    r = client.get("/static/style.css")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/css; charset=utf-8"
    assert "font-family" in r.text


def test_login_flow(client: TestClient) -> None:
    r = _login(client, "ada", "wrong")
    assert r.status_code == 401
    assert "Wrong user name or password." in r.text
    assert "set-cookie" not in r.headers
    r = _login(client, "ada", "lovelace")
    assert (r.status_code, r.headers["location"]) == (303, "/")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    session = cookie.split(";")[0]
    home = client.get("/", headers={"Cookie": session})
    assert "<h1>Hello, ada!</h1>" in home.text
    assert "Cookie" in home.headers["vary"]
    private = client.get("/private", headers={"Cookie": session})
    assert "Only ada sees this." in private.text
    out = client.post("/logout", headers={"Cookie": session})
    assert out.status_code == 303
    assert out.headers["set-cookie"].startswith("session=; Max-Age=0")


def test_private_page_needs_a_login(client: TestClient) -> None:
    r = client.get("/private")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=/private")
    r = _login(client, "ada", "lovelace", next_path="/private")
    assert r.headers["location"] == "/private"


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\evil.example"])
def test_login_never_redirects_to_another_site(client: TestClient, target: str) -> None:
    r = _login(client, "ada", "lovelace", next_path=target)
    assert r.headers["location"] == "/"


def test_templates_escape_what_users_type(client: TestClient) -> None:
    r = _login(client, "<script>alert(1)</script>", "x")
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
