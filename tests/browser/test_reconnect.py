"""A lost WebSocket: the server restarts, the gallery reconnects and its cards catch up.

The API runs as a real ``vidgen serve`` process on a file-backed SQLite database, so it can
be stopped and started again on the same port. While it is down, a worker in this process
(same database, same media folder) makes the video: its changes exist only in the
database's event log, so the card can only catch up through ``videoUpdates(after:)``'s
replay when the page's socket comes back.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest_asyncio

from tests.browser.conftest import (
    WATCH_STATUSES,
    Browser,
    card,
    card_status,
    generate,
    make_user,
    sign_in,
    sqlite_backend,
)
from tests.live.processes import Process
from tests.live.redis_server import free_port
from vidgen.events.memory import MemoryBus
from vidgen.jobs.worker import Worker
from vidgen.models import Video, VideoStatus
from vidgen.runtime import Runtime
from vidgen.settings import Settings

pytestmark = sqlite_backend


class Api:
    """``vidgen serve --no-worker`` on a fixed port, which it keeps across restarts."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
        self.env.update(
            VIDGEN_DATABASE_URL=settings.resolved_database_url,
            VIDGEN_SECRET_KEY=str(settings.secret_key),
            VIDGEN_DATA_DIR=str(workdir / "data"),
            VIDGEN_MEDIA_ROOT=str(settings.resolved_media_root),
            VIDGEN_PORT=str(self.port),
            VIDGEN_PUBLIC_URL=self.url,
            VIDGEN_LOG_LEVEL="WARNING",
        )
        self.process: Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        self.process = Process(
            [sys.executable, "-m", "vidgen.cli", "serve", "--no-worker"],
            self.env,
            self.workdir / f"api-{self.starts}.log",
        )
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(600):
                if self.process.popen.poll() is not None:
                    raise RuntimeError(f"the API exited:\n{self.process.output()}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the API did not get ready:\n{self.process.output()}")

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)
            self.process = None


@pytest_asyncio.fixture
async def api(db: Settings, tmp_path: Path) -> AsyncIterator[Api]:
    server = Api(db, tmp_path)
    try:
        yield server
    finally:
        await server.stop()


async def _make_video_while_the_api_is_down(settings: Settings, video_id: int) -> None:
    runtime = Runtime.create(settings, bus=MemoryBus())
    await runtime.open()
    worker = Worker(runtime, concurrency=1)
    worker.start()
    try:
        for _ in range(1200):
            video = await Video.get(id=video_id)
            if VideoStatus(video.status) is VideoStatus.COMPLETED:
                return
            assert VideoStatus(video.status) in (VideoStatus.QUEUED, VideoStatus.PROCESSING)
            await asyncio.sleep(0.05)
        raise AssertionError("the worker did not complete the video")
    finally:
        await worker.stop(grace_seconds=0)
        await runtime.close()


async def test_cards_catch_up_after_the_server_restarts(
    db: Settings, api: Api, browser_for: Callable[[str], Browser]
) -> None:
    email = await make_user("rita@example.com")
    await api.start()
    browser = browser_for(api.url)
    page = await browser.new_page()
    await sign_in(page, api.url, email)
    page_id = await page.evaluate(WATCH_STATUSES)

    video_id = await generate(page, "a kite over a windy beach")  # no worker: stays QUEUED
    assert await card_status(page, video_id) == "QUEUED"
    row = await Video.filter(prompt="a kite over a windy beach").get()

    await api.stop()
    await page.wait_for_selector('#live-state[data-live="reconnecting"]')
    await _make_video_while_the_api_is_down(db, row.id)
    assert await card_status(page, video_id) == "QUEUED"  # nothing live reached the page

    await api.start()
    await page.wait_for_selector('#live-state[data-live="live"]')
    await page.wait_for_selector(f'{card(video_id)}[data-status="COMPLETED"] video')
    assert await page.evaluate("window.__pageId") == page_id  # caught up without a reload
    statuses = await page.evaluate("id => window.__statuses[id]", video_id)
    assert statuses[0] == "QUEUED" and statuses[-1] == "COMPLETED", statuses
    await browser.screenshot(page, "gallery-after-restart")
    await browser.assert_clean()
