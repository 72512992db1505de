"""examples/upload.py, used as a browser or curl would, under both protocols."""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from examples import upload
from microweb import App

from .conftest import MakeClient
from .servers import SERVERS, serve

HEX_NAME = re.compile(r"[0-9a-f]{32}\.(bin|json)")


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    # two levels down, so that a "../../x" used as a path would land in tmp_path, seen
    return tmp_path / "site" / "uploads"


@pytest.fixture
def app(upload_dir: Path) -> App:
    return upload.create_app(upload_dir)


def _only_server_names(directory: Path) -> list[str]:
    names = sorted(os.listdir(directory))
    assert all(HEX_NAME.fullmatch(name) for name in names), names
    return names


def test_entry_points() -> None:
    assert upload.wsgi is upload.app.wsgi


def test_the_form_page(make_client: MakeClient, app: App) -> None:
    r = make_client(app).get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<form action="/upload" method="post" enctype="multipart/form-data">' in r.text
    assert '<input type="text" name="note"' in r.text
    assert '<input type="file" name="file"' in r.text


def test_upload_list_and_download(make_client: MakeClient, app: App, upload_dir: Path) -> None:
    client = make_client(app)
    assert "No uploads yet." in client.get("/uploads").text
    payload = b"%PDF-1.7 " + bytes(range(256)) * 8
    r = client.post(
        "/upload",
        data={"note": "Q3 figures"},
        files={"file": ("report.pdf", payload, "application/pdf")},
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/uploads"

    listing = client.get("/uploads")
    assert listing.status_code == 200
    assert "report.pdf</a>" in listing.text
    assert f"({len(payload)} bytes) Q3 figures" in listing.text
    (meta,) = client.get("/api/uploads").json()
    assert meta["filename"] == "report.pdf"
    assert meta["content_type"] == "application/pdf"
    assert (meta["size"], meta["note"]) == (len(payload), "Q3 figures")
    assert f'href="/uploads/{meta["id"]}"' in listing.text

    r = client.get(f"/uploads/{meta['id']}")
    assert r.status_code == 200
    assert r.content == payload
    assert r.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["x-content-type-options"] == "nosniff"
    # a download can be resumed
    r = client.get(f"/uploads/{meta['id']}", headers={"Range": "bytes=9-"})
    assert (r.status_code, r.content) == (206, payload[9:])

    assert _only_server_names(upload_dir) == [f"{meta['id']}.bin", f"{meta['id']}.json"]
    assert (upload_dir / f"{meta['id']}.bin").read_bytes() == payload


def test_a_large_upload_round_trips(make_client: MakeClient, app: App) -> None:
    payload = hashlib.sha256(b"big").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB: spooled
    client = make_client(app)
    assert client.post("/upload", files={"file": ("big.bin", payload)}).status_code == 303
    (meta,) = client.get("/api/uploads").json()
    assert meta["size"] == len(payload)
    r = client.get(f"/uploads/{meta['id']}")
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(payload).digest()


def _post_raw_file(client: Any, params: bytes, payload: bytes = b"payload") -> Any:
    """Upload `payload` with the Content-Disposition parameters `params`, as sent on the wire."""
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; ' + params + b"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--XyZ--\r\n"
    )
    ctype = "multipart/form-data; boundary=XyZ"
    return client.post("/upload", content=body, headers={"content-type": ctype})


# (Content-Disposition parameters on the wire, the filename the app gets). Browsers
# send a name as UTF-8 in a quoted string, with '"', CR and LF as %22, %0D, %0A
# (HTML5), and backslashes unescaped; `filename*` is RFC 5987. {tmp} is the test's
# own temporary directory: an absolute name that, used as a path, stays in the sandbox.
HOSTILE = [
    (b'filename="../../x"', "../../x"),
    (b'filename="{tmp}/absolute"', "{tmp}/absolute"),
    (b'filename="..\\..\\x.txt"', "..\\..\\x.txt"),
    (b'filename="a%0D%0ASet-Cookie: evil=1%0D%0A.txt"', "a\r\nSet-Cookie: evil=1\r\n.txt"),
    (b'filename="%0D%0A%0D%0A"', "\r\n\r\n"),
    (b"filename*=UTF-8''..%2F..%2Fx%0D%0AX-Injected%3A%201", "../../x\r\nX-Injected: 1"),
    (b'filename="<img src=x onerror=%22alert(1)%22>.html"', '<img src=x onerror="alert(1)">.html'),
    ('filename="résumé ✓.pdf"'.encode(), "résumé ✓.pdf"),
]


