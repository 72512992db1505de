"""A headless Chromium driven over the Chrome DevTools Protocol, for end-to-end tests.

Chromium runs as a child process with a fresh profile and the flags that keep
it off the network (this machine reaches only package registries); pages are
opened and scripted through the DevTools WebSocket with the `websockets`
client. The browser is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--remote-debugging-port=0",
    "about:blank",
]


class Browser:
    """One Chromium; `page()` opens a tab and returns its session id."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RuntimeError(str(message["error"])))
                else:
                    future.set_result(message.get("result", {}))

    async def send(self, method: str, session: str | None = None, **params: Any) -> Any:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send(json.dumps(message))
        return await asyncio.wait_for(future, 30)

    async def page(self, url: str) -> str:
        target = await self.send("Target.createTarget", url=url)
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        return str(attached["sessionId"])

    async def open(self, url: str, *, width: int, height: int, mobile: bool = False) -> str:
        """A tab whose window is `width` x `height` CSS pixels, showing `url` once loaded.

        With `mobile`, Chromium lays the page out as a phone does: at 980 pixels
        wide, zoomed out, unless the page has a viewport meta tag.
        """
        session = await self.page("about:blank")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        await self.send("Emulation.setScrollbarsHidden", session, hidden=True)  # clean screenshots
        await self.send("Page.navigate", session, url=url)
        await self.wait_for(
            session,
            "document.URL !== 'about:blank' && document.readyState === 'complete'"
            " && document.fonts.status === 'loaded'",
        )
        return session

    async def screenshot(self, session: str, *, height: int | None = None) -> bytes:
        """A PNG of what the tab shows: its window, or the window's top `height` pixels."""
        params: dict[str, Any] = {"format": "png"}
        if height is not None:
            width = await self.evaluate(session, "innerWidth")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = await self.send("Page.captureScreenshot", session, **params)
        return base64.b64decode(shot["data"])

    async def colours(self, session: str, png: bytes) -> int:
        """How many distinct colours the image `png` has (decoded on a canvas in `session`)."""
        data = json.dumps("data:image/png;base64," + base64.b64encode(png).decode("ascii"))
        return int(
            await self.evaluate(
                session,
                f"""(async () => {{
                  const image = new Image();
                  image.src = {data};
                  await image.decode();
                  const canvas = document.createElement("canvas");
                  canvas.width = image.width;
                  canvas.height = image.height;
                  const context = canvas.getContext("2d");
                  context.drawImage(image, 0, 0);
                  const pixels = context.getImageData(0, 0, image.width, image.height).data;
                  const seen = new Set();
                  for (let i = 0; i < pixels.length; i += 4) {{
                    seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
                  }}
                  return seen.size;
                }})()""",
            )
        )

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,  # an async expression's value, not the promise
        )
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    async def wait_for(self, session: str, expression: str, timeout: float = 20) -> Any:
        """Evaluate `expression` until it is truthy (polling with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.evaluate(session, expression)
            except RuntimeError:  # the page is still loading: its elements are not there yet
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            await asyncio.sleep(0.05)


#: A flag that leaves Chromium no host to reach but this machine (no CDN, nothing).
LOCAL_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"


@contextlib.asynccontextmanager
async def chromium(*flags: str) -> AsyncIterator[Browser]:
    """Start Chromium (a fresh --user-data-dir, `flags` added), yield a `Browser`,
    stop it by PID."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="microweb-chromium-")
    process = subprocess.Popen(
        [CHROMIUM, f"--user-data-dir={profile}", *flags, *FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = await asyncio.to_thread(process.stderr.readline)
            if not line:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            url = found.group(1) if found else None
        if url is None:
            raise RuntimeError("chromium did not start its DevTools endpoint")
        async with connect(url, max_size=None) as ws:
            browser = Browser(ws)
            try:
                yield browser
            finally:
                browser._reader.cancel()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)
