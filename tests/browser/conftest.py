"""Browser tests: the real server on the embedded defaults, driven by the system's Chromium.

- Chromium is Debian's ``chromium`` (``/usr/bin/chromium``, or ``VIDGEN_TEST_CHROMIUM``),
  driven by Playwright; Playwright's own browser download is never used. A missing browser
  FAILS these tests (``.ci/run`` installs it), never skips them.
- Every request the page makes to a host other than the server is blocked and counted (a
  ``page.route("**/*")`` handler, plus WebSockets); so are Content-Security-Policy
  violations and uncaught page errors. Each test ends with :meth:`Browser.assert_clean`,
  and the fixture checks again at teardown.
- The server is the real app under uvicorn on a free port, on the test's own SQLite file,
  with the in-process bus, the embedded worker and the ``local`` provider (the ``test``
  provider is enabled too, for a video that stays processing). ``public_url`` is its real
  address, so signed media URLs point at it.
- Screenshots go to ``VIDGEN_TEST_ARTEFACTS`` (default ``build/test-artefacts/browser``);
  the folder is printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, Playwright, Request, Route, async_playwright

from tests.api.conftest import LiveServer, serve
from vidgen.events.memory import MemoryBus
from vidgen.providers.http import tls_context
from vidgen.runtime import Runtime
from vidgen.services import users
from vidgen.settings import Settings

CHROMIUM = Path(os.environ.get("VIDGEN_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTEFACTS = Path(
    os.environ.get(
        "VIDGEN_TEST_ARTEFACTS",
        Path(__file__).resolve().parents[2] / "build" / "test-artefacts" / "browser",
    )
)
PASSWORD = "correct horse battery staple"
#: How long a page may take to show what a test waits for (a video renders in about a
#: second; the margin is for a loaded machine).
WAIT_MS = 60_000

#: The browser tests run on SQLite only: they test the pages, not the database.
sqlite_backend = pytest.mark.parametrize("backend", ["sqlite"])

# Every page gets this before its own scripts: CSP violations are recorded where the test
# can read them (the listener is installed by the browser, not by the page).
_RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


_screenshots: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _screenshots:
        terminalreporter.write_line(
            f"browser screenshots ({len(_screenshots)}): {ARTEFACTS}", bold=True
        )


def _same_origin(url: str, origin: str) -> bool:
    parts, base = urlsplit(url), urlsplit(origin)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return (scheme, parts.netloc) == (base.scheme, base.netloc)


@dataclass
class Browser:
    """One test's browser: pages for one server, guarded and watched."""

    origin: str
    context_factory: Callable[[], Awaitable[BrowserContext]]
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)

    async def new_page(self, *, width: int = 1280, height: int = 900) -> Page:
        """A page in a context of its own (its own sessionStorage: its own user)."""
        context = await self.context_factory()
        page = await context.new_page()
        await page.set_viewport_size({"width": width, "height": height})
        await page.add_init_script(_RECORD_VIOLATIONS)
        await page.route("**/*", self._route)
        page.on("websocket", lambda ws: self._check_url(ws.url))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        page.set_default_timeout(WAIT_MS)
        self.pages.append(page)
        return page

    def _check_url(self, url: str) -> bool:
        if url.startswith(("data:", "blob:")) or _same_origin(url, self.origin):
            return True
        self.foreign.append(url)
        return False

    async def _route(self, route: Route, request: Request) -> None:
        if self._check_url(request.url):
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    async def violations(self) -> list[str]:
        found = list(self.errors)
        for page in self.pages:
            if not page.is_closed():
                with contextlib.suppress(Exception):  # a page mid-navigation
                    found += await page.evaluate("window.__cspViolations || []")
        return found

    async def assert_clean(self) -> None:
        """No request left the server's origin; no CSP violation; no uncaught error."""
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"
        assert await self.violations() == []

    async def screenshot(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        path = _artefact(f"{name}.png")
        await page.screenshot(path=str(path), full_page=full_page)
        _screenshots.append(path)
        return path


def _artefact(name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS / name


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's "
            "chromium (apt-get install -y chromium; .ci/run does it).",
            pytrace=False,
        )
    return CHROMIUM


@pytest_asyncio.fixture
async def playwright(chromium_path: Path) -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest_asyncio.fixture
async def browser_for(
    playwright: Playwright, chromium_path: Path
) -> AsyncIterator[Callable[[str], Browser]]:
    """``browser_for(server_url)``: a guarded browser for that server. Checked clean at
    teardown."""
    chromium = await playwright.chromium.launch(
        executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True
    )
    made: list[Browser] = []

    def make(origin: str) -> Browser:
        browser = Browser(origin=origin, context_factory=chromium.new_context)
        made.append(browser)
        return browser

    try:
        yield make
        for browser in made:
            await browser.assert_clean()
    finally:
        await chromium.close()


def browser_settings(settings: Settings) -> Settings:
    """The test's settings for a server with everything embedded, fast and small."""
    settings.embedded_worker = True
    settings.local_frame_rate = 12.0
    settings.thumbnail_width = 160
    settings.worker_poll_seconds = 0.2
    return settings


@pytest_asyncio.fixture
async def server(db: Settings) -> AsyncIterator[LiveServer]:
    """The app with its embedded worker on a free port; ``public_url`` is its address."""
    from vidgen.web.app import create_app

    settings = browser_settings(db)
    runtime = Runtime.create(settings, bus=MemoryBus())
    app = create_app(settings, runtime=runtime, manage_database=False, embedded_worker=True)
    async with serve(app) as url:
        settings.public_url = url
        async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as client:
            yield LiveServer(url=url, app=app, runtime=runtime, settings=settings, client=client)


@pytest_asyncio.fixture
async def browser(server: LiveServer, browser_for: Callable[[str], Browser]) -> Browser:
    return browser_for(server.url)


async def make_user(email: str) -> str:
    """A user who signs in with :data:`PASSWORD`; returns the email."""
    await users.create_user(email=email, password=PASSWORD)
    return email


async def sign_in(page: Page, url: str, email: str, password: str = PASSWORD) -> None:
    """Open the gallery and sign in through its form."""
    await page.goto(f"{url}/")
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector('body[data-state="signed-in"]')
    await page.wait_for_selector('#live-state[data-live="live"]')


async def card_status(page: Page, video_id: str) -> str | None:
    return await page.get_attribute(f'[data-video-id="{video_id}"]', "data-status")


# Records every data-status a card shows, in order, from the moment it is added: the test
# can then tell "QUEUED, then COMPLETED, live" from "COMPLETED after a reload".
WATCH_STATUSES = """
() => {
  window.__statuses = {};
  window.__pageId = Math.random();
  const note = (card) => {
    const seen = (window.__statuses[card.dataset.videoId] ||= []);
    if (seen[seen.length - 1] !== card.dataset.status) seen.push(card.dataset.status);
  };
  document.querySelectorAll("[data-video-id]").forEach(note);
  new MutationObserver((records) => {
    for (const r of records) {
      const nodes = r.type === "attributes" ? [r.target] : [...r.addedNodes];
      for (const n of nodes) if (n.dataset && n.dataset.videoId) note(n);
    }
  }).observe(document.getElementById("cards"), {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
  });
  return window.__pageId;
}
"""


async def generate(
    page: Page,
    prompt: str,
    *,
    provider: str = "local",
    image: Path | None = None,
    tags: str = "",
) -> str:
    """Fill the generate form (a short, small video) and submit; the new card's id."""
    before = set(
        await page.eval_on_selector_all("[data-video-id]", "els => els.map(e => e.dataset.videoId)")
    )
    await page.select_option('select[name="provider"]', provider)
    await page.fill('textarea[name="prompt"]', prompt)
    if provider == "local":
        await page.select_option('select[name="resolution"]', "512x512")
        await page.fill('input[name="durationSeconds"]', "1")
    if image is not None:
        await page.set_input_files('input[name="inputImage"]', str(image))
    await page.fill('input[name="tags"]', tags)
    await page.get_by_role("button", name="Generate").click()
    await page.wait_for_function(
        "n => document.querySelectorAll('[data-video-id]').length > n", arg=len(before)
    )
    after = await page.eval_on_selector_all(
        "[data-video-id]", "els => els.map(e => e.dataset.videoId)"
    )
    (new,) = [i for i in after if i not in before]
    return new


def card(video_id: str) -> str:
    return f'[data-video-id="{video_id}"]'


async def wait_status(page: Page, video_id: str, status: str) -> None:
    await page.wait_for_selector(f'{card(video_id)}[data-status="{status}"]')
