"""Templates: autoescaping, request and url_for in templates, errors by name and line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from microweb import App, Request
from microweb.templating import TemplateError, Templates

from .conftest import MakeClient


@pytest.fixture
def templates(tmp_path: Path) -> Templates:
    (tmp_path / "page.html").write_text(
        "<p>{{ name }}</p><a href='{{ url_for(\"item\", n=3) }}'>{{ request.path }}</a>"
    )
    (tmp_path / "plain.html").write_text("<b>{{ text }}</b>")
    (tmp_path / "broken.html").write_text("<p>\n{{ 1 / zero }}\n</p>")
    (tmp_path / "syntax.html").write_text("line one\n{% if %}\n")
    return Templates(tmp_path)


def _app(templates: Templates, debug: bool = False) -> App:
    app = App(debug=debug)

    @app.get("/items/{n:int}")
    def item(request: Request, n: int) -> object:
        return templates.render("page.html", {"name": "<i>x</i>"}, request=request)

    @app.get("/plain")
    async def plain() -> object:
        return templates.render("plain.html", {"text": "a & b"}, status=201, headers={"X-T": "1"})

    @app.get("/broken")
    def broken(request: Request) -> object:
        return templates.render("broken.html", {"zero": 0}, request=request)

    @app.get("/syntax")
    def syntax(request: Request) -> object:
        return templates.render("syntax.html", request=request)

    return app


def test_render_escapes_and_sees_the_request(make_client: MakeClient, templates: Templates) -> None:
    client = make_client(_app(templates), root_path="/site")
    r = client.get("/items/1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text == "<p>&lt;i&gt;x&lt;/i&gt;</p><a href='/site/items/3'>/items/1</a>"
    r = client.get("/plain")
    assert (r.status_code, r.text, r.headers["x-t"]) == (201, "<b>a &amp; b</b>", "1")


def test_template_errors_name_the_template_and_line_in_debug_mode(
    make_client: MakeClient, templates: Templates
) -> None:
    client = make_client(_app(templates, debug=True))
    error = client.get("/broken").json()["error"]
    assert "broken.html, line 2" in error and "division by zero" in error
    error = client.get("/syntax").json()["error"]
    assert "syntax.html, line 2" in error


def test_template_errors_stay_private_without_debug(
    make_client: MakeClient, templates: Templates, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(_app(templates))
    with caplog.at_level(logging.ERROR, logger="microweb"):
        r = client.get("/broken")
    assert (r.status_code, r.json()) == (500, {"detail": "Internal Server Error"})
    logged = [rec.exc_info[1] for rec in caplog.records if rec.exc_info]
    assert isinstance(logged[0], TemplateError)
    assert "broken.html, line 2" in str(logged[0])


def test_environment_options(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("{{ x }}")
    templates = Templates(tmp_path, autoescape=False)
    templates.env.filters["shout"] = str.upper
    assert templates.render("t.txt", {"x": "<b>"}).body == b"<b>"
