"""The job engine, the retention purge and readiness with their media in an object store
(moto's S3 server): every byte goes through the storage, nothing stays on the local disk."""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from PIL import Image
from starlette.applications import Starlette

from tests.jobs.conftest import make_video
from vidgen import errors
from vidgen.events.memory import MemoryBus
from vidgen.jobs.worker import Worker
from vidgen.media import retention
from vidgen.media.storage import make_key
from vidgen.media.storage.s3 import S3Storage
from vidgen.models import User, Video
from vidgen.providers.base import GenerationRequest, Submission
from vidgen.providers.registry import build_providers
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.services import videos
from vidgen.settings import Settings
from vidgen.web.health import health_routes

pytestmark = pytest.mark.sqlite_only  # the storage is under test here, not the database

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)


class RecordingProvider(TestProvider):
    """The test provider, keeping every request it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[GenerationRequest] = []

    async def submit(self, request: GenerationRequest) -> Submission:
        self.requests.append(request)
        return await super().submit(request)


@pytest_asyncio.fixture
async def s3_runtime(s3_settings: Settings, db: Settings) -> AsyncIterator[Runtime]:
    provider = RecordingProvider()
    runtime = Runtime.create(s3_settings, bus=MemoryBus(), providers={"test": provider})
    assert isinstance(runtime.storage, S3Storage)
    assert await runtime.storage.create_bucket()
    await runtime.open()
    try:
        yield runtime
    finally:
        await runtime.close()


async def _keys(runtime: Runtime) -> list[str]:
    return sorted([found.key async for found in runtime.storage.list_objects()])


@pytest.mark.parametrize("public", [False, True])
async def test_a_job_stores_its_output_in_the_bucket(s3_runtime: Runtime, public: bool) -> None:
    s3_runtime.settings.s3_public = public
    storage = s3_runtime.storage
    user = await User.create(email="s3@example.com", password_hash="x")
    video = await make_video(user, "succeed")
    key = make_key(user.id, video.id, "input", "png")
    await storage.save_bytes(key, PNG)
    await Video.filter(id=video.id).update(input_image=key)

    await Worker(s3_runtime, concurrency=1).run_until_idle()

    done = await Video.get(id=video.id)
    assert done.status == "completed", done.error_message
    assert await _keys(s3_runtime) == sorted([key, done.video_file, done.thumbnail_file])
    stored = await storage.stat(done.video_file)
    assert stored is not None and stored.size == done.file_size > 0
    assert (await storage.read_bytes(done.thumbnail_file))[:3] == b"\xff\xd8\xff"  # a JPEG
    # Nothing stays behind: no scratch file, no upload left open.
    assert not storage.scratch_dir.exists() or list(storage.scratch_dir.iterdir()) == []
    assert await storage.incomplete_uploads() == []

    # The provider got the image's bytes, and with the store public its presigned URL.
    [request] = s3_runtime.providers["test"].requests
    assert request.input_image is not None and request.input_image.data == PNG
    if public:
        url = request.input_image.url
        assert url is not None and url.startswith(s3_runtime.settings.s3_endpoint_url)
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(24 * 3600)]
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).content == PNG
    else:
        assert request.input_image.url is None  # no public address: inline only


async def test_purge_removes_expired_and_orphaned_objects(s3_runtime: Runtime) -> None:
    storage = s3_runtime.storage
    user = await User.create(email="purge@example.com", password_hash="x")
    gone = await make_video(user, "succeed")
    kept = await make_video(user, "succeed")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    gone_key, kept_key = (
        make_key(user.id, gone.id, "video", "mp4"),
        make_key(user.id, kept.id, "video", "mp4"),
    )
    orphan = make_key(user.id, 999_999, "video", "mp4")
    for key in (gone_key, kept_key, orphan):
        await storage.save_bytes(key, b"video")
    await Video.filter(id=gone.id).update(video_file=gone_key, deleted_at=old, status="completed")
    await Video.filter(id=kept.id).update(video_file=kept_key)

    report = await retention.purge(
        settings=s3_runtime.settings, storage=storage, orphan_grace_seconds=0
    )
    assert report.videos == [gone.id] and report.orphans == [orphan]
    assert await _keys(s3_runtime) == [kept_key]


async def test_readiness_reports_the_store(s3_runtime: Runtime) -> None:
    app = Starlette(routes=health_routes(s3_runtime))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["storage"] is True
        # The bucket goes away (deleted by someone): not ready, saying which check failed.
        assert isinstance(s3_runtime.storage, S3Storage)
        storage = s3_runtime.storage
        async for found in storage.list_objects():
            await storage.delete(found.key)
        await storage._run("delete_object", Key=storage._probe_key())
        await storage._run("delete_bucket")
        gone = await http.get("/readyz")
    assert gone.status_code == 503
    assert gone.json()["checks"] == {"database": True, "bus": True, "storage": False}


async def test_a_public_store_lifts_the_inline_image_limit(
    s3_settings: Settings, db: Settings
) -> None:
    """Over Replicate's 256 KB data-URL cap, an uploaded image is refused while providers
    cannot fetch it by URL, and accepted when the store's presigned URLs are public (the
    worker then sends the store's URL instead of a data URI)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (320, 320), os.urandom(320 * 320 * 3)).save(
        buffer, format="PNG", compress_level=0
    )
    image = buffer.getvalue()
    assert len(image) > 256 * 1024
    s3_settings.replicate_api_key = "r8_test"
    owner = await User.create(email="inline@example.com", password_hash="x")
    for public in (False, True):
        s3_settings.s3_public = public
        runtime = Runtime.create(
            s3_settings, bus=MemoryBus(), providers=build_providers(s3_settings)
        )
        if not public:
            assert await runtime.storage.create_bucket()
        await runtime.open()
        try:
            request = dict(
                runtime=runtime,
                viewer=owner,
                prompt="pan over it",
                provider="replicate",
                input_image=image,
                resolution="1280x720",
                duration_seconds=6,
            )
            if public:
                video = await videos.generate_video(**request)
                assert video.input_image is not None
                assert await runtime.storage.exists(video.input_image)
            else:
                with pytest.raises(errors.BadUserInput) as refused:
                    await videos.generate_video(**request)
                assert refused.value.field == "inputImage"
                assert "VIDGEN_S3_PUBLIC" in str(refused.value)
                assert await Video.all().count() == 0
        finally:
            await runtime.close()
