"""File uploads: a form, uploads saved under server-chosen names, a listing, downloads.

    uvicorn examples.upload:app.asgi
    waitress-serve --listen=127.0.0.1:8000 examples.upload:app.wsgi
    MICROWEB_UPLOAD_DIR=/srv/uploads gunicorn examples.upload:wsgi --workers 4

    open http://localhost:8000/                                  # the form
    curl -i -F note='Q3 figures' -F file=@report.pdf localhost:8000/upload
                                                                 # 303, Location: /uploads
    curl localhost:8000/uploads                                  # the listing (HTML)
    curl localhost:8000/api/uploads                              # the same, as JSON
    curl -OJ localhost:8000/uploads/<id>                         # saved as report.pdf

The client's filename is data, never a path: each upload is stored as
``<id>.bin`` with a random 32-hex-digit id chosen here, and the original name,
type and note go to ``<id>.json`` beside it. The download route only takes
ids of that shape (a converter: anything else is a 404 before the handler
runs) and sends the file back with `FileResponse`, whose ``filename=``
builds a safe ``Content-Disposition`` from the original name.

The uploads go to the directory named by ``MICROWEB_UPLOAD_DIR``, or else to a
new temporary directory made at startup (one per process: give several
workers a shared directory through the variable). The handlers are ``def``:
saving a big file blocks, and a ``def`` handler runs in a worker thread under
ASGI, never on the event loop.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import tempfile
import time
from typing import Any

from microweb import App, FileResponse, HTMLResponse, RedirectResponse, Request, UploadFile, abort

#: The environment variable naming the uploads directory.
UPLOAD_DIR_ENV = "MICROWEB_UPLOAD_DIR"
#: The largest request body (the file and the form around it): larger gets a 413.
MAX_UPLOAD_SIZE = 64 * 1024 * 1024
#: What an upload id looks like: ``secrets.token_hex(16)``.
ID_REGEX = r"[0-9a-f]{32}"

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
{content}
</body>
</html>
"""

FORM = """<form action="{action}" method="post" enctype="multipart/form-data">
  <p><label>Note <input type="text" name="note" maxlength="200"></label></p>
  <p><label>File <input type="file" name="file" required></label></p>
  <p><button type="submit">Upload</button></p>
</form>
<p><a href="{listing}">All uploads</a></p>
"""


def upload_dir(request: Request) -> str:
    directory: str = request.app.state.upload_dir
    return directory


def _paths(directory: str, upload_id: str) -> tuple[str, str]:
    """The data file and the metadata file of an upload."""
    return os.path.join(directory, f"{upload_id}.bin"), os.path.join(directory, f"{upload_id}.json")


def read_uploads(directory: str) -> list[dict[str, Any]]:
    """The metadata of every complete upload, newest first."""
    uploads = []
    for entry in os.scandir(directory):
        if entry.name.endswith(".json"):
            with open(entry.path, encoding="utf-8") as f:
                uploads.append(json.load(f))
    uploads.sort(key=lambda meta: meta["uploaded"], reverse=True)
    return uploads


def form_page(request: Request) -> HTMLResponse:
    content = FORM.format(action=request.url_for("upload"), listing=request.url_for("uploads"))
    return HTMLResponse(PAGE.format(title="Upload a file", content=content))


def upload(request: Request) -> RedirectResponse:
    form = request.form()  # a 400 or 413 on a malformed or oversized form
    file = form.get("file")
    # a browser sends filename="" and an empty part when no file was chosen
    if not isinstance(file, UploadFile) or not file.filename:
        abort(400, "Choose a file to upload")
    note = form.get("note", "")
    if not isinstance(note, str) or len(note) > 200:
        abort(400, "The note is text of at most 200 characters")
    upload_id = secrets.token_hex(16)  # the name on disk: chosen here, never by the client
    data_path, meta_path = _paths(upload_dir(request), upload_id)
    try:
        size = file.save(data_path)  # copied in chunks from the spooled upload
    except BaseException:
        if os.path.exists(data_path):
            os.remove(data_path)  # a disk error: leave no orphan behind
        raise
    meta = {
        "id": upload_id,
        "filename": file.filename,  # kept as data, exactly as sent
        "content_type": file.content_type,
        "size": size,
        "note": note,
        "uploaded": time.time(),
    }
    # the metadata appears last, and whole: a listing never shows a partial upload
    partial = meta_path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(meta, f)
    os.replace(partial, meta_path)
    # POST/redirect/GET: a reload of the listing never uploads again
    return RedirectResponse(request.url_for("uploads"), status=303)


def uploads(request: Request) -> HTMLResponse:
    rows = []
    for meta in read_uploads(upload_dir(request)):
        href = request.url_for("download", upload_id=meta["id"])
        rows.append(
            f'<li><a href="{html.escape(href)}">{html.escape(meta["filename"])}</a>'
            f" ({meta['size']} bytes) {html.escape(meta['note'])}</li>"
        )
    listing = "<ul>\n" + "\n".join(rows) + "\n</ul>" if rows else "<p>No uploads yet.</p>"
    content = listing + f'\n<p><a href="{html.escape(request.url_for("form_page"))}">Upload</a></p>'
    return HTMLResponse(PAGE.format(title="Uploads", content=content))


def api_uploads(request: Request) -> list[dict[str, Any]]:
    return read_uploads(upload_dir(request))


def download(request: Request, upload_id: str) -> FileResponse:
    data_path, meta_path = _paths(upload_dir(request), upload_id)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        abort(404, "No such upload")
    # Content-Disposition: attachment, with an ASCII fallback and RFC 5987 filename*;
    # nosniff: a browser never runs an uploaded page as this site's own
    return FileResponse(
        data_path, filename=meta["filename"], headers={"X-Content-Type-Options": "nosniff"}
    )


def create_app(directory: str | os.PathLike[str] | None = None) -> App:
    """An app storing uploads in `directory` (else $MICROWEB_UPLOAD_DIR, else a temp dir)."""
    app = App(max_body_size=MAX_UPLOAD_SIZE, max_form_files=1, max_form_fields=10)
    configured = directory if directory is not None else os.environ.get(UPLOAD_DIR_ENV)
    app.state.upload_dir = os.fspath(configured) if configured else None

    @app.on_startup
    def make_upload_dir() -> None:
        if app.state.upload_dir is None:
            app.state.upload_dir = tempfile.mkdtemp(prefix="microweb-uploads-")
        else:
            os.makedirs(app.state.upload_dir, exist_ok=True)

    app.add_converter("upload_id", ID_REGEX)
    app.get("/")(form_page)
    app.post("/upload")(upload)
    app.get("/uploads")(uploads)
    app.get("/api/uploads")(api_uploads)
    app.get("/uploads/{upload_id:upload_id}")(download)
    return app


app = create_app()
# gunicorn refuses attribute paths (mod:app.wsgi), so: gunicorn examples.upload:wsgi
wsgi = app.wsgi
