"""HTML templates with Jinja2: `Templates(directory).render(name, context)`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jinja2

from .responses import HTMLResponse

if TYPE_CHECKING:
    from .background import BackgroundTask
    from .requests import HTTPConnection

__all__ = ["TemplateError", "Templates"]


class TemplateError(Exception):
    """A template failed to load or render; the message names the template and line."""


class Templates:
    """Jinja2 templates from `directory`, with HTML autoescaping on.

    ``render(..., request=request)`` makes ``request`` and ``url_for`` (the
    request's: it keeps the root path) available in the template. Keyword
    options go to `jinja2.Environment`; `env` is the environment, for filters
    and globals of your own.
    """

    def __init__(self, directory: str | os.PathLike[str], **env_options: Any) -> None:
        options: dict[str, Any] = {
            "autoescape": jinja2.select_autoescape(default=True, default_for_string=True),
            "loader": jinja2.FileSystemLoader(os.fspath(directory)),
        }
        options.update(env_options)
        self.env = jinja2.Environment(**options)

    def get_template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(_where(exc.name or exc.filename or name, exc.lineno, exc)) from exc

    def render(
        self,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        request: HTTPConnection | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> HTMLResponse:
        """Render template `name` with `context` into an `HTMLResponse`.

        A template error raises `TemplateError` naming the template and the
        line: with ``App(debug=True)`` the 500 response shows it, otherwise it
        is only logged, as any other error.
        """
        values = dict(context or {})
        if request is not None:
            values.setdefault("request", request)
            values.setdefault("url_for", request.url_for)
        template = self.get_template(name)
        try:
            content = template.render(values)
        except Exception as exc:  # a template bug, whatever it raised
            raise TemplateError(_where(name, _template_line(exc, template), exc)) from exc
        return HTMLResponse(content, status=status, headers=headers, background=background)


def _template_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line an exception came from (Jinja2 rewrites the traceback
    so that the template's frames carry the template's file name and lines)."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return getattr(exc, "lineno", None) or line


def _where(name: str, line: int | None, exc: BaseException) -> str:
    at = f"{name}, line {line}" if line else name
    return f"template {at}: {exc}"
