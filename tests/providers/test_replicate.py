"""Replicate specifics: model vs version paths, webhooks (Standard Webhooks), cancel."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.providers.conftest import Harness, png
from tests.providers.helpers import poll_to_end, send_raw
from tests.simulators import ReplicateSimulator
from tests.simulators.common import new_whsec
from tests.simulators.replicate import version_of
from tests.simulators.server import aserve
from vidgen.providers.base import (
    InputImage,
    PredictionLost,
    ProviderError,
    State,
    WebhookEvent,
    WebhookRejected,
)

VERSION = version_of("minimax/video-01")


@pytest.fixture
async def replicate(open_harness: Callable[..., Any]) -> Harness:
    sim = ReplicateSimulator(api_key="r8_SimulatedReplicateToken0123456789")
    return await open_harness("replicate", sim=sim, replicate_webhook_secret=sim.webhook_secret)


async def test_official_model_uses_the_models_path(replicate: Harness) -> None:
    request = replicate.request(webhook_url="https://example.test/hooks/replicate")
    submission = await replicate.provider.submit(request)
    assert submission.state is State.QUEUED
    assert ("POST", "/v1/models/minimax/video-01/predictions") in replicate.sim.requests
    body = replicate.sim.received[-1]
    assert body["input"] == {"prompt": "a red fox running through snow"}
    assert body["webhook"] == "https://example.test/hooks/replicate"
    assert body["webhook_events_filter"] == ["start", "completed"]


async def test_version_id_uses_the_predictions_path(replicate: Harness) -> None:
    provider = replicate.make(replicate_model=f"minimax/video-01:{VERSION}")
    assert provider.capabilities.default_model == "minimax/video-01"
    await provider.submit(replicate.request(input_image=png()))
    assert ("POST", "/v1/predictions") in replicate.sim.requests
    body = replicate.sim.received[-1]
    assert body["version"] == f"minimax/video-01:{VERSION}"
    assert body["input"]["first_frame_image"].startswith("data:image/png;base64,")
    assert "webhook" not in body


async def test_the_simulator_knows_its_models_and_versions(replicate: Harness) -> None:
    """Replicate serves the models it has: an unknown path is 404, an unknown version 422."""
    base = replicate.base_url
    body = {"input": {"prompt": "a fox"}}
    unknown = await send_raw(
        replicate.provider, "POST", f"{base}/v1/models/owner/nothing/predictions", json=body
    )
    assert unknown.status_code == 404
    for version in ("a" * 64, f"minimax/video-01:{'b' * 64}", f"google/veo-2:{VERSION}"):
        refused = await send_raw(
            replicate.provider,
            "POST",
            f"{base}/v1/predictions",
            json={**body, "version": version},
        )
        assert refused.status_code == 422, version
    assert replicate.sim.submissions == 0


async def test_a_model_vidgen_cannot_describe_makes_the_provider_unavailable(
    replicate: Harness,
) -> None:
    provider = replicate.make(replicate_model="owner/model")
    assert not provider.available
    assert "VIDGEN_REPLICATE_MODEL" in (provider.unavailable_reason or "")
    with pytest.raises(ProviderError) as caught:
        await provider.submit(replicate.request())
    assert not caught.value.retryable
    assert replicate.sim.requests == []


async def test_only_the_inputs_a_models_schema_lists_are_sent(replicate: Harness) -> None:
    """minimax/video-01 has no seed (Replicate would drop it silently); google/veo-2 has."""
    await replicate.provider.submit(replicate.request(seed=7))
    assert replicate.sim.received[-1]["input"] == {"prompt": "a red fox running through snow"}
    await replicate.provider.submit(
        replicate.request(model="google/veo-2", resolution="720x1280", duration_seconds=8, seed=7)
    )
    assert replicate.sim.received[-1]["input"] == {
        "prompt": "a red fox running through snow",
        "aspect_ratio": "9:16",
        "duration": 8,
        "seed": 7,
    }
    await replicate.provider.submit(replicate.request(model="google/veo-2", input_image=png()))
    assert replicate.sim.received[-1]["input"]["image"].startswith("data:image/png;base64,")
    assert replicate.sim.dropped == [(), (), ()]


async def test_an_http_webhook_url_is_not_sent_and_the_job_polls(
    replicate: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Replicate takes https webhooks only: with a plain-http public URL the prediction is
    created without one (the simulator, like Replicate, refuses an http webhook)."""
    caplog.set_level(logging.INFO)
    request = replicate.request(webhook_url="http://vidgen.internal:8000/webhooks/replicate")
    submission = await replicate.provider.submit(request)
    assert "webhook" not in replicate.sim.received[-1]
    assert "https" in caplog.text and "polls" in caplog.text
    _, final = await poll_to_end(replicate.provider, submission.prediction_id)
    assert final.state is State.SUCCEEDED
    refused = await send_raw(
        replicate.provider,
        "POST",
        f"{replicate.base_url}/v1/models/minimax/video-01/predictions",
        json={"input": {"prompt": "a fox"}, "webhook": "http://vidgen.internal/hook"},
    )
    assert refused.status_code == 422 and "webhook" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("detail", "seconds"),
    [
        ("Request was throttled. Your rate limit resets in ~30s.", 30.0),
        ("Request was throttled. Expected available in 12 seconds.", 12.0),
        ("Request was throttled. Expected available in 1 second.", 1.0),
    ],
)
async def test_both_documented_429_bodies_give_the_wait(
    replicate: Harness, detail: str, seconds: float
) -> None:
    replicate.sim.scenario.retry_after = None
    replicate.sim.scenario.rate_limit_detail = detail
    replicate.sim.scenario.fail_next("submit", "429")
    with pytest.raises(ProviderError) as caught:
        await replicate.provider.submit(replicate.request())
    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", seconds)