@pytest.mark.parametrize(("params", "filename"), HOSTILE, ids=[h[1] for h in HOSTILE])
def test_a_hostile_filename_lands_safely(
    make_client: MakeClient,
    app: App,
    tmp_path: Path,
    upload_dir: Path,
    params: bytes,
    filename: str,
) -> None:
    params = params.replace(b"{tmp}", os.fsencode(tmp_path))
    filename = filename.replace("{tmp}", str(tmp_path))
    client = make_client(app)
    assert _post_raw_file(client, params).status_code == 303
    # nothing was written anywhere but under a server-chosen name in the uploads dir
    written = [Path(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    assert {path.parent for path in written} == {upload_dir}, written
    assert len(_only_server_names(upload_dir)) == 2
    (meta,) = client.get("/api/uploads").json()
    assert meta["filename"] == filename  # kept as data, exactly as received

    # the listing shows it escaped
    listing = client.get("/uploads").text
    assert html.escape(filename) in listing
    assert "<img" not in listing

    r = client.get(f"/uploads/{meta['id']}")
    assert r.content == b"payload"
    assert "set-cookie" not in r.headers and "x-injected" not in r.headers
    for name, value in r.headers.raw:  # the response head stays clean
        assert not any(c in name + value for c in b"\r\n\0"), (name, value)
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    if "filename*=UTF-8''" in disposition:  # the exact name survives, RFC 5987-encoded
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == filename
    else:
        assert disposition == f'attachment; filename="{filename}"'


@pytest.mark.parametrize(
    ("data", "files"),
    [
        ({"note": "no file chosen"}, {"file": ("", b"", "application/octet-stream")}),
        ({"note": "no file field"}, {"other": ("a.txt", b"x")}),
        ({"file": "text, not a file"}, {"other": ("a.txt", b"x")}),
        ({"note": "x" * 201}, {"file": ("a.txt", b"x")}),
    ],
)
def test_bad_forms_are_400(
    make_client: MakeClient, app: App, upload_dir: Path, data: dict[str, str], files: Any
) -> None:
    client = make_client(app)
    r = client.post("/upload", data=data, files=files)
    assert r.status_code == 400
    assert "detail" in r.json()
    assert os.listdir(upload_dir) == []


def test_a_urlencoded_post_is_400(make_client: MakeClient, app: App) -> None:
    assert make_client(app).post("/upload", data={"file": "x"}).status_code == 400


def test_one_file_per_upload(make_client: MakeClient, app: App, upload_dir: Path) -> None:
    client = make_client(app)
    r = client.post("/upload", files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))])
    assert r.status_code == 413  # App(max_form_files=1)
    assert os.listdir(upload_dir) == []


@pytest.mark.parametrize(
    "path",
    [
        "/uploads/abc",
        "/uploads/" + "0" * 32,  # the right shape, but no such upload
        "/uploads/" + "A" * 32,
        "/uploads/" + "0" * 33,
        "/uploads/..%2f..%2fetc%2fpasswd",
        "/uploads/" + "0" * 32 + ".json",
    ],
)
def test_downloads_take_only_known_ids(make_client: MakeClient, app: App, path: str) -> None:
    client = make_client(app)
    assert client.post("/upload", files={"file": ("a.txt", b"a")}).status_code == 303
    r = client.get(path)
    assert r.status_code == 404
    assert "detail" in r.json()


def test_the_directory_comes_from_the_environment(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "from-env"
    monkeypatch.setenv(upload.UPLOAD_DIR_ENV, str(target))
    client = make_client(upload.create_app())
    assert client.post("/upload", files={"file": ("a.txt", b"a")}).status_code == 303
    assert len(_only_server_names(target)) == 2


def test_the_default_directory_is_a_new_temporary_one(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(upload.UPLOAD_DIR_ENV, raising=False)
    app = upload.create_app()
    assert app.state.upload_dir is None  # made at startup, not at import
    client = make_client(app)
    try:
        assert client.post("/upload", files={"file": ("a.txt", b"a")}).status_code == 303
        directory = Path(app.state.upload_dir)
        assert directory.parent == Path(tempfile.gettempdir())
        assert directory.name.startswith("microweb-uploads-")
        assert len(_only_server_names(directory)) == 2
        assert (directory.stat().st_mode & 0o777) == 0o700  # mkdtemp: this user only
    finally:
        if app.state.upload_dir is not None:
            shutil.rmtree(app.state.upload_dir)


@pytest.mark.servers
@pytest.mark.parametrize("kind", SERVERS)
def test_runs_as_documented(kind: str, tmp_path: Path) -> None:
    """``uvicorn examples.upload:app.asgi``, ``waitress-serve ...:app.wsgi``, and
    ``MICROWEB_UPLOAD_DIR=... gunicorn examples.upload:wsgi --workers 2``: two
    workers share the uploads through the directory."""
    directory = tmp_path / "shared"
    env = {upload.UPLOAD_DIR_ENV: str(directory)}
    workers = 2 if kind == "gunicorn" else 1
    payload = os.urandom(1024 * 1024 + 3)  # spooled to disk on the way in
    with (
        serve(kind, "examples.upload", env=env, workers=workers) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        r = http.post("/upload", data={"note": "real"}, files={"file": ("résumé.bin", payload)})
        assert (r.status_code, r.headers["location"]) == (303, "/uploads")
        for _ in range(4):  # whichever worker answers, it sees the upload
            (meta,) = http.get("/api/uploads").json()
            r = http.get(f"/uploads/{meta['id']}")
            assert r.content == payload
            assert r.headers["content-disposition"] == (
                "attachment; filename=\"resume.bin\"; filename*=UTF-8''r%C3%A9sum%C3%A9.bin"
            )
    assert len(_only_server_names(directory)) == 2
