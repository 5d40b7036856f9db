"""Luma Dream Machine specifics: the wire format, keyframes by URL only, states, delete, and
unsigned callbacks taken as hints (the generation is fetched with the key)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.providers.conftest import Harness, png
from tests.providers.helpers import poll_to_end, send_raw
from tests.simulators import LumaSimulator
from vidgen.providers.base import PredictionLost, ProviderError, State, WebhookRejected

IMAGE_URL = "https://vidgen.example.com/media/1/2/input.png?exp=1&sig=abc"


@pytest.fixture
async def luma(open_harness: Callable[..., Any]) -> Harness:
    return await open_harness("luma")


def sim_of(harness: Harness) -> LumaSimulator:
    assert isinstance(harness.sim, LumaSimulator)
    return harness.sim


async def test_text_request_wire_format(luma: Harness) -> None:
    request = luma.request(
        resolution="1080x1920", duration_seconds=9, webhook_url="https://h.example/webhooks/luma"
    )
    submission = await luma.provider.submit(request)
    assert ("POST", "/v1/generations/video") in luma.sim.requests
    assert luma.sim.received[-1] == {
        "prompt": "a red fox running through snow",
        "model": "ray-2",
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "duration": "9s",
        "callback_url": "https://h.example/webhooks/luma",
    }
    assert submission.state is State.QUEUED
    assert luma.sim.dropped == [()]


async def test_an_image_goes_as_keyframe_frame0_by_url(luma: Harness) -> None:
    await luma.provider.submit(luma.request(input_image=replace(png(), url=IMAGE_URL)))
    assert luma.sim.received[-1]["keyframes"] == {"frame0": {"type": "image", "url": IMAGE_URL}}


async def test_an_image_without_a_url_is_refused_before_sending(luma: Harness) -> None:
    caps = luma.provider.capabilities
    assert caps.max_inline_image_bytes == 0 and not caps.inlines(10, "image/png")
    with pytest.raises(ProviderError) as caught:
        await luma.provider.submit(luma.request(input_image=png()))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert "VIDGEN_PUBLIC_URL" in caught.value.message
    assert luma.sim.requests == []


async def test_the_simulator_refuses_data_uris_and_bad_enums(luma: Harness) -> None:
    url = f"{luma.base_url}/v1/generations/video"
    data_uri = {"type": "image", "url": "data:image/png;base64,AAAA"}
    for body in (
        {"model": "ray-2", "prompt": "x", "keyframes": {"frame0": data_uri}},
        {"model": "ray-2", "prompt": "x", "duration": "7s"},
        {"model": "ray-9", "prompt": "x"},
        {"prompt": "x"},
    ):
        response = await send_raw(luma.provider, "POST", url, json=body)
        assert response.status_code == 400, body
    assert luma.sim.submissions == 0


async def test_states_map_and_dreaming_is_running(luma: Harness) -> None:
    submission = await luma.provider.submit(luma.request())
    seen, final = await poll_to_end(luma.provider, submission.prediction_id)
    assert [r.state for r in seen][:2] == [State.QUEUED, State.RUNNING]
    assert [r.message for r in seen if r.state is State.RUNNING][0] == "dreaming"
    assert final.state is State.SUCCEEDED and final.output_url.endswith(".mp4")  # type: ignore[union-attr]


async def test_moderation_failure_is_content_policy(luma: Harness) -> None:
    submission = await luma.provider.submit(luma.request("sim:policy a fox"))
    _, final = await poll_to_end(luma.provider, submission.prediction_id)
    assert final.error is not None
    assert (final.error.retryable, final.error.code) == (False, "content_policy")
    assert "moderation" in final.error.message


async def test_cancel_deletes_the_generation(luma: Harness) -> None:
    submission = await luma.provider.submit(luma.request())
    await luma.provider.cancel(submission.prediction_id)
    assert ("DELETE", f"/v1/generations/{submission.prediction_id}") in luma.sim.requests
    with pytest.raises(PredictionLost):
        await luma.provider.poll(submission.prediction_id)
    await luma.provider.cancel(submission.prediction_id)  # gone already: fine


# --- callbacks: unsigned, so only a hint --------------------------------------------------------


async def test_a_callback_is_confirmed_with_the_api(luma: Harness) -> None:
    submission = await luma.provider.submit(luma.request())
    await poll_to_end(luma.provider, submission.prediction_id)
    headers, body = sim_of(luma).webhook_payload(sim_of(luma).jobs[submission.prediction_id])
    assert headers == {}  # Luma signs nothing
    gets = luma.sim.requests.count(("GET", f"/v1/generations/{submission.prediction_id}"))
    event = await luma.provider.parse_webhook(headers, body, now=time.time())
    assert event.prediction_id == submission.prediction_id
    assert event.result is not None and event.result.state is State.SUCCEEDED
    assert event.delivery_id == f"{submission.prediction_id}:completed"
    after = luma.sim.requests.count(("GET", f"/v1/generations/{submission.prediction_id}"))
    assert after == gets + 1  # fetched with our key


async def test_a_callback_that_lies_about_the_state_gets_the_apis_state(luma: Harness) -> None:
    submission = await luma.provider.submit(luma.request())
    forged = json.dumps(
        {"id": submission.prediction_id, "state": "completed", "assets": {"video": "https://x"}}
    ).encode()
    event = await luma.provider.parse_webhook({}, forged, now=time.time())
    assert event.result is not None and event.result.state is State.QUEUED
    assert event.result.output_url is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "no-such-generation", "state": "completed"}',
        b'{"state": "completed"}',
        b"not json",
        b'{"id": "../credits", "state": "completed"}',
    ],
)
async def test_a_callback_for_no_generation_of_ours_is_rejected(luma: Harness, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        await luma.provider.parse_webhook({}, body, now=time.time())


async def test_a_callback_is_rejected_while_luma_cannot_confirm_it(luma: Harness) -> None:
    submission = await luma.provider.submit(luma.request())
    luma.sim.scenario.fail_next("poll", "500")
    body = json.dumps({"id": submission.prediction_id, "state": "completed"}).encode()
    with pytest.raises(WebhookRejected):
        await luma.provider.parse_webhook({}, body, now=time.time())
