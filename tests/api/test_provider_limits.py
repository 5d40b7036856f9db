"""generateVideo refuses at enqueue what the chosen provider's documented API would refuse:
per-mode resolutions and models (Runway text-to-video, OpenAI sora-2 sizes), Runway's prompt
limit in UTF-16 code units, and an input image too big to go inline as a ``data:`` URI (unless
a public https URL lets the provider fetch it). Refusals are BAD_USER_INPUT naming the field,
and write nothing: no row, no stored file."""

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
from tests.simulators.vendors import SORA_MODELS
from vidgen.settings import Settings

KEYS = {
    "runway_api_key": "key_" + "ab" * 64,
    "openai_api_key": "sk-proj-limits",
    # A gateway that routes Sora, with Sora's documented sizes and seconds.
    "openai_base_url": "https://gateway.example.com",
    "openai_models": SORA_MODELS,
    "replicate_api_key": "r8_limits",
    "google_api_key": "AIza-limits",
    "luma_api_key": "luma-limits",
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
        # Durations are each model's own: Veo 3.1 4/6/8 s (1080p at 8 s only), Veo 2 5-8 s.
        ({"provider": "google", "durationSeconds": 5}, "durationSeconds"),
        (
            {"provider": "google", "resolution": "1920x1080", "durationSeconds": 4},
            "durationSeconds",
        ),
        (
            {"provider": "google", "model": "veo-2.0-generate-001", "durationSeconds": 4},
            "durationSeconds",
        ),
        (
            {"provider": "google", "model": "veo-2.0-generate-001", "resolution": "1920x1080"},
            "resolution",
        ),
        ({"provider": "replicate", "durationSeconds": 8}, "durationSeconds"),  # minimax: 6 s
        ({"provider": "google", "model": "veo-9"}, "model"),
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
        {"provider": "google", "resolution": "1920x1080", "durationSeconds": 8},
        {"provider": "google", "model": "veo-2.0-generate-001", "durationSeconds": 5},
        {"provider": "replicate", "model": "google/veo-2", "durationSeconds": 8},
        {"provider": "luma", "resolution": "1080x1920", "durationSeconds": 9},
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


@pytest.mark.parametrize(
    ("provider", "size", "fields"),
    [
        # ~300 KB: over Replicate's 256 KB data URL limit.
        ("replicate", (320, 320), {"resolution": "1280x720", "durationSeconds": 6}),
        # ~4.4 MB of PNG is ~5.9 MB as a data URI: over Runway's 5 MB.
        ("runway", (1400, 1050), {"resolution": "1280x720"}),
    ],
)
async def test_an_image_too_big_to_inline_needs_a_public_https_url(
    db: Settings,
    alice: Account,
    provider: str,
    size: tuple[int, int],
    fields: dict[str, Any],
) -> None:
    image = noisy_png(*size)
    for public_url in (None, "http://vidgen.example.com"):
        async with start_live_server(db, public_url=public_url, **KEYS) as server:
            before = await row_counts()
            body = await upload(server, alice.token, image, provider=provider, **fields)
            message = await assert_refused(server, body, "inputImage")
            assert "VIDGEN_PUBLIC_URL" in message and "https" in message
            assert await row_counts() == before
    # With a public https URL the worker hands the provider a signed URL instead.
    async with start_live_server(db, public_url="https://vidgen.example.com", **KEYS) as server:
        body = await upload(server, alice.token, image, provider=provider, **fields)
        assert body.get("errors") is None, body
        assert body["data"]["generateVideo"]["provider"] == provider


async def test_the_inline_limit_is_each_providers_own(server: LiveServer, alice: Account) -> None:
    # Without a public URL: the same ~300 KB image is too big for Replicate (256 KB as a data
    # URL) but fine for Runway (5 MB); a ~70 KB one (~90 KB as a data URL) suits Replicate.
    before = await row_counts()
    big_for_replicate = noisy_png(320, 320)
    body = await upload(
        server,
        alice.token,
        big_for_replicate,
        provider="replicate",
        resolution="1280x720",
        durationSeconds=6,
    )
    await assert_refused(server, body, "inputImage")
    assert await row_counts() == before
    for image, provider in ((noisy_png(150, 150), "replicate"), (big_for_replicate, "runway")):
        extra = {"durationSeconds": 6} if provider == "replicate" else {}
        body = await upload(
            server, alice.token, image, provider=provider, resolution="1280x720", **extra
        )
        assert body.get("errors") is None, body


async def test_a_url_only_provider_says_so_on_input_image(
    server: LiveServer, alice: Account
) -> None:
    """Luma takes keyframe images by URL only: without a public https address it is refused
    at once, and the message says what to do (not a byte limit)."""
    body = await upload(server, alice.token, noisy_png(16, 16), provider="luma")
    message = await assert_refused(server, body, "inputImage")
    assert "URL only" in message and "VIDGEN_PUBLIC_URL" in message


PROVIDER_MODELS = """
query {
  providers {
    name available unavailableReason
    models {
      name textToVideo imageToVideo resolutions textToVideoResolutions
      imageToVideoResolutions minDurationSeconds maxDurationSeconds durations
      longestOnlyResolutions
    }
  }
}
"""


async def test_providers_lists_each_models_catalog(server: LiveServer) -> None:
    body = await server.gql(PROVIDER_MODELS)
    assert "errors" not in body, body
    providers = {p["name"]: p for p in body["data"]["providers"]}
    runway = {m["name"]: m for m in providers["runway"]["models"]}
    assert runway["gen4_turbo"]["textToVideo"] is False
    assert runway["gen4.5"]["textToVideoResolutions"] == ["1280x720", "720x1280"]
    assert len(runway["gen4.5"]["imageToVideoResolutions"]) == 6
    google = {m["name"]: m for m in providers["google"]["models"]}
    assert google["veo-2.0-generate-001"]["durations"] == [5, 6, 7, 8]
    assert google["veo-3.1-generate-preview"]["longestOnlyResolutions"] == [
        "1920x1080",
        "1080x1920",
    ]
    sora = {m["name"]: m for m in providers["openai"]["models"]}
    assert sora["sora-2"]["resolutions"] == ["720x1280", "1280x720"]
    local = providers["local"]["models"]
    assert [m["name"] for m in local] == ["scene-v1"] and local[0]["maxDurationSeconds"] == 30
    # Configured: no reason; not configured: the reason names what to set.
    assert providers["runway"]["unavailableReason"] is None
    assert providers["fal"]["available"] is False
    assert "VIDGEN_FAL_API_KEY" in providers["fal"]["unavailableReason"]


async def test_an_unavailable_provider_is_refused_with_its_reason(
    db: Settings, alice: Account
) -> None:
    """No gateway URL: OpenAI's own Videos API is gone, and the refusal says so."""
    async with start_live_server(db, openai_api_key="sk-proj-limits") as server:
        body = await generate(server, alice.token, provider="openai")
        message = await assert_refused(server, body, "provider")
        assert "VIDGEN_OPENAI_BASE_URL" in message
        providers = {p["name"]: p for p in (await server.gql(PROVIDER_MODELS))["data"]["providers"]}
        assert providers["openai"]["available"] is False
        assert "2026-09-24" in providers["openai"]["unavailableReason"]
        assert providers["openai"]["models"] == []