async def test_cancel_cancels(replicate: Harness) -> None:
    submission = await replicate.provider.submit(replicate.request())
    await replicate.provider.cancel(submission.prediction_id)
    result = await replicate.provider.poll(submission.prediction_id)
    assert result.state is State.CANCELED
    await replicate.provider.cancel("unknown")  # a gone prediction is fine


def test_status_mapping(replicate: Harness) -> None:
    result = replicate.provider._result
    assert result({"id": "p", "status": "aborted"}).state is State.CANCELED
    assert result({"id": "p", "status": "starting"}).state is State.QUEUED
    running = result({"id": "p", "status": "processing", "logs": "a\n 45%|####  "})
    assert (running.state, running.progress, running.message) == (
        State.RUNNING,
        0.45,
        "45%|####",
    )
    listed = result({"id": "p", "status": "succeeded", "output": ["https://x/1.mp4"]})
    assert listed.output_url == "https://x/1.mp4"
    with pytest.raises(PredictionLost):
        result({"id": "p", "status": "succeeded", "output": None, "data_removed": True})


async def test_good_webhook_is_accepted(replicate: Harness) -> None:
    sim = replicate.sim
    assert isinstance(sim, ReplicateSimulator)
    submission = await replicate.provider.submit(replicate.request())
    await poll_to_end(replicate.provider, submission.prediction_id)
    headers, body = sim.webhook_payload(sim.jobs[submission.prediction_id])
    event = await replicate.provider.parse_webhook(headers, body, now=time.time())
    assert event.prediction_id == submission.prediction_id
    assert event.delivery_id == headers["webhook-id"]
    assert event.result is not None and event.result.state is State.SUCCEEDED
    assert event.result.output_url


async def test_bad_signature_and_stale_timestamp_are_rejected(replicate: Harness) -> None:
    sim = replicate.sim
    assert isinstance(sim, ReplicateSimulator)
    submission = await replicate.provider.submit(replicate.request())
    job = sim.jobs[submission.prediction_id]
    headers, body = sim.webhook_payload(job, secret=new_whsec())
    with pytest.raises(WebhookRejected):
        await replicate.provider.parse_webhook(headers, body, now=time.time())
    headers, body = sim.webhook_payload(job)
    with pytest.raises(WebhookRejected):  # tampered body
        await replicate.provider.parse_webhook(headers, body + b" ", now=time.time())
    stale = int(time.time()) - 301
    headers, body = sim.webhook_payload(job, timestamp=stale)
    with pytest.raises(WebhookRejected):
        await replicate.provider.parse_webhook(headers, body, now=time.time())
    with pytest.raises(WebhookRejected):
        await replicate.provider.parse_webhook({}, body, now=time.time())


