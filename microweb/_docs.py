"""The routes an app serves of itself: its OpenAPI document and Swagger UI.

They live in a matcher of their own, which the app's matcher consults only
when none of the app's routes matches a request: a route of the app's own
that matches the path (a static mount at ``/`` included) takes precedence,
one on the same path or its other slash form (``/docs/``) replaces the
built-in route; they cost matched requests nothing, and they are not in
`App.routes`.

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package when it is
installed (``pip install microweb-framework[docs]``): the app serves them
itself, under ``{docs_url}/assets/``, so the page works with no network.
Without it the page loads them from a CDN, at a pinned version, checked by
their Subresource Integrity hashes.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import threading
from typing import TYPE_CHECKING, Any

from ._matching import Matcher, compile_template
from ._parsers import quote_path
from .exceptions import HTTPException
from .responses import HTMLResponse, JSONResponse, Response
from .routing import Route

if TYPE_CHECKING:
    from .applications import App
    from .requests import Request
    from .staticfiles import StaticFiles

__all__ = ["docs_matcher", "swagger_ui_directory"]

#: The Swagger UI the CDN serves when no package ships it (its files' sha384).
SWAGGER_UI_VERSION = "5.31.0"
CDN = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}/"
CDN_INTEGRITY = {
    "swagger-ui-bundle.js": (
        "sha384-cxafBeQ+zYROeFafGFxtFbnp1ICqeS9mG7+f0WWSHzhnrUvwg9Za5CCw6wgrHA7K"
    ),
    "swagger-ui.css": "sha384-KX9Rx9vM1AmUNAn07bPAiZhFD4C8jdNgG6f5MRNvR+EfAxs2PmMFtUUazui7ryZQ",
}
#: The package that ships Swagger UI's files, and where: vendor/swagger-ui-X.Y.Z/.
PACKAGE = "swagger_ui_bundle"
_VERSION_DIR = re.compile(r"swagger-ui-(\d+)\.(\d+)\.(\d+)")
_NEEDED = ("swagger-ui-bundle.js", "swagger-ui.css")


def swagger_ui_directory() -> str | None:
    """The directory of the newest Swagger UI 5 that an installed package ships
    (5 is the first to read OpenAPI 3.1), or None."""
    try:
        spec = importlib.util.find_spec(PACKAGE)  # found, not imported
    except (ImportError, ValueError):
        return None
    found: list[tuple[tuple[int, ...], str]] = []
    for base in (spec.submodule_search_locations or []) if spec is not None else []:
        vendor = os.path.join(base, "vendor")
        try:
            names = os.listdir(vendor)
        except OSError:
            continue
        for name in names:
            m = _VERSION_DIR.fullmatch(name)
            directory = os.path.join(vendor, name)
            if (
                m is not None
                and int(m.group(1)) >= 5
                and all(os.path.isfile(os.path.join(directory, f)) for f in _NEEDED)
            ):
                found.append((tuple(int(g) for g in m.groups()), directory))
    return max(found)[1] if found else None


class _Assets:
    """Swagger UI's files, looked for once (on the first request for the page)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._looked = False
        self._files: StaticFiles | None = None

    def files(self) -> StaticFiles | None:
        if not self._looked:
            with self._lock:
                if not self._looked:
                    from .staticfiles import StaticFiles

                    directory = swagger_ui_directory()
                    self._files = StaticFiles(directory) if directory is not None else None
                    self._looked = True
        return self._files


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}favicon-32x32.png">
<link rel="stylesheet" href="{assets}swagger-ui.css"{css_integrity}>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}swagger-ui-bundle.js"{js_integrity}></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {openapi_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}});
</script>
</body>
</html>
"""


def _integrity(name: str) -> str:
    return f' integrity="{CDN_INTEGRITY[name]}" crossorigin="anonymous"'


def docs_page(title: str, openapi_url: str, assets: str | None) -> str:
    """Swagger UI's page for the document at `openapi_url`; its files under the
    `assets` URL (ending in ``/``), or the CDN's when None."""
    local = assets is not None
    return _PAGE.format(
        title=html.escape(f"{title} - Swagger UI"),
        assets=html.escape(assets if local else CDN),  # type: ignore[arg-type]
        css_integrity="" if local else _integrity("swagger-ui.css"),
        js_integrity="" if local else _integrity("swagger-ui-bundle.js"),
        # in a script: no "</script>" can end it early
        openapi_url=json.dumps(openapi_url).replace("<", "\\u003c"),
    )


def docs_matcher(app: App, taken: set[str]) -> Matcher:
    """The app's own routes: `app.openapi_url`, and `app.docs_url` with its assets;
    without those whose path (less a trailing slash) is in `taken`."""
    matcher = Matcher()
    openapi_url = app.openapi_url
    assert openapi_url is not None

    def add(path: str, handler: Any, name: str) -> None:
        if path.rstrip("/") in taken:
            return
        segments = compile_template(path, app._converters)
        matcher.add(Route(path, handler, methods=("GET",), name=name, segments=segments))

    def openapi(request: Request) -> Response:
        doc = app.openapi()
        if request.root_path and "servers" not in doc:
            # mounted under a prefix: "Try it out" must call the API there
            doc = {**doc, "servers": [{"url": request.root_path}]}
        return JSONResponse(doc)

    add(openapi_url, openapi, "openapi")
    docs_url = app.docs_url
    if docs_url is None:
        return matcher
    assets = _Assets()
    assets_path = docs_url.rstrip("/") + "/assets/"

    def swagger_ui(request: Request) -> Response:
        root = quote_path(request.root_path)
        local = assets.files() is not None
        page = docs_page(
            app.title,
            root + quote_path(openapi_url),
            root + quote_path(assets_path) if local else None,
        )
        return HTMLResponse(page)

    def swagger_ui_asset(request: Request, path: str) -> Response:
        files = assets.files()
        if files is None:
            raise HTTPException(404)
        return files.serve(request, path)

    add(docs_url, swagger_ui, "swagger_ui")
    add(assets_path + "{path:path}", swagger_ui_asset, "swagger_ui_asset")
    return matcher
