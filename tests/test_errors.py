"""Errors: HTTPException, abort, exception handlers, the generic 500, debug mode."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from microweb import App, HTTPException, JSONResponse, Request, abort

from .conftest import MakeClient


class AppError(Exception):
    pass


class NotFoundError(AppError):
    pass


def test_http_exception_and_abort(make_client: MakeClient) -> None:
    app = App()

    @app.get("/abort")
    def a() -> None:
        abort(404, "no such thing")

    @app.get("/raise")
    async def b() -> None:
        raise HTTPException(401, {"reason": "token"}, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/default")
    def c() -> None:
        raise HTTPException(429)

    client = make_client(app)
    r = client.get("/abort")
    assert (r.status_code, r.json()) == (404, {"detail": "no such thing"})
    r = client.get("/raise")
    assert (r.status_code, r.json()) == (401, {"detail": {"reason": "token"}})
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/default")
    assert (r.status_code, r.json()) == (429, {"detail": "Too Many Requests"})


def test_http_exception_validates_its_status() -> None:
    with pytest.raises(ValueError):
        HTTPException(42)
    exc = HTTPException(404)
    assert exc.status == exc.status_code == 404
    assert exc.detail == "Not Found"


def test_handlers_by_status_and_by_class(make_client: MakeClient) -> None:
    app = App()

    @app.exception_handler(404)
    def not_found(request: Request, exc: HTTPException) -> Any:
        return {"missing": request.path}, 404

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__}, 409)

    @app.get("/not-found")
    def nf() -> None:
        raise NotFoundError

    @app.get("/http")
    def http() -> None:
        abort(404)

    client = make_client(app)
    # the class handler follows the MRO: NotFoundError is an AppError
    assert client.get("/not-found").json() == {"error": "NotFoundError"}
    assert client.get("/http").json() == {"missing": "/http"}
    assert client.get("/nowhere").json() == {"missing": "/nowhere"}


def test_405_keeps_allow_with_a_custom_handler(make_client: MakeClient) -> None:
    app = App()

    @app.exception_handler(405)
    def method(request: Request, exc: HTTPException) -> Any:
        return {"nope": request.method}, 405

    @app.get("/only-get")
    def g() -> str:
        return "g"

    r = make_client(app).post("/only-get")
    assert (r.status_code, r.json()) == (405, {"nope": "POST"})
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


def test_exception_handler_for_exception_does_not_take_http_errors(make_client: MakeClient) -> None:
    app = App()

    @app.exception_handler(Exception)
    def any_error(request: Request, exc: Exception) -> Any:
        return {"caught": type(exc).__name__}, 500

    @app.get("/bug")
    def bug() -> None:
        raise ZeroDivisionError

    client = make_client(app)
    assert client.get("/bug").json() == {"caught": "ZeroDivisionError"}
    assert client.get("/missing").json() == {"detail": "Not Found"}


def test_500_handler(make_client: MakeClient) -> None:
    app = App()

    @app.exception_handler(500)
    def server_error(request: Request, exc: Exception) -> Any:
        return {"oops": type(exc).__name__}, 500

    @app.get("/bug")
    def bug() -> None:
        raise LookupError

    assert make_client(app).get("/bug").json() == {"oops": "LookupError"}


def test_a_failing_error_handler_gives_the_generic_500(make_client: MakeClient) -> None:
    app = App()

    @app.exception_handler(AppError)
    def broken(request: Request, exc: Exception) -> None:
        raise RuntimeError("handler bug")

    @app.get("/x")
    def x() -> None:
        raise AppError

    r = make_client(app).get("/x")
    assert (r.status_code, r.json()) == (500, {"detail": "Internal Server Error"})


def test_generic_500_leaks_nothing_and_is_logged(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.get("/secret")
    def secret() -> None:
        raise RuntimeError("password=hunter2 in /srv/app/settings.py")

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        r = client.get("/secret")
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal Server Error"}
    assert "hunter2" not in r.text and "Traceback" not in r.text
    records = [rec for rec in caplog.records if rec.name == "microweb"]
    assert len(records) == 1
    assert records[0].exc_info is not None and "hunter2" in str(records[0].exc_info[1])
    assert client.get("/missing").status_code == 404  # still serving


def test_debug_shows_the_traceback(make_client: MakeClient) -> None:
    app = App(debug=True)

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("visible in debug")

    r = make_client(app).get("/bug")
    assert r.status_code == 500
    body = r.json()
    assert body["detail"] == "Internal Server Error"
    assert "visible in debug" in body["traceback"]
    assert "RuntimeError" in body["error"]


def test_exception_handler_registration_errors() -> None:
    app = App()
    with pytest.raises(ValueError):
        app.exception_handler(200)
    with pytest.raises(TypeError):
        app.exception_handler("404")(lambda r, e: None)  # type: ignore[arg-type]


def test_a_bare_body_from_a_handler_keeps_the_error_status(make_client: MakeClient) -> None:
    app = App()

    @app.exception_handler(404)
    def not_found(request: Request, exc: HTTPException) -> dict[str, str]:
        return {"missing": request.path}

    @app.exception_handler(AppError)
    def app_error(request: Request, exc: AppError) -> str:
        return "<p>sorry</p>"

    @app.get("/fail")
    def fail() -> None:
        raise AppError

    client = make_client(app)
    r = client.get("/nowhere")
    assert (r.status_code, r.json()) == (404, {"missing": "/nowhere"})
    r = client.get("/fail")
    assert (r.status_code, r.text) == (500, "<p>sorry</p>")


def test_the_500_handler_still_logs_class_handlers_do_not(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.exception_handler(500)
    def server_error(request: Request, exc: Exception) -> Any:
        return {"oops": True}

    @app.exception_handler(AppError)
    def expected(request: Request, exc: AppError) -> Any:
        return {"expected": True}, 409

    @app.get("/bug")
    def bug() -> None:
        raise LookupError("unexpected")

    @app.get("/known")
    def known() -> None:
        raise AppError("known")

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        assert client.get("/bug").json() == {"oops": True}
        assert client.get("/known").status_code == 409
    logged = [rec.exc_info[1] for rec in caplog.records if rec.name == "microweb" and rec.exc_info]
    assert [type(e) for e in logged] == [LookupError]


def test_a_detail_that_is_not_json_is_a_logged_500(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.get("/sync")
    def sync_handler() -> None:
        abort(400, b"bytes are not JSON")  # type: ignore[arg-type]

    @app.get("/async")
    async def async_handler() -> None:
        abort(422, {"x": float("nan")})

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        for path in ("/sync", "/async"):
            r = client.get(path)
            assert (r.status_code, r.json()) == (500, {"detail": "Internal Server Error"})
    assert len([rec for rec in caplog.records if "not JSON" in rec.getMessage()]) == 2


@pytest.mark.parametrize("hooked", [False, True])  # the direct path and the pipeline
def test_awaiting_a_cancelled_task_is_a_500(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, hooked: bool
) -> None:
    import asyncio

    app = App()

    @app.get("/direct")
    async def direct() -> None:
        task = asyncio.ensure_future(asyncio.sleep(10))
        task.cancel()
        await task  # CancelledError: the task's, not this request's

    if hooked:

        @app.after_request
        def noop(request: Request, response: Any) -> None:
            return None

    client = make_client(app)
    with caplog.at_level(logging.ERROR, logger="microweb"):
        r = client.get("/direct")
    assert (r.status_code, r.json()) == (500, {"detail": "Internal Server Error"})
    assert client.get("/direct").status_code == 500  # and the app keeps serving
