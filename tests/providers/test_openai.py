"""OpenAI-compatible Videos API specifics: multipart create, poll hints, DELETE, webhooks."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from tests.providers.conftest import Harness, png
from tests.providers.helpers import poll_to_end, send_raw
from tests.simulators import OpenAISimulator
from tests.simulators.common import new_whsec
from tests.simulators.vendors import SORA_MODELS
from vidgen.providers.base import (
    InputImage,
    Mode,
    PredictionLost,
    ProviderError,
    State,
    WebhookRejected,
)


@pytest.fixture
async def openai(open_harness: Callable[..., Any]) -> Harness:
    sim = OpenAISimulator(api_key="sk-proj-SimulatedOpenAIKey0123456789")
    return await open_harness("openai", sim=sim, openai_webhook_secret=sim.webhook_secret)


def test_the_gateways_models_come_from_settings(openai: Harness) -> None:
    """Sora's documented values, configured as the example gateway routes them."""
    caps = openai.provider.capabilities
    assert set(caps.resolutions) == {"720x1280", "1280x720", "1024x1792", "1792x1024"}
    assert caps.durations == (4.0, 8.0, 12.0)
    assert caps.models == ("sora-2", "sora-2-pro")


async def test_without_a_base_url_it_is_unavailable_and_says_why(openai: Harness) -> None:
    """OpenAI's own Videos API is gone: there is no default host to fail against."""
    provider = openai.make(openai_base_url=None)
    assert not provider.available
    assert "VIDGEN_OPENAI_BASE_URL" in (provider.unavailable_reason or "")
    assert "2026-09-24" in (provider.unavailable_reason or "")
    with pytest.raises(ProviderError) as caught:
        await provider.submit(openai.request())
    assert not caught.value.retryable
    assert "VIDGEN_OPENAI_BASE_URL" in caught.value.message
    assert openai.sim.requests == []


@pytest.mark.parametrize(
    ("models", "said"),
    [({}, "lists no models"), ({"veo": {"sizes": ["wide"], "seconds": [8]}}, "invalid")],
)
async def test_without_a_usable_model_table_it_is_unavailable(
    openai: Harness, models: dict[str, Any], said: str
) -> None:
    provider = openai.make(openai_models=models)
    assert not provider.available
    assert "VIDGEN_OPENAI_MODELS" in (provider.unavailable_reason or "")
    assert said in (provider.unavailable_reason or "")


async def test_any_model_the_gateway_routes_with_its_own_sizes_and_seconds(
    openai: Harness,
) -> None:
    """Not only Sora: a gateway's Veo route, with Veo's sizes and seconds."""
    assert isinstance(openai.sim, OpenAISimulator)
    openai.sim.models["veo-3.1"] = (("1280x720", "1920x1080"), ("4", "6", "8"))
    provider = openai.make(
        openai_models={
            **SORA_MODELS,
            "veo-3.1": {"sizes": ["1280x720", "1920x1080"], "seconds": [4, 6, 8]},
        }
    )
    caps = provider.capabilities
    assert caps.resolutions_for(Mode.TEXT, "veo-3.1") == ("1280x720", "1920x1080")
    assert caps.durations_for("veo-3.1") == (4.0, 6.0, 8.0)
    await provider.submit(
        openai.request(model="veo-3.1", resolution="1920x1080", duration_seconds=6)
    )
    assert openai.sim.received[-1] == {
        "prompt": "a red fox running through snow",
        "model": "veo-3.1",
        "seconds": "6",
        "size": "1920x1080",
    }


async def test_text_request_is_multipart(openai: Harness) -> None:
    await openai.provider.submit(openai.request(duration_seconds=8, model="sora-2-pro"))
    assert openai.sim.received[-1] == {
        "prompt": "a red fox running through snow",
        "model": "sora-2-pro",
        "seconds": "8",
        "size": "1280x720",
    }


async def test_image_goes_as_input_reference_fitted_to_size(openai: Harness) -> None:
    await openai.provider.submit(openai.request(input_image=png(100, 100)))
    fields = openai.sim.received[-1]
    assert fields["input_reference_type"] == "image/png"
    assert int(fields["input_reference_size"]) > 0


def webp(width: int, height: int) -> InputImage:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(out, format="WEBP")
    return InputImage(data=out.getvalue(), content_type="image/webp")


async def test_a_webp_reference_at_the_size_goes_as_it_is(openai: Harness) -> None:
    image = webp(1280, 720)
    await openai.provider.submit(openai.request(input_image=image))
    fields = openai.sim.received[-1]
    assert fields["input_reference_type"] == "image/webp"
    assert int(fields["input_reference_size"]) == len(image.data)


