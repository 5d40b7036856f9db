"""generateVideo refuses at enqueue what the chosen provider's documented API would refuse:
per-mode resolutions and models (Runway text-to-video, OpenAI sora-2 sizes) and Runway's prompt
limit in UTF-16 code units. Refusals are BAD_USER_INPUT naming the field, and write nothing:
no row, no stored file."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, media_files, row_counts, start_live_server
from vidgen.settings import Settings

KEYS = {
    "runway_api_key": "key_" + "ab" * 64,
    "openai_api_key": "sk-proj-limits",
    "replicate_api_key": "r8_limits",
}

UPLOAD = """
mutation Upload($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id provider model resolution }
}
"""


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: about width * height * 3 bytes."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=0)
    return out.getvalue()


@pytest_asyncio.fixture
async def server(db: Settings) -> AsyncIterator[LiveServer]:
    async with start_live_server(db, **KEYS) as live:
        yield live


async def generate(server: LiveServer, token: str, **input_: Any) -> dict[str, Any]:
    return await server.gql(d.GENERATE_VIDEO, {"input": {"prompt": "a fox", **input_}}, token=token)


async def upload(server: LiveServer, token: str, image: bytes, **input_: Any) -> dict[str, Any]:
    response = await server.upload(
        UPLOAD,
        {"input": {"prompt": "pan over it", "inputImage": None, **input_}},
        {"variables.input.inputImage": ("in.png", image, "image/png")},
        token=token,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def assert_refused(server: LiveServer, body: dict[str, Any], field: str) -> str:
    error = d.only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, body
    assert media_files(server.settings) == []
    return str(error["message"])


@pytest.mark.parametrize(
    ("input_", "field"),
    [
        # Runway text_to_video: gen4.5 only, 1280:720 or 720:1280 only.
        ({"provider": "runway", "resolution": "960x960"}, "resolution"),
        ({"provider": "runway", "resolution": "1584x672", "model": "gen4.5"}, "resolution"),
        ({"provider": "runway", "resolution": "1280x720", "model": "gen4_turbo"}, "model"),
        # 600 characters outside the BMP are 1200 UTF-16 code units (Runway's limit: 1000).
        ({"provider": "runway", "prompt": "\U0001f98a" * 600}, "prompt"),
        # sora-2 (the default model) only makes 720x1280 and 1280x720.
        ({"provider": "openai", "resolution": "1792x1024"}, "resolution"),
        ({"provider": "openai", "resolution": "1024x1792", "model": "sora-2"}, "resolution"),
    ],
)
async def test_what_the_provider_refuses_is_refused_at_enqueue(
    server: LiveServer, alice: Account, input_: dict[str, Any], field: str
) -> None:
    before = await row_counts()
    await assert_refused(server, await generate(server, alice.token, **input_), field)
    assert await row_counts() == before


async def test_what_the_provider_takes_is_still_queued(server: LiveServer, alice: Account) -> None:
    t = alice.token
    accepted = [
        {"provider": "runway", "resolution": "720x1280"},
        {"provider": "runway", "prompt": "\U0001f98a" * 500},  # exactly 1000 UTF-16 units
        {"provider": "openai", "resolution": "1792x1024", "model": "sora-2-pro"},
        {"provider": "openai", "resolution": "1280x720"},
    ]
    for input_ in accepted:
        body = await generate(server, t, **input_)
        assert body.get("errors") is None, (input_, body)
    # Image-to-video keeps every ratio and both Runway models.
    body = await upload(server, t, noisy_png(64, 64), provider="runway", resolution="960x960")
    assert body.get("errors") is None, body
    body = await upload(
        server, t, noisy_png(64, 64), provider="runway", resolution="1584x672", model="gen4_turbo"
    )
    assert body.get("errors") is None, body
    # ...and text-to-video refuses the same request without the image.
    body = await generate(server, t, provider="runway", resolution="1584x672", model="gen4_turbo")
    assert d.only_error(body)["extensions"]["field"] in ("model", "resolution")