async def test_without_a_secret_every_webhook_is_rejected(replicate: Harness) -> None:
    provider = replicate.make(replicate_webhook_secret=None)
    sim = replicate.sim
    assert isinstance(sim, ReplicateSimulator)
    submission = await replicate.provider.submit(replicate.request())
    headers, body = sim.webhook_payload(sim.jobs[submission.prediction_id])
    with pytest.raises(WebhookRejected):
        await provider.parse_webhook(headers, body, now=time.time())


async def test_simulator_delivers_signed_webhooks_over_http(replicate: Harness) -> None:
    events: list[WebhookEvent] = []

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            event = await replicate.provider.parse_webhook(request.headers, body, now=time.time())
        except WebhookRejected as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        events.append(event)
        return JSONResponse({"ok": True})

    receiver = Starlette(routes=[Route("/hooks/replicate", receive, methods=["POST"])])
    async with aserve(receiver) as url:
        request = replicate.request(webhook_url="https://vidgen.example.com/webhooks/replicate")
        submission = await replicate.provider.submit(request)
        await poll_to_end(replicate.provider, submission.prediction_id)
        # Delivered past a TLS proxy to the plain-http receiver.
        response = await replicate.sim.deliver_webhook(
            submission.prediction_id, f"{url}/hooks/replicate"
        )
    assert response.status_code == 200, response.text
    assert [e.prediction_id for e in events] == [submission.prediction_id]
    assert events[0].result is not None and events[0].result.state is State.SUCCEEDED


async def test_clock_driven_jobs_announce_their_end_by_webhook(replicate: Harness) -> None:
    # Cross-process use: with tick_seconds the job finishes without polls and the simulator
    # POSTs the signed webhook to the URL given at submit.
    events: list[WebhookEvent] = []
    arrived = threading.Event()  # set from the receiver's own server thread

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        events.append(
            await replicate.provider.parse_webhook(request.headers, body, now=time.time())
        )
        arrived.set()
        return JSONResponse({"ok": True})

    replicate.sim.scenario.tick_seconds = 0.02
    receiver = Starlette(routes=[Route("/hook", receive, methods=["POST"])])
    async with aserve(receiver) as url:
        replicate.sim.webhook_target = f"{url}/hook"  # behind a TLS proxy
        request = replicate.request(webhook_url="https://vidgen.example.com/webhooks/replicate")
        submission = await replicate.provider.submit(request)
        assert await asyncio.to_thread(arrived.wait, 5)
    assert events[0].prediction_id == submission.prediction_id
    assert events[0].result is not None and events[0].result.state is State.SUCCEEDED


def image_of(data_uri_chars: int, url: str | None = None) -> InputImage:
    """A (not decodable) PNG whose data: URL is about ``data_uri_chars`` long."""
    data = b"\x89PNG" + b"\0" * (data_uri_chars * 3 // 4)
    return InputImage(data=data, content_type="image/png", url=url)


async def test_an_image_over_256_kb_as_data_url_goes_by_url(replicate: Harness) -> None:
    caps = replicate.provider.capabilities
    assert caps.max_inline_image_bytes == 256_000
    assert caps.inlines(191_970, "image/png")  # 22 + 255,960 characters
    assert not caps.inlines(192_000, "image/png")
    # Without a URL Replicate itself refuses it...
    with pytest.raises(ProviderError) as caught:
        await replicate.provider.submit(replicate.request(input_image=image_of(300_000)))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert "first_frame_image" in caught.value.message
    assert replicate.sim.submissions == 0
    # ...so with one, the URL goes instead; an image that fits still goes inline.
    url = "https://media.example.com/media/1/input.png?exp=1&sig=abc"
    await replicate.provider.submit(replicate.request(input_image=image_of(300_000, url=url)))
    assert replicate.sim.received[-1]["input"]["first_frame_image"] == url
    await replicate.provider.submit(replicate.request(input_image=image_of(200_000, url=url)))
    assert replicate.sim.received[-1]["input"]["first_frame_image"].startswith("data:image/png")
