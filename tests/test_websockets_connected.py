"""`WebSocket.while_connected()` in-process (ASGI: WebSockets exist only there).

A handler that waits on something else (a subscription; here an event that
is never set) inside ``while_connected()`` ends as soon as its client
leaves, not at the next thing it sends.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from microweb import App, WebSocket, WebSocketDisconnect
from microweb.testing import TestClient, WebSocketDenied

TIMEOUT = 10.0  # seconds a test waits for a handler before it fails


class Record:
    """What the handlers of one app did, read by the test's thread."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.ended = threading.Event()

    def add(self, event: Any) -> None:
        self.events.append(event)

    def wait_ended(self) -> list[Any]:
        assert self.ended.wait(TIMEOUT), f"the handler did not end: {self.events}"
        return self.events


def make_app() -> tuple[App, Record]:
    app = App()
    record = Record()
    go = anyio.Event()  # set by POST /go; `never` is never set

    @app.post("/go")
    async def set_go() -> str:
        go.set()
        return "ok"

    @app.websocket("/wait")
    async def wait(websocket: WebSocket) -> None:
        never = anyio.Event()
        await websocket.accept()
        try:
            async with websocket.while_connected():
                try:
                    await websocket.send_text("ready")
                    await never.wait()  # as a subscription with no messages would
                finally:
                    record.add("finally")
            record.add("after")
        finally:
            record.ended.set()

    @app.websocket("/talk")
    async def talk(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async with websocket.while_connected():
                await websocket.send_text("ready")
                async for text in websocket.iter_text():
                    await go.wait()  # a slow first message: more than the inbox keeps wait
                    await anyio.lowlevel.checkpoint()  # work that awaits, per message
                    record.add(text)
                    await websocket.send_text(f"echo {text}")
            record.add("after")
        finally:
            record.ended.set()

    @app.websocket("/late")
    async def late(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.send_text("ready")
            await go.wait()  # the client leaves meanwhile
            async with websocket.while_connected():
                await anyio.Event().wait()
            record.add("after")
        finally:
            record.ended.set()

    @app.websocket("/pipelined")
    async def pipelined(websocket: WebSocket) -> None:
        await websocket.accept()

        async def echo() -> None:
            async for text in websocket.iter_text():
                await websocket.send_text(f"echo {text}")

        try:
            await websocket.send_text("ready")
            await go.wait()  # the client sent many messages meanwhile
            async with websocket.while_connected(), anyio.create_task_group() as tasks:
                tasks.start_soon(echo)  # reads from its first step on
                await anyio.Event().wait()
            record.add("after")
        finally:
            record.ended.set()

    @app.websocket("/later")
    async def later(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async with websocket.while_connected():
                await websocket.send_text("ready")
                await go.wait()  # the block ends without reading
            record.add("after")
            async for text in websocket.iter_text():  # what the client sent meanwhile
                await websocket.send_text(f"later {text}")
        finally:
            record.ended.set()

    @app.websocket("/raise/{kind}")
    async def raise_(websocket: WebSocket, kind: str) -> None:
        await websocket.accept()
        try:
            async with websocket.while_connected():
                if kind == "value":
                    raise ValueError("boom")
                if kind == "disconnect":
                    raise WebSocketDisconnect(1006)
                async with anyio.create_task_group() as tg:  # a send that failed in a task
                    tg.start_soon(websocket.send_text, "hi")
                    raise WebSocketDisconnect(1006)
            record.add("after")
        except BaseException as exc:
            record.add(exc)
        finally:
            record.ended.set()

    @app.websocket("/unaccepted")
    async def unaccepted(websocket: WebSocket) -> None:
        try:
            async with websocket.while_connected():
                record.add("inside")
        except RuntimeError as exc:
            record.add(str(exc))
        finally:
            record.ended.set()

    return app, record


def test_the_block_ends_when_the_client_leaves() -> None:
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect("/wait") as ws:
        assert ws.receive_text() == "ready"  # the handler waits inside the block
        ws.close()
        assert record.wait_ended() == ["finally", "after"]


def test_a_block_that_reads_nothing_sees_a_chatty_client_leave() -> None:
    # a client that sends heartbeats to a handler that never reads them: the
    # reader keeps 16, drops the others, and still sees the client leave
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect("/wait") as ws:
        assert ws.receive_text() == "ready"
        for _ in range(40):
            ws.send_text("ping")
        ws.close()
        assert record.wait_ended() == ["finally", "after"]


def test_a_client_that_left_before_the_block_ends_it_at_once() -> None:
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect("/late") as ws:
        assert ws.receive_text() == "ready"
        ws.send({"type": "websocket.disconnect", "code": 1001})
        assert client.post("/go").text == "ok"
        assert record.wait_ended() == ["after"]


def test_a_client_that_leaves_during_the_block_is_gone_after_it() -> None:
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect("/later") as ws:
        assert ws.receive_text() == "ready"
        ws.send({"type": "websocket.disconnect", "code": 1001})
        assert record.wait_ended() == ["after"]  # and the iteration after it ended at once


def test_messages_sent_during_the_block_are_received_in_order() -> None:
    app, record = make_app()
    texts = [f"m{i}" for i in range(40)]  # more than the 16 the reader keeps unread
    with TestClient(app) as client, client.websocket_connect("/talk") as ws:
        assert ws.receive_text() == "ready"
        for text in texts:
            ws.send_text(text)
        assert client.post("/go").text == "ok"
        assert [ws.receive_text() for _ in texts] == [f"echo {t}" for t in texts]
        ws.send_text("last")  # then the client leaves at once
        ws.close()
        # the iteration got "last" before the disconnect, and finished with it
        assert record.wait_ended() == [*texts, "last", "after"]


def test_a_task_the_block_starts_gets_what_the_client_sent_before() -> None:
    app, record = make_app()
    texts = [f"m{i}" for i in range(40)]
    with TestClient(app) as client, client.websocket_connect("/pipelined") as ws:
        assert ws.receive_text() == "ready"
        for text in texts:
            ws.send_text(text)
        assert client.post("/go").text == "ok"
        assert [ws.receive_text() for _ in texts] == [f"echo {t}" for t in texts]
        ws.close()
        assert record.wait_ended() == ["after"]


def test_what_the_block_did_not_read_is_received_after_it() -> None:
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect("/later") as ws:
        assert ws.receive_text() == "ready"
        for text in ("a", "b", "c"):
            ws.send_text(text)
        assert client.post("/go").text == "ok"
        assert [ws.receive_text() for _ in range(3)] == ["later a", "later b", "later c"]
        ws.send_text("d")  # received from the server again, after the inbox
        assert ws.receive_text() == "later d"
        ws.close()
        assert record.wait_ended() == ["after"]


def test_an_exception_from_the_block_propagates_unchanged() -> None:
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect("/raise/value"):
        (exc,) = record.wait_ended()
    assert type(exc) is ValueError and str(exc) == "boom"  # not in an exception group


@pytest.mark.parametrize("kind", ["disconnect", "group"])
def test_a_websocket_disconnect_inside_ends_the_block_quietly(kind: str) -> None:
    app, record = make_app()
    with TestClient(app) as client, client.websocket_connect(f"/raise/{kind}"):
        assert record.wait_ended() == ["after"]


def test_the_websocket_must_be_accepted_first() -> None:
    app, record = make_app()
    with TestClient(app) as client, pytest.raises(WebSocketDenied):
        client.websocket_connect("/unaccepted").__enter__()
    (message,) = record.wait_ended()
    assert "await websocket.accept()" in message


def test_the_reader_keeps_at_most_16_unread_messages() -> None:
    # Driven through app.asgi with a receive that counts what the app took from
    # the "server": a client that sends 100 messages to a block that is slow
    # to read them makes it take 17 (the one being handled and 16 kept), not
    # all (the server then stops reading the socket: memory stays bounded);
    # once the block goes on, it gets them all, in order.
    app = App()
    go = anyio.Event()
    got: list[str] = []

    @app.websocket("/slow")
    async def slow(websocket: WebSocket) -> None:
        await websocket.accept()
        async with websocket.while_connected():
            async for text in websocket.iter_text():
                await go.wait()  # slow with the first message
                got.append(text)

    sent = [{"type": "websocket.receive", "text": f"m{i}"} for i in range(100)]
    incoming = [{"type": "websocket.connect"}, *sent, {"type": "websocket.disconnect"}]
    taken = 0
    accepted = anyio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        return incoming[taken - 1]

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            accepted.set()

    async def main() -> None:
        scope = {"type": "websocket", "path": "/slow", "headers": [], "subprotocols": []}
        async with anyio.create_task_group() as tg:
            tg.start_soon(app.asgi, scope, receive, send)
            await accepted.wait()
            for _ in range(200):  # let the reader run as far as it can
                await anyio.lowlevel.checkpoint()
            assert taken - 1 == 17  # (the first message taken was the connect)
            go.set()

    anyio.run(main)
    assert got == [m["text"] for m in sent]


def test_a_receive_that_fails_ends_the_block_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a server whose receive raises (a bug): the block ends as if the client
    # had gone, and the error is logged rather than lost in the reader task
    app = App()
    after: list[str] = []

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        async with websocket.while_connected():
            await anyio.Event().wait()
        after.append("after")

    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "websocket.connect"}
        raise OSError("the server broke")

    async def send(message: dict[str, Any]) -> None:
        pass

    async def main() -> None:
        scope = {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}
        with anyio.fail_after(TIMEOUT):
            await app.asgi(scope, receive, send)

    with caplog.at_level(logging.ERROR, logger="microweb"):
        anyio.run(main)
    assert after == ["after"]
    assert "the server broke" in caplog.text


def test_a_client_gone_before_accept_ends_the_handler_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a handler that subscribes before it accepts (as the chat example does)
    # and finds the client gone: accept raises WebSocketDisconnect, which
    # ends the handler as any disconnect does, not as an error
    app = App()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        raise OSError("the client has gone")  # as uvicorn's ClientDisconnected

    scope = {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}
    with caplog.at_level(logging.ERROR, logger="microweb"):
        anyio.run(app.asgi, scope, receive, send)
    assert caplog.records == []
