"""The example pages in Chromium, as a reader sees them, at a desktop and a phone width.

Each page is checked for what a user would notice (the shared stylesheet
applied, a readable column, nothing off-screen on a phone) and screenshotted
into the session's `screenshots` directory (its path is printed at the end
of the run). ``UPDATE_DOCS_SCREENSHOTS=1`` also copies the screenshots to
docs/img/, where docs/examples.md shows them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from . import browser
from .redisserver import redis_server
from .servers import ROOT, serve

DESKTOP = (1024, 640)
PHONE = (375, 667)
#: what each page is saved as (website-login-phone.png, ...), and docs/examples.md shows
SHOTS = ("website-home", "website-login", "website-private", "chat", "sse", "feed")
#: body { max-width: 42rem } at the default 16 px
COLUMN = 42 * 16
ACCENT = "rgb(11, 92, 173)"
DOCS = ROOT / "docs"

needs_chromium = pytest.mark.skipif(
    browser.CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)


def png_size(png: bytes) -> tuple[int, int]:
    """The width and height in a PNG's header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


class Pages:
    """One Chromium, and tabs the size of a desktop or a phone screen."""

    def __init__(self, chrome: browser.Browser, screenshots: Path) -> None:
        self.chrome = chrome
        self.screenshots = screenshots

    async def open(self, url: str, screen: tuple[int, int]) -> str:
        width, height = screen
        return await self.chrome.open(url, width=width, height=height, mobile=screen == PHONE)

    async def check(self, tab: str, screen: tuple[int, int]) -> None:
        """The stylesheet is applied, the text sits in a readable column, and
        nothing needs scrolling sideways."""
        page = await self.chrome.evaluate(
            tab,
            """(() => {
              const button = document.querySelector("button:not(.link)");
              return {
                stylesheets: Array.from(document.styleSheets, (s) => [s.href, s.cssRules.length]),
                font: getComputedStyle(document.body).fontFamily,
                column: document.body.getBoundingClientRect().width,
                viewport: innerWidth,
                scroll: document.documentElement.scrollWidth,
                button: button && getComputedStyle(button).backgroundColor,
              };
            })()""",
        )
        sheets = page["stylesheets"]  # [href, number of rules]: one, loaded and parsed
        assert [str(href).rsplit("/", 2)[-2:] for href, _ in sheets] == [["static", "style.css"]]
        assert sheets[0][1] > 0, page
        assert page["font"].startswith("system-ui"), page  # not the browser's default serif
        # a phone lays the page out at its own width only with a viewport meta tag
        assert page["viewport"] == screen[0], page
        assert page["scroll"] <= page["viewport"], page  # no horizontal scrollbar
        assert page["column"] <= min(screen[0], COLUMN), page
        assert page["button"] in (None, ACCENT), page  # a styled button, not the grey default

    async def shoot(self, tab: str, name: str, screen: tuple[int, int]) -> Path:
        """Save what `tab` shows as `name`-desktop.png or `name`-phone.png; check it."""
        await self.check(tab, screen)
        path = self.screenshots / f"{name}-{'phone' if screen == PHONE else 'desktop'}.png"
        # the window down to the end of the page (no empty window below a short page)
        end = await self.chrome.evaluate(tab, "document.body.getBoundingClientRect().bottom")
        height = min(screen[1], math.ceil(end))
        path.write_bytes(await self.chrome.screenshot(tab, height=height))
        png = path.read_bytes()
        assert png_size(png) == (screen[0], height)
        assert await self.chrome.colours(tab, png) > 16, f"{path} looks blank"
        print(f"screenshot: {path}")
        if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
            shutil.copyfile(path, DOCS / "img" / path.name)
        return path

    async def text(self, tab: str, selector: str) -> str:
        text = await self.chrome.evaluate(tab, f"document.querySelector({selector!r}).textContent")
        return str(text)


def run(screenshots: Path, scenario: Callable[[Pages], Awaitable[None]]) -> None:
    async def main() -> None:
        async with browser.chromium() as chrome:
            await scenario(Pages(chrome, screenshots))

    asyncio.run(main())


@pytest.mark.servers
@needs_chromium
def test_website_pages_under_waitress(screenshots: Path) -> None:
    async def log_in(pages: Pages, tab: str, password: str) -> None:
        await pages.chrome.evaluate(
            tab,
            "document.querySelector('[name=user]').value = 'ada';"
            f"document.querySelector('[name=password]').value = {json.dumps(password)};"
            "document.querySelector('main form').requestSubmit(); true",
        )

    async def visit(pages: Pages, url: str, screen: tuple[int, int]) -> None:
        tab = await pages.open(f"{url}/", screen)
        assert await pages.text(tab, "h1") == "Hello, stranger."
        await pages.shoot(tab, "website-home", screen)

        tab = await pages.open(f"{url}/login?next=/private", screen)
        await log_in(pages, tab, "wrong")
        await pages.chrome.wait_for(tab, "document.querySelector('.error') !== null")
        await pages.chrome.wait_for(tab, "document.readyState === 'complete'")
        assert await pages.text(tab, ".error") == "Wrong user name or password."
        await pages.shoot(tab, "website-login", screen)

        await log_in(pages, tab, "lovelace")
        await pages.chrome.wait_for(
            tab, "location.pathname === '/private' && document.readyState === 'complete'"
        )
        assert await pages.text(tab, ".notice") == "Only ada sees this."
        await pages.shoot(tab, "website-private", screen)

        await pages.chrome.evaluate(tab, "document.querySelector('nav button').click(); true")
        await pages.chrome.wait_for(
            tab, "location.pathname === '/' && document.readyState === 'complete'"
        )
        assert await pages.text(tab, "h1") == "Hello, stranger."  # logged out again

    async def scenario(pages: Pages) -> None:
        await visit(pages, server.url, DESKTOP)
        await visit(pages, server.url, PHONE)

    with serve("waitress", "examples.website.app", env={"MICROWEB_SECRET": "s"}) as server:
        run(screenshots, scenario)


