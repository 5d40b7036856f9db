"""An input image too big to go inline reaches the provider as a signed https media URL.

The engine against the Replicate adapter and its simulator over real HTTP: Replicate takes a
``data:`` URI only up to 256 KB, so a bigger image is sent as a URL of this server's media
route (signed, valid long enough for a queued provider to fetch it) when the server has a
public https address; a small one still goes inline.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest_asyncio

from tests.jobs.conftest import make_video
from tests.simulators.replicate import ReplicateSimulator
from tests.simulators.server import aserve
from tests.simulators.vendors import VENDORS, adapter_settings
from vidgen.events.memory import MemoryBus
from vidgen.jobs.worker import Worker
from vidgen.media import signing
from vidgen.media.storage import make_key
from vidgen.models import User, Video
from vidgen.providers.replicate import ReplicateProvider
from vidgen.runtime import Runtime
from vidgen.settings import Settings

PUBLIC = "https://vidgen.example.com"


@pytest_asyncio.fixture
async def replicate(db: Settings) -> AsyncIterator[tuple[ReplicateSimulator, Runtime]]:
    sim = ReplicateSimulator(api_key=VENDORS["replicate"].key)
    async with aserve(sim.app) as url:
        sim.base_url = url
        provider = ReplicateProvider(adapter_settings("replicate", url))
        provider.capabilities = dataclasses.replace(
            provider.capabilities, min_poll_interval=0.01, max_poll_interval=0.05
        )
        db.public_url = PUBLIC
        runtime = Runtime.create(db, bus=MemoryBus(), providers={"replicate": provider})
        await runtime.open()
        try:
            yield sim, runtime
        finally:
            await runtime.close()


async def _submitted_image(sim: ReplicateSimulator, runtime: Runtime, size: int) -> str:
    user = await User.create(email=f"img{size}@example.com", password_hash="x")
    video = await make_video(
        user, "a fox", provider="replicate", resolution="1280x720", duration_seconds=6
    )
    key = make_key(user.id, video.id, "input", "png")
    await runtime.storage.save_bytes(key, b"\x89PNG\r\n\x1a\n" + os.urandom(size))
    await Video.filter(id=video.id).update(input_image=key)
    before = len(sim.received)
    await Worker(runtime, concurrency=1).run_until_idle()
    assert (await Video.get(id=video.id)).status == "completed"
    assert len(sim.received) == before + 1
    image = sim.received[before]["input"]["first_frame_image"]
    assert isinstance(image, str)
    return image


async def test_a_big_input_image_goes_as_a_signed_https_url(replicate) -> None:
    sim, runtime = replicate
    url = await _submitted_image(sim, runtime, 300_000)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    key = parts.path.removeprefix("/media/")
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    secret = runtime.settings.resolved_secret_key
    assert signing.verify(key, query["exp"], query["sig"], secret)
    assert key.endswith("/input.png")


async def test_a_small_input_image_still_goes_inline(replicate) -> None:
    sim, runtime = replicate
    image = await _submitted_image(sim, runtime, 10_000)
    assert image.startswith("data:image/png;base64,")
