"""Multipart forms: streaming parse, spooled uploads, limits and malformed input."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microweb import App, FormData, Request, UploadFile, _multipart

from .conftest import MakeClient


def _describe(form: FormData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = value.read()
            value.seek(0)
            out.setdefault(key, []).append(
                {
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": value.size,
                    "sha": hashlib.sha256(data).hexdigest(),
                    "len": len(data),
                    "at_zero": value.file.tell() == 0,
                }
            )
        else:
            out.setdefault(key, []).append(value)
    return out


def _form_app(**limits: Any) -> tuple[App, list[UploadFile]]:
    app = App(**limits)
    seen: list[UploadFile] = []

    @app.post("/sync")
    def sync_form(request: Request) -> dict[str, Any]:
        form = request.form()
        seen.extend(v for _, v in form.multi_items() if isinstance(v, UploadFile))
        return _describe(form)

    @app.post("/async")
    async def async_form(request: Request) -> dict[str, Any]:
        form = await request.form()
        seen.extend(v for _, v in form.multi_items() if isinstance(v, UploadFile))
        return _describe(form)

    return app, seen


KINDS = ["sync", "async"]


@pytest.mark.parametrize("kind", KINDS)
def test_fields_and_files(make_client: MakeClient, kind: str) -> None:
    app, seen = _form_app()
    payload = bytes(range(256)) * 20
    r = make_client(app).post(
        f"/{kind}",
        data={"name": "Ada", "tags": ["a", "b"]},
        files={"upload": ("../../etc/passwd\r\n.bin", payload, "application/x-thing")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == ["Ada"]
    assert body["tags"] == ["a", "b"]
    (upload,) = body["upload"]
    # the client's name is kept as data, exactly as sent (it is never used as a path)
    assert upload["filename"] == "../../etc/passwd\r\n.bin"
    assert upload["content_type"] == "application/x-thing"
    assert upload["size"] == upload["len"] == len(payload)
    assert upload["sha"] == hashlib.sha256(payload).hexdigest()
    assert upload["at_zero"] is True
    # every form file is closed (and so removed) once the request is over
    assert seen and all(f.file.closed for f in seen)


@pytest.mark.parametrize("kind", KINDS)
def test_large_upload_spools_to_disk(make_client: MakeClient, kind: str) -> None:
    app = App(max_body_size=64 * 1024 * 1024)
    payload = hashlib.sha256(b"x").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB

    @app.post("/up")
    async def up(request: Request) -> dict[str, Any]:
        form = await request.form()
        f = form["file"]
        assert isinstance(f, UploadFile)
        rolled = getattr(f.file, "_rolled", None)
        return {"rolled": rolled, "size": f.size, "sha": hashlib.sha256(f.read()).hexdigest()}

    def chunks() -> Iterator[bytes]:  # a streamed (chunked) upload, no Content-Length
        boundary = b"XyZ"
        yield b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]
        yield b"\r\n--" + boundary + b"--\r\n"

    client = make_client(app)
    r = client.post(
        "/up", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XyZ"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "rolled": True,
        "size": len(payload),
        "sha": hashlib.sha256(payload).hexdigest(),
    }


def test_upload_file_save(make_client: MakeClient, tmp_path: Path) -> None:
    app = App()
    target = tmp_path / "saved.bin"

    @app.post("/save")
    def save(request: Request) -> dict[str, int]:
        upload = request.form()["f"]
        return {"written": upload.save(target)}

    r = make_client(app).post("/save", files={"f": ("x.bin", b"0123456789")})
    assert r.json() == {"written": 10}
    assert target.read_bytes() == b"0123456789"


def _form_body(parts: list[tuple[str, str]], boundary: str = "b0undary") -> bytes:
    body = b""
    for disposition_params, content in parts:
        body += (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; {disposition_params}\r\n\r\n"
            ).encode()
            + content.encode("latin-1")
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


def _post_raw(client: Any, kind: str, body: bytes, ctype: str) -> Any:
    return client.post(f"/{kind}", content=body, headers={"content-type": ctype})


CTYPE = "multipart/form-data; boundary=b0undary"


@pytest.mark.parametrize("kind", KINDS)
def test_filename_star_is_understood(make_client: MakeClient, kind: str) -> None:
    app, _ = _form_app()
    body = _form_body(
        [
            ("name=\"doc\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "data"),
            ('name="both"; filename="fallback.txt"; filename*=UTF-8\'\'%E2%9C%93.txt', "x"),
        ]
    )
    r = _post_raw(make_client(app), kind, body, CTYPE)
    assert r.status_code == 200, r.text
    assert r.json()["doc"][0]["filename"] == "résumé.pdf"
    assert r.json()["both"][0]["filename"] == "✓.txt"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("limits", "parts", "status"),
    [
        ({"max_form_fields": 3}, [(f'name="f{i}"', "v") for i in range(4)], 413),
        ({"max_form_files": 2}, [(f'name="f{i}"; filename="{i}"', "v") for i in range(3)], 413),
        ({"max_form_field_size": 10}, [('name="big"', "x" * 11)], 413),
        ({"max_form_field_size": 10}, [('name="ok"', "x" * 10)], 200),
        ({"max_form_fields": 1000}, [('name="f"', "v")] * 5000, 413),  # thousands of tiny parts
    ],
)
def test_form_limits(
    make_client: MakeClient, kind: str, limits: dict[str, int], parts: Any, status: int
) -> None:
    app, _ = _form_app(**limits)
    r = _post_raw(make_client(app), kind, _form_body(parts), CTYPE)
    assert r.status_code == status, r.text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"", "multipart/form-data", 400),  # no boundary
        (b"", "multipart/form-data; boundary=", 400),
        (b"", "multipart/form-data; boundary=" + "a" * 71, 400),  # over 70 characters
        (b"", "multipart/form-data; boundary=a; boundary=b", 400),  # duplicate
        (b"", "multipart/form-data; boundary=bad\x7fchar", 400),
        (b"garbage", CTYPE, 400),
        (b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\nunterminated', CTYPE,
         400),
        (_form_body([('name="t"', "\xff\xfe")]), CTYPE, 400),  # not UTF-8
        (b"--b0undary\r\nContent-Disposition: form-data; name=\"t\"\r\n"
         b"Content-Type: text/plain; charset=klingon\r\n\r\nx\r\n--b0undary--\r\n", CTYPE, 400),
        (b"--b0undary\r\nX-Big: " + b"h" * 20_000 + b"\r\n\r\nx\r\n--b0undary--\r\n", CTYPE, 413),
        (b"preamble " * 100_000 + _form_body([('name="a"', "1")]), CTYPE, 400),
        (b"--b0undary\r\nContent-Type: text/plain\r\n\r\nno name\r\n--b0undary--\r\n", CTYPE, 400),
        (_form_body([('name="a"', "1")]) + b"epilogue" * 100_000, CTYPE, 400),
    ],
)  # fmt: skip
def test_malformed_multipart(
    make_client: MakeClient, kind: str, body: bytes, ctype: str, status: int
) -> None:
    app, _ = _form_app()
    client = make_client(app)
    r = _post_raw(client, kind, body, ctype)
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    good = _post_raw(client, kind, _form_body([('name="a"', "1")]), CTYPE)
    assert good.json() == {"a": ["1"]}  # and the next request is served


@pytest.mark.parametrize("kind", KINDS)
def test_body_limit_applies_while_streaming_a_form(make_client: MakeClient, kind: str) -> None:
    app, seen = _form_app(max_body_size=100_000)

    def chunks() -> Iterator[bytes]:
        yield b'--b0undary\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
        for _ in range(50):
            yield b"z" * 10_000

    r = make_client(app).post("/" + kind, content=chunks(), headers={"content-type": CTYPE})
    assert r.status_code == 413
    assert seen == []  # the handler never saw a form


def test_files_are_removed_when_the_handler_fails(make_client: MakeClient) -> None:
    app = App()
    kept: list[UploadFile] = []

    @app.post("/fail")
    async def fail(request: Request) -> None:
        form = await request.form()
        kept.append(form["f"])  # type: ignore[arg-type]
        raise RuntimeError("handler bug")

    r = make_client(app).post("/fail", files={"f": ("a.txt", b"abc")})
    assert r.status_code == 500
    assert kept and kept[0].file.closed


def test_disk_writes_stay_off_the_event_loop_under_asgi(monkeypatch: pytest.MonkeyPatch) -> None:
    # Starlette CVE-2025-54121: spooling to disk blocked the loop
    from microweb.testing import TestClient

    writes: list[tuple[int, bool, bool]] = []
    original = _multipart.MultipartReader._write_file

    def spy(self: Any, data: bytes) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        before = self.spooled_size
        original(self, data)
        writes.append(
            (threading.get_ident(), on_loop, before + len(data) > _multipart.SPOOL_THRESHOLD)
        )

    monkeypatch.setattr(_multipart.MultipartReader, "_write_file", spy)
    app = App(max_body_size=64 * 1024 * 1024)

    @app.post("/up")
    async def up(request: Request) -> str:
        form = await request.form()
        return str(form["f"].size)  # type: ignore[union-attr]

    payload = b"q" * (4 * 1024 * 1024)
    with TestClient(app, protocol="asgi") as client:
        r = client.post("/up", files={"f": ("big.bin", payload)})
    assert r.status_code == 200 and r.text == str(len(payload))
    assert any(to_disk for _, _, to_disk in writes)
    assert not any(on_loop for _, on_loop, to_disk in writes if to_disk)


def test_a_hook_and_the_handler_may_both_read_a_small_form(make_client: MakeClient) -> None:
    app = App()

    @app.before_request
    def csrf(request: Request) -> None:
        if request.method == "POST":
            request.state.token = request.form().get("csrf")

    @app.post("/upload")
    def upload(request: Request) -> dict[str, Any]:
        return {"bytes": len(request.body()), "token": request.state.token}

    r = make_client(app).post("/upload", files={"f": ("a.txt", b"hello")}, data={"csrf": "x"})
    assert r.status_code == 200
    assert r.json()["token"] == "x"
    assert r.json()["bytes"] > 100


@pytest.mark.parametrize("kind", KINDS)
def test_body_after_a_large_streamed_form_is_an_error(make_client: MakeClient, kind: str) -> None:
    app = App(max_body_size=8 * 1024 * 1024)

    @app.post("/sync")
    def sync_form(request: Request) -> str:
        request.form()
        return str(len(request.body()))

    @app.post("/async")
    async def async_form(request: Request) -> str:
        await request.form()
        return str(len(await request.body()))

    big = make_client(app).post(f"/{kind}", files={"f": ("a.bin", b"x" * 2_000_000)})
    assert big.status_code == 500  # kept only up to 1 MiB: the rest streamed past
    small = make_client(app).post(f"/{kind}", files={"f": ("a.bin", b"x" * 1000)})
    assert small.status_code == 200