@pytest.mark.servers
@needs_chromium
def test_chat_page_under_uvicorn(screenshots: Path) -> None:
    async def say(pages: Pages, tab: str, name: str, text: str) -> None:
        await pages.chrome.evaluate(
            tab,
            f"document.getElementById('name').value = {json.dumps(name)};"
            f"document.getElementById('text').value = {json.dumps(text)};"
            "document.querySelector('button').click(); true",
        )

    async def scenario(pages: Pages) -> None:
        ada = await pages.open(f"{server.url}/?room=tea", DESKTOP)
        grace = await pages.open(f"{server.url}/?room=tea", PHONE)
        for tab in (ada, grace):
            await pages.chrome.wait_for(tab, "document.querySelector('.status.connected') !== null")
        lines = "Array.from(document.querySelectorAll('#log .message'), (m) => m.textContent)"
        await say(pages, ada, "ada", "Has anyone seen the Analytical Engine's notes?")
        await pages.chrome.wait_for(grace, f"{lines}.length === 1")  # grace answers it
        await say(pages, grace, "grace", "On my desk, next to the first bug.")
        for tab in (ada, grace):
            await pages.chrome.wait_for(tab, f"{lines}.length === 2")
            assert await pages.chrome.evaluate(tab, lines) == [
                "ada: Has anyone seen the Analytical Engine's notes?",
                "grace: On my desk, next to the first bug.",
            ]
        await pages.shoot(ada, "chat", DESKTOP)
        await pages.shoot(grace, "chat", PHONE)

    with serve("uvicorn", "examples.chat") as server:
        run(screenshots, scenario)


@pytest.mark.servers
@needs_chromium
def test_sse_page_under_uvicorn(screenshots: Path) -> None:
    async def scenario(pages: Pages) -> None:
        for screen in (DESKTOP, PHONE):
            tab = await pages.open(f"{server.url}/", screen)
            await pages.chrome.wait_for(tab, "document.querySelectorAll('#ticks li').length >= 3")
            assert (await pages.text(tab, "#status")) == "connected"
            newest = await pages.text(tab, "#ticks li")
            assert re.fullmatch(r"tick \d+ at \S.*", newest), newest
            await pages.shoot(tab, "sse", screen)

    with serve("uvicorn", "examples.sse") as server:
        run(screenshots, scenario)


@pytest.mark.servers
@needs_chromium
def test_feed_page_under_gunicorn_workers(screenshots: Path) -> None:
    """Two pages on ``gunicorn --workers 2`` with ``redis-stream://``: what one
    posts, both show, whichever worker serves each."""

    async def post(pages: Pages, tab: str, text: str) -> None:
        await pages.chrome.evaluate(
            tab,
            f"document.getElementById('text').value = {json.dumps(text)};"
            "document.querySelector('form button').click(); true",
        )

    async def scenario(pages: Pages) -> None:
        desktop = await pages.open(f"{server.url}/", DESKTOP)
        phone = await pages.open(f"{server.url}/", PHONE)
        for tab in (desktop, phone):
            await pages.chrome.wait_for(tab, "document.querySelector('.status.connected') !== null")
            status = await pages.text(tab, "#status")
            assert re.fullmatch(r"connected to process \d+", status), status
        items = "Array.from(document.querySelectorAll('#items li strong'), (s) => s.textContent)"
        await post(pages, desktop, "The Analytical Engine weaves algebraic patterns.")
        await pages.chrome.wait_for(phone, f"{items}.length === 1")
        await post(pages, phone, "Found a moth in relay 70.")
        for tab in (desktop, phone):
            await pages.chrome.wait_for(tab, f"{items}.length === 2")
            assert await pages.chrome.evaluate(tab, items) == [  # the newest on top
                "Found a moth in relay 70.",
                "The Analytical Engine weaves algebraic patterns.",
            ]
            assert await pages.chrome.evaluate(tab, "document.getElementById('text').value") == ""
            newest = await pages.text(tab, "#items li")
            assert re.fullmatch(r"Found a moth in relay 70\. \S.* via process \d+", newest), newest
        for tab, screen in ((desktop, DESKTOP), (phone, PHONE)):
            # a tab behind another may never draw the frame a screenshot waits for
            await pages.chrome.send("Page.bringToFront", tab)
            await pages.shoot(tab, "feed", screen)

    with redis_server() as redis:
        env = {"MICROWEB_BROADCAST_URL": f"{redis.stream_url}?maxlen=1000"}
        with serve("gunicorn", "examples.feed", workers=2, threads=16, env=env) as server:
            run(screenshots, scenario)


def test_the_docs_show_every_screenshot() -> None:
    page = (DOCS / "examples.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\((img/[^)]+)\)", page)
    expected = [f"img/{name}-{kind}.png" for name in SHOTS for kind in ("desktop", "phone")]
    assert sorted(shown) == sorted(expected)
    for image in shown:
        png = (DOCS / image).read_bytes()
        width, height = png_size(png)
        screen = PHONE if image.endswith("-phone.png") else DESKTOP
        assert width == screen[0] and 100 < height <= screen[1], (image, width, height)
        assert len(png) < 100_000, f"{image} is {len(png)} bytes: optimise it"
