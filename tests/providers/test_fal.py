"""fal specifics: model paths, queue position and logs, cancel, Ed25519 webhooks with JWKS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.providers.conftest import KEYS, Harness, png
from tests.providers.helpers import poll_to_end, send_raw
from tests.simulators import FalSimulator
from tests.simulators.media import data_uri_image
from vidgen.providers.base import Mode, ProviderError, State, WebhookRejected

MODEL = "fal-ai/kling-video/v2/master/text-to-video"  # as configured before families
JWKS = ("GET", "/.well-known/jwks.json")


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def fal(open_harness: Callable[..., Any], signing_key: Ed25519PrivateKey) -> Harness:
    sim = FalSimulator(api_key=KEYS["fal"], signing_key=signing_key)
    return await open_harness("fal", sim=sim, fal_model=MODEL)


def sim_of(harness: Harness) -> FalSimulator:
    assert isinstance(harness.sim, FalSimulator)
    return harness.sim


async def test_text_request_goes_to_the_model_path(fal: Harness) -> None:
    request = fal.request(webhook_url="https://example.test/hooks/fal", resolution="720x1280")
    await fal.provider.submit(request)
    assert ("POST", f"/{MODEL}") in fal.sim.requests
    assert fal.sim.received[-1] == {
        "prompt": "a red fox running through snow",
        "duration": "5",
        "aspect_ratio": "9:16",
        "model": MODEL,
    }
    job = next(iter(fal.sim.jobs.values()))
    assert job.webhook_url == "https://example.test/hooks/fal"


async def test_image_request_goes_to_the_image_to_video_sibling(fal: Harness) -> None:
    await fal.provider.submit(fal.request(input_image=png(), resolution="720x1280"))
    body = fal.sim.received[-1]
    assert body["model"] == "fal-ai/kling-video/v2/master/image-to-video"
    assert body["image_url"].startswith("data:image/png;base64,")
    # Kling's image-to-video lists no aspect_ratio: the clip follows the image, which is
    # therefore cropped to the preset asked for.
    assert "aspect_ratio" not in body
    assert data_uri_image(body["image_url"]) == ("PNG", (720, 1280))
    assert fal.sim.dropped == [()]


async def test_families_and_their_endpoints(fal: Harness) -> None:
    caps = fal.provider.capabilities
    assert caps.default_model == "fal-ai/kling-video/v2/master"  # from the endpoint setting
    assert caps.models_for(Mode.TEXT) == ("fal-ai/kling-video/v2/master",)
    assert caps.models_for(Mode.IMAGE) == (
        "fal-ai/kling-video/v2/master",
        "fal-ai/kling-video/v2.1/standard",
    )
    standard = "fal-ai/kling-video/v2.1/standard"
    await fal.provider.submit(fal.request(model=standard, input_image=png()))
    assert fal.sim.received[-1]["model"] == f"{standard}/image-to-video"
    with pytest.raises(ProviderError) as caught:
        await fal.provider.submit(fal.request(model=standard))  # no text-to-video there
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert fal.sim.submissions == 1


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("fal-ai/kling-video/v2/master/text-to-video", {"duration": "7"}, 422),
        ("fal-ai/kling-video/v2/master/text-to-video", {"aspect_ratio": "4:3"}, 422),
        ("fal-ai/kling-video/v2/master/image-to-video", {"image_url": "data:,nope"}, 422),
        ("fal-ai/kling-video/v9/nothing", {}, 404),
    ],
)
async def test_the_simulator_checks_each_endpoints_schema(
    fal: Harness, path: str, body: dict[str, Any], status: int
) -> None:
    values = {"prompt": "a fox", "image_url": "https://example.com/in.png", **body}
    if path.endswith("text-to-video"):
        values.pop("image_url")
    response = await send_raw(fal.provider, "POST", f"{fal.base_url}/{path}", json=values)
    assert response.status_code == status, response.text
    assert fal.sim.submissions == 0


async def test_another_process_can_poll_from_the_request_id_alone(fal: Harness) -> None:
    submission = await fal.provider.submit(fal.request())
    fresh = fal.make()  # remembers no URLs from submit
    _, final = await poll_to_end(fresh, submission.prediction_id)
    assert final.state is State.SUCCEEDED
    path = f"/fal-ai/kling-video/requests/{submission.prediction_id}/status"
    assert ("GET", path) in fal.sim.requests


async def test_cancel_queued_request(fal: Harness) -> None:
    submission = await fal.provider.submit(fal.request())
    await fal.provider.cancel(submission.prediction_id)
    result = await fal.provider.poll(submission.prediction_id)
    assert result.state is State.CANCELED
    await fal.provider.cancel(submission.prediction_id)  # ALREADY_COMPLETED (400) is fine
    await fal.provider.cancel("unknown")  # NOT_FOUND is fine


async def test_good_webhook_is_accepted_and_keys_are_cached(fal: Harness) -> None:
    submission = await fal.provider.submit(fal.request())
    await poll_to_end(fal.provider, submission.prediction_id)
    job = sim_of(fal).jobs[submission.prediction_id]
    for _ in range(2):
        headers, body = sim_of(fal).webhook_payload(job)
        event = await fal.provider.parse_webhook(headers, body, now=time.time())
        assert event.prediction_id == submission.prediction_id
        assert event.result is not None and event.result.state is State.SUCCEEDED
        assert event.result.output_url and event.result.output_url.endswith(".mp4")
    assert fal.sim.requests.count(JWKS) == 1


async def test_error_webhook_is_a_failed_result(fal: Harness) -> None:
    fal.sim.scenario.outcome = "policy"
    submission = await fal.provider.submit(fal.request())
    await poll_to_end(fal.provider, submission.prediction_id)
    headers, body = sim_of(fal).webhook_payload(sim_of(fal).jobs[submission.prediction_id])
    event = await fal.provider.parse_webhook(headers, body, now=time.time())
    assert event.result is not None and event.result.state is State.FAILED
    assert event.result.error is not None and not event.result.error.retryable


async def test_bad_signature_stale_and_tampered_webhooks_are_rejected(fal: Harness) -> None:
    submission = await fal.provider.submit(fal.request())
    job = sim_of(fal).jobs[submission.prediction_id]
    headers, body = sim_of(fal).webhook_payload(job, signing_key=Ed25519PrivateKey.generate())
    with pytest.raises(WebhookRejected):
        await fal.provider.parse_webhook(headers, body, now=time.time())
    headers, body = sim_of(fal).webhook_payload(job, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookRejected):
        await fal.provider.parse_webhook(headers, body, now=time.time())
    headers, body = sim_of(fal).webhook_payload(job)
    with pytest.raises(WebhookRejected):
        await fal.provider.parse_webhook(headers, body + b" ", now=time.time())
    with pytest.raises(WebhookRejected):
        await fal.provider.parse_webhook({}, body, now=time.time())


async def test_unreachable_jwks_rejects_the_webhook(fal: Harness) -> None:
    provider = fal.make(fal_jwks_url=f"{fal.base_url}/no-such-jwks")
    submission = await fal.provider.submit(fal.request())
    headers, body = sim_of(fal).webhook_payload(sim_of(fal).jobs[submission.prediction_id])
    with pytest.raises(WebhookRejected):
        await provider.parse_webhook(headers, body, now=time.time())


# --- error types: infrastructure failures are retryable, the request's faults are not ---------


@pytest.mark.parametrize(
    "error_type",
    [
        "runner_disconnected",
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "internal_server_error",
    ],
)
async def test_infrastructure_failures_are_retryable(fal: Harness, error_type: str) -> None:
    fal.sim.scenario.outcome = "fail"
    sim_of(fal).error_type = error_type
    submission = await fal.provider.submit(fal.request())
    _, final = await poll_to_end(fal.provider, submission.prediction_id)
    assert final.state is State.FAILED and final.error is not None
    assert (final.error.retryable, final.error.code) == (True, "prediction_failed")
    assert error_type in final.error.message


@pytest.mark.parametrize("error_type", [None, "image_too_small", "no_media_generated"])
async def test_the_requests_own_failures_are_permanent(fal: Harness, error_type: str) -> None:
    fal.sim.scenario.outcome = "fail"
    sim_of(fal).error_type = error_type
    submission = await fal.provider.submit(fal.request())
    _, final = await poll_to_end(fal.provider, submission.prediction_id)
    assert final.error is not None
    assert (final.error.retryable, final.error.code) == (False, "prediction_failed")


async def test_a_transient_error_mentioning_safety_stays_retryable(fal: Harness) -> None:
    fal.sim.scenario.outcome = "fail"
    sim_of(fal).error_type = "runner_disconnected"
    sim_of(fal).error_text = "Runner disconnected while running the safety checker."
    submission = await fal.provider.submit(fal.request())
    _, final = await poll_to_end(fal.provider, submission.prediction_id)
    assert final.error is not None
    assert (final.error.retryable, final.error.code) == (True, "prediction_failed")


async def test_error_webhook_with_an_infrastructure_error_is_retryable(fal: Harness) -> None:
    fal.sim.scenario.outcome = "fail"
    sim_of(fal).error_type = "runner_disconnected"
    submission = await fal.provider.submit(fal.request())
    await poll_to_end(fal.provider, submission.prediction_id)
    headers, body = sim_of(fal).webhook_payload(sim_of(fal).jobs[submission.prediction_id])
    event = await fal.provider.parse_webhook(headers, body, now=time.time())
    assert event.result is not None and event.result.error is not None
    assert event.result.error.retryable


async def test_deeply_nested_status_is_a_malformed_response(fal: Harness) -> None:
    submission = await fal.provider.submit(fal.request())
    fal.sim.scenario.fail_next("poll", "deep")
    with pytest.raises(ProviderError) as caught:
        await fal.provider.poll(submission.prediction_id)
    assert (caught.value.retryable, caught.value.code) == (True, "malformed_response")


# --- webhooks: replays are recognisable, garbage headers are rejections -----------------------


async def test_a_replayed_webhook_has_the_same_delivery_id(fal: Harness) -> None:
    submission = await fal.provider.submit(fal.request())
    job = sim_of(fal).jobs[submission.prediction_id]
    now = int(time.time())
    headers, body = sim_of(fal).webhook_payload(job, timestamp=now)
    first = await fal.provider.parse_webhook(headers, body, now=now)
    replay = await fal.provider.parse_webhook(headers, body, now=now + 10)
    assert first.delivery_id and first.delivery_id == replay.delivery_id
    headers2, body2 = sim_of(fal).webhook_payload(job, timestamp=now + 1)
    another = await fal.provider.parse_webhook(headers2, body2, now=now + 1)
    assert another.delivery_id != first.delivery_id


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Fal-Webhook-Timestamp", "9" * 400),
        ("X-Fal-Webhook-Timestamp", "\u0661\u0662\u0663"),
        ("X-Fal-Webhook-Signature", "\u00e9" * 128),
    ],
)
async def test_garbage_signature_headers_are_rejected(
    fal: Harness, header: str, value: str
) -> None:
    submission = await fal.provider.submit(fal.request())
    headers, body = sim_of(fal).webhook_payload(sim_of(fal).jobs[submission.prediction_id])
    with pytest.raises(WebhookRejected):
        await fal.provider.parse_webhook({**headers, header: value}, body, now=time.time())
