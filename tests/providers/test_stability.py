"""Stability specifics: image-to-video only, fitted input, 202 polling, 403 = moderation."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.providers.conftest import Harness, png
from tests.providers.helpers import assert_playable, poll_to_end
from tests.simulators import StabilitySimulator
from vidgen.providers.base import (
    InputImage,
    PredictionLost,
    ProviderError,
    State,
    WebhookRejected,
)


@pytest.fixture
async def stability(open_harness: Callable[..., Any]) -> Harness:
    return await open_harness("stability")


def test_capabilities_are_image_to_video_only(stability: Harness) -> None:
    caps = stability.provider.capabilities
    assert (caps.text_to_video, caps.image_to_video) == (False, True)
    assert set(caps.resolutions) == {"1024x576", "576x1024", "768x768"}
    assert (caps.cancellable, caps.webhooks) == (False, False)


async def test_text_only_request_is_refused_without_calling_stability(stability: Harness) -> None:
    with pytest.raises(ProviderError) as caught:
        await stability.provider.submit(stability.request(input_image=None))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert stability.sim.requests == []


@pytest.mark.parametrize("resolution", ["1024x576", "576x1024", "768x768"])
async def test_input_image_is_fitted_to_the_preset(stability: Harness, resolution: str) -> None:
    await stability.provider.submit(
        stability.request(resolution=resolution, input_image=png(333, 777), seed=5)
    )
    assert stability.sim.received[-1] == {"seed": "5", "image_size": resolution}


async def test_moderation_403_is_content_policy_not_auth(stability: Harness) -> None:
    stability.sim.scenario.fail_next("submit", "403")
    with pytest.raises(ProviderError) as caught:
        await stability.provider.submit(stability.request())
    assert (caught.value.retryable, caught.value.code) == (False, "content_policy")


async def test_a_failed_generation_is_a_retryable_generation_error(stability: Harness) -> None:
    stability.sim.scenario.outcome = "fail"
    submission = await stability.provider.submit(stability.request())
    with pytest.raises(ProviderError) as caught:
        await poll_to_end(stability.provider, submission.prediction_id)
    assert (caught.value.retryable, caught.value.code) == (True, "generation_error")


async def test_expired_result_is_lost(stability: Harness) -> None:
    with pytest.raises(PredictionLost):
        await stability.provider.poll("f" * 64)


async def test_cancel_is_a_no_op_and_webhooks_are_refused(stability: Harness) -> None:
    submission = await stability.provider.submit(stability.request())
    before = list(stability.sim.requests)
    await stability.provider.cancel(submission.prediction_id)
    assert stability.sim.requests == before
    with pytest.raises(WebhookRejected):
        await stability.provider.parse_webhook({}, b"", now=0.0)
    _, final = await poll_to_end(stability.provider, submission.prediction_id)
    assert final.state is State.SUCCEEDED


async def test_429_without_retry_after_waits_out_the_documented_lock_out(
    stability: Harness,
) -> None:
    """Stability: "429 and a 60 s lock-out"; it does not promise a Retry-After."""
    stability.sim.scenario.retry_after = None
    stability.sim.scenario.fail_next("submit", "429")
    with pytest.raises(ProviderError) as caught:
        await stability.provider.submit(stability.request())
    error = caught.value
    assert (error.retryable, error.code, error.retry_after) == (True, "rate_limited", 60.0)


def webp(width: int, height: int) -> InputImage:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 60, 200)).save(out, format="WEBP")
    return InputImage(data=out.getvalue(), content_type="image/webp")


@pytest.mark.parametrize("resolution", ["1024x576", "576x1024", "768x768"])
async def test_a_webp_already_at_an_accepted_size_is_converted(
    stability: Harness, resolution: str
) -> None:
    """Stability takes JPEG and PNG only: a WebP is re-encoded even when its size fits."""
    width, height = (int(side) for side in resolution.split("x"))
    await stability.provider.submit(
        stability.request(resolution=resolution, input_image=webp(width, height))
    )
    assert stability.sim.received[-1] == {"image_size": resolution}


async def test_content_filtering_is_read_from_the_json_result(stability: Harness) -> None:
    """The finish reason is documented in the JSON body only (a video/* answer carries no
    finish-reason header): a filtered result must not be taken for a success."""
    stability.sim.scenario.outcome = "policy"
    submission = await stability.provider.submit(stability.request())
    _, final = await poll_to_end(stability.provider, submission.prediction_id)
    assert final.state is State.FAILED and final.error is not None
    assert (final.error.retryable, final.error.code) == (False, "content_policy")
    assert "CONTENT_FILTERED" in final.error.message


async def test_the_finished_poll_carries_the_video(stability: Harness, tmp_path: Path) -> None:
    submission = await stability.provider.submit(stability.request())
    _, final = await poll_to_end(stability.provider, submission.prediction_id)
    requests_before = len(stability.sim.requests)
    dest = tmp_path / "video.mp4"
    assert stability.provider.download_blocking(final, dest, max_bytes=10**8) == "video/mp4"
    assert_playable(dest)
    assert len(stability.sim.requests) == requests_before  # no second fetch
    polls = [path for _, path in stability.sim.requests if "/result/" in path]
    assert polls and all(accept == "application/json" for accept in stability.sim.accepts), (
        stability.sim.accepts
    )


async def test_a_withdrawn_api_makes_the_provider_unavailable_with_the_reason(
    stability: Harness,
) -> None:
    """If Stability no longer serves image-to-video, the first 404 on the start route says
    so in ``providers`` (unavailable, with the reason) instead of failing every job."""
    sim = stability.sim
    assert isinstance(sim, StabilitySimulator)
    sim.discontinued = True
    assert stability.provider.available
    with pytest.raises(ProviderError) as caught:
        await stability.provider.submit(stability.request())
    assert (caught.value.retryable, caught.value.code) == (False, "provider_gone")
    assert not stability.provider.available
    reason = stability.provider.unavailable_reason or ""
    assert "404" in reason and "docs/providers.md" in reason
    requests = len(sim.requests)
    with pytest.raises(ProviderError) as again:
        await stability.provider.submit(stability.request())
    assert again.value.code == "unavailable"
    assert len(sim.requests) == requests  # nothing more is sent