@pytest.mark.parametrize(
    ("data", "content_type", "said"),
    [
        (png(100, 100).data, "image/png", "match the requested size"),
        (b"GIF89a" + b"\0" * 32, "image/gif", "JPEG, PNG or WebP"),
        (png(1280, 720).data, "image/jpeg", "JPEG, PNG or WebP"),
    ],
)
async def test_the_simulator_refuses_a_wrong_reference(
    openai: Harness, data: bytes, content_type: str, said: str
) -> None:
    """The reference must be an image of the requested size, of the type it claims."""
    response = await send_raw(
        openai.provider,
        "POST",
        f"{openai.base_url}/v1/videos",
        data={"prompt": "a fox", "model": "sora-2", "size": "1280x720", "seconds": "4"},
        files={"input_reference": ("ref", data, content_type)},
    )
    assert response.status_code == 400 and said in response.json()["error"]["message"]
    assert openai.sim.submissions == 0


async def test_poll_after_header_is_honoured(openai: Harness) -> None:
    assert isinstance(openai.sim, OpenAISimulator)
    openai.sim.poll_after_ms = 2500
    submission = await openai.provider.submit(openai.request())
    result = await openai.provider.poll(submission.prediction_id)
    assert result.poll_after == 2.5


async def test_invalid_size_is_permanent(openai: Harness) -> None:
    with pytest.raises(ProviderError) as caught:
        await openai.provider.submit(openai.request(resolution="640x480"))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert "640x480" in caught.value.message
    assert openai.sim.requests == []


async def test_cancel_deletes_best_effort(openai: Harness) -> None:
    submission = await openai.provider.submit(openai.request())
    await openai.provider.cancel(submission.prediction_id)
    assert ("DELETE", f"/v1/videos/{submission.prediction_id}") in openai.sim.requests
    with pytest.raises(PredictionLost):
        await openai.provider.poll(submission.prediction_id)
    await openai.provider.cancel(submission.prediction_id)  # already gone: no error


async def test_webhooks_good_bad_and_stale(openai: Harness) -> None:
    sim = openai.sim
    assert isinstance(sim, OpenAISimulator)
    submission = await openai.provider.submit(openai.request())
    await poll_to_end(openai.provider, submission.prediction_id)
    job = sim.jobs[submission.prediction_id]

    headers, body = sim.webhook_payload(job)
    event = await openai.provider.parse_webhook(headers, body, now=time.time())
    assert event.prediction_id == submission.prediction_id
    assert event.result is not None and event.result.state is State.SUCCEEDED
    assert event.result.output_url and event.result.output_url.endswith("/content")

    headers, body = sim.webhook_payload(job, secret=new_whsec())
    with pytest.raises(WebhookRejected):
        await openai.provider.parse_webhook(headers, body, now=time.time())
    headers, body = sim.webhook_payload(job, timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookRejected):
        await openai.provider.parse_webhook(headers, body, now=time.time())


async def test_failed_webhook_leaves_the_reason_to_a_poll(openai: Harness) -> None:
    sim = openai.sim
    assert isinstance(sim, OpenAISimulator)
    sim.scenario.outcome = "fail"
    submission = await openai.provider.submit(openai.request())
    await poll_to_end(openai.provider, submission.prediction_id)
    headers, body = sim.webhook_payload(sim.jobs[submission.prediction_id])
    event = await openai.provider.parse_webhook(headers, body, now=time.time())
    assert (event.prediction_id, event.result) == (submission.prediction_id, None)


async def test_base_url_may_include_v1(openai: Harness) -> None:
    provider = openai.make(openai_base_url=f"{openai.base_url}/v1")
    submission = await provider.submit(openai.request())
    assert ("POST", "/v1/videos") in openai.sim.requests
    assert (await provider.poll(submission.prediction_id)).state is State.QUEUED


def test_sora_2_takes_only_the_first_two_sizes(openai: Harness) -> None:
    caps = openai.provider.capabilities
    for mode in (Mode.TEXT, Mode.IMAGE):
        assert caps.resolutions_for(mode, "sora-2") == ("720x1280", "1280x720")
        assert caps.resolutions_for(mode, "sora-2-pro") == caps.resolutions


@pytest.mark.parametrize("size", ["1024x1792", "1792x1024"])
async def test_simulator_refuses_the_tall_sizes_for_sora_2(openai: Harness, size: str) -> None:
    for model in ("sora-2", None):  # None: the default, sora-2
        with pytest.raises(ProviderError) as caught:
            await openai.provider.submit(openai.request(resolution=size, model=model))
        assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
        assert size in caught.value.message
    fields = {"prompt": "a fox", "model": "sora-2", "size": size}
    response = await send_raw(
        openai.provider,
        "POST",
        f"{openai.base_url}/v1/videos",
        files={k: (None, v) for k, v in fields.items()},
    )
    assert response.status_code == 400 and "size" in response.json()["error"]["message"]
    assert openai.sim.submissions == 0
    await openai.provider.submit(openai.request(resolution=size, model="sora-2-pro"))
    assert openai.sim.received[-1]["size"] == size
