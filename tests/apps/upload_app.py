"""The app that tests/test_uploads_memory.py and benchmarks/uploads.py run under real servers.

Big multipart uploads to a ``def`` and an ``async def`` handler, each answering
the file part's size and SHA-256 (read back in chunks from the `UploadFile`),
and a big file download (`FileResponse` of the file named by the
``MICROWEB_BIG_FILE`` environment variable). Served as
``uvicorn tests.apps.upload_app:app.asgi``, ``waitress-serve
tests.apps.upload_app:app.wsgi`` and ``gunicorn tests.apps.upload_app:wsgi``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from microweb import App, FileResponse, Request, UploadFile

#: Room for the 1 GiB uploads of the benchmark (and their multipart framing).
MAX_BODY_SIZE = 2 * 1024 * 1024 * 1024
#: The environment variable naming the file `/download` serves.
BIG_FILE_ENV = "MICROWEB_BIG_FILE"
READ_CHUNK = 1024 * 1024

app = App(max_body_size=MAX_BODY_SIZE)
wsgi = app.wsgi


@app.get("/pid")
def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


def _describe(kind: str, form: Any) -> dict[str, Any]:
    upload = form["file"]
    assert isinstance(upload, UploadFile)
    sha, size = hashlib.sha256(), 0
    while chunk := upload.read(READ_CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return {
        "kind": kind,
        "note": form.get("note"),
        "filename": upload.filename,
        "declared_size": upload.size,
        "size": size,
        "sha256": sha.hexdigest(),
    }


@app.post("/upload/sync")
def upload_sync(request: Request) -> dict[str, Any]:
    return _describe("sync", request.form())


@app.post("/upload/async")
async def upload_async(request: Request) -> dict[str, Any]:
    form = await request.form()
    # Reading the spooled file back blocks the loop for a moment; the server
    # has nothing else to do meanwhile, and the point here is the parsing.
    return _describe("async", form)


@app.get("/download")
def download() -> FileResponse:
    return FileResponse(os.environ[BIG_FILE_ENV], media_type="application/octet-stream")
