"""The pipeline's media stage: files land under their keys, and nothing else is left behind."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.jobs.conftest import make_video, wait_until
from vidgen.events.memory import MemoryBus
from vidgen.jobs.worker import Worker
from vidgen.media.probe import probe
from vidgen.models import Video, VideoStatus
from vidgen.providers.base import PollResult
from vidgen.providers.testing import TestProvider, tiny_video
from vidgen.runtime import Runtime

S = VideoStatus


class AsyncDownloadProvider:
    """The test provider as an HTTP adapter looks to the engine: no blocking download."""

    def __init__(self) -> None:
        self.inner = TestProvider()
        self.name = self.inner.name
        self.capabilities = self.inner.capabilities
        self.downloads = 0

    @property
    def available(self) -> bool:
        return True

    async def submit(self, request):  # type: ignore[no-untyped-def]
        return await self.inner.submit(request)

    async def poll(self, prediction_id: str) -> PollResult:
        return await self.inner.poll(prediction_id)

    async def cancel(self, prediction_id: str) -> None:
        await self.inner.cancel(prediction_id)

    async def download(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        self.downloads += 1
        assert dest.parent.is_dir() and dest.name.endswith(".part")  # in the video's folder
        return await self.inner.download(result, dest, max_bytes=max_bytes)

    async def parse_webhook(self, headers, body, *, now):  # type: ignore[no-untyped-def]
        return await self.inner.parse_webhook(headers, body, now=now)

    async def aclose(self) -> None:
        return None


class GarbageProvider(TestProvider):
    """Succeeds, but its output is not a video."""

    def download_blocking(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        dest.write_bytes(b"this is not a video")
        return "video/mp4"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["blocking", "async"])
async def test_output_lands_under_its_keys_only(db, user, kind: str) -> None:
    provider = TestProvider() if kind == "blocking" else AsyncDownloadProvider()
    runtime = Runtime.create(db, bus=MemoryBus(), providers={"test": provider})
    await runtime.open()
    try:
        videos = [await make_video(user) for _ in range(3)]
        assert await Worker(runtime, concurrency=3).run_until_idle() == 3
        root = runtime.storage.root
        expected = []
        for video in videos:
            done = await Video.get(id=video.id)
            assert done.status == S.COMPLETED
            path = runtime.storage.path(done.video_file)
            assert path.read_bytes() == tiny_video("mp4")
            info = probe(path)
            assert (done.width, done.height, done.codec) == (info.width, info.height, info.codec)
            assert done.duration_seconds == info.duration_seconds
            assert done.file_size == len(tiny_video("mp4"))
            expected += [done.video_file, done.thumbnail_file]
        assert _files(root) == sorted(expected)  # no .part, no temp file
        if kind == "async":
            assert provider.downloads == 3
    finally:
        await runtime.close()


async def test_unreadable_output_fails_and_leaves_nothing(db, user) -> None:
    runtime = Runtime.create(db, bus=MemoryBus(), providers={"test": GarbageProvider()})
    await runtime.open()
    try:
        video = await make_video(user)
        await Worker(runtime, concurrency=1).run_until_idle()
        done = await Video.get(id=video.id)
        assert done.status == S.FAILED and "not a readable video" in (done.error_message or "")
        assert done.video_file is None and done.thumbnail_file is None
        root = runtime.storage.root
        assert not root.exists() or _files(root) == []
        assert not (root / f"u{user.id}" / f"v{video.id}").exists()
    finally:
        await runtime.close()


class StallingProvider(TestProvider):
    """Its download waits until the test lets it go (a slow download in the media thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def download_blocking(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        self.entered.set()
        self.go.wait(10)
        return super().download_blocking(result, dest, max_bytes=max_bytes)


async def test_a_job_stopped_during_its_media_stage_stores_nothing(db, user) -> None:
    provider = StallingProvider()
    runtime = Runtime.create(db, bus=MemoryBus(), providers={"test": provider})
    await runtime.open()
    try:
        video = await make_video(user)
        worker = Worker(runtime, concurrency=1)
        worker.start()
        assert await asyncio.to_thread(provider.entered.wait, 10)
        await worker.stop(grace_seconds=0)  # cancels the job, releases it to the queue
        provider.go.set()  # the media thread runs on: it must commit nothing
        folder = runtime.storage.root / f"u{user.id}" / f"v{video.id}"

        async def cleaned_up() -> bool:
            return not folder.exists()

        await wait_until(cleaned_up)
        released = await Video.get(id=video.id)
        assert released.status == S.QUEUED and released.video_file is None
        assert _files(runtime.storage.root) == []
    finally:
        provider.go.set()
        await runtime.close()
