"""Stability specifics: image-to-video only, fitted input, 202 polling, 403 = moderation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.providers.conftest import Harness, png
from tests.providers.helpers import poll_to_end
from vidgen.providers.base import PredictionLost, ProviderError, State, WebhookRejected


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
