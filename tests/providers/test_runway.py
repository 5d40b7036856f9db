"""Runway specifics: request mapping, failure codes, cancel, no webhooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.providers.conftest import Harness, png
from tests.providers.helpers import poll_to_end, send_raw
from tests.simulators import RunwaySimulator
from vidgen.providers.base import (
    InputImage,
    Mode,
    PredictionLost,
    ProviderError,
    State,
    WebhookRejected,
)


@pytest.fixture
async def runway(open_harness: Callable[..., Any]) -> Harness:
    return await open_harness("runway", runway_poll_seconds=0.25)


async def test_capabilities_follow_the_docs(runway: Harness) -> None:
    caps = runway.provider.capabilities
    assert {"1280x720", "720x1280", "960x960", "1584x672"} <= set(caps.resolutions)
    assert caps.durations == tuple(float(s) for s in range(2, 11))
    assert caps.max_prompt_length == 1000
    assert caps.min_poll_interval == 0.25  # from settings.runway_poll_seconds
    assert (caps.webhooks, caps.cancellable) == (False, True)


async def test_text_request_is_mapped_to_text_to_video(runway: Harness) -> None:
    await runway.provider.submit(runway.request(duration_seconds=7, resolution="720x1280"))
    assert ("POST", "/v1/text_to_video") in runway.sim.requests
    body = runway.sim.received[-1]
    assert body == {
        "model": "gen4.5",
        "promptText": "a red fox running through snow",
        "ratio": "720:1280",
        "duration": 7,
    }


async def test_image_request_sends_a_data_uri(runway: Harness) -> None:
    await runway.provider.submit(runway.request(input_image=png(), model="gen4_turbo", seed=9))
    assert ("POST", "/v1/image_to_video") in runway.sim.requests
    body = runway.sim.received[-1]
    assert body["promptImage"].startswith("data:image/png;base64,")
    assert (body["model"], body["seed"]) == ("gen4_turbo", 9)


async def test_running_polls_carry_progress_and_the_poll_floor(runway: Harness) -> None:
    submission = await runway.provider.submit(runway.request())
    seen, _ = await poll_to_end(runway.provider, submission.prediction_id)
    running = [r for r in seen if r.state is State.RUNNING]
    assert [r.progress for r in running] == sorted(r.progress for r in running)
    assert all(r.poll_after == 0.25 for r in running)


async def test_validation_error_is_permanent_with_runways_words(runway: Harness) -> None:
    body = {"model": "gen4.5", "promptText": "a fox", "ratio": "640:480", "duration": 5}
    response = await send_raw(
        runway.provider, "POST", f"{runway.base_url}/v1/text_to_video", json=body
    )
    assert response.status_code == 400 and "ratio" in response.json()["error"]
    error = runway.provider.errors.from_response(response, "submit")
    assert (error.retryable, error.code) == (False, "bad_request")
    assert "ratio" in error.message
    # The adapter refuses the same request before sending it (validation already did).
    with pytest.raises(ProviderError) as caught:
        await runway.provider.submit(runway.request(resolution="640x480"))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert "640x480" in caught.value.message
    assert runway.sim.submissions == 0


def test_failure_codes_map_to_retryability(runway: Harness) -> None:
    def error(code: str | None) -> Any:
        task = {"id": "t", "status": "FAILED", "failure": "nope", "failureCode": code}
        return runway.provider._result(task).error

    assert error("SAFETY.INPUT.TEXT").code == "content_policy"
    assert error("INPUT_PREPROCESSING.SAFETY.TEXT").code == "content_policy"
    assert not error("SAFETY.OUTPUT.IMAGE").retryable
    assert error("INTERNAL.BAD_OUTPUT.CODE01").retryable
    assert not error(None).retryable

    # A documented code that is neither a policy refusal nor retryable stays a plain,
    # permanent failure whatever its free text says; only a failure without a code is
    # read for words like "moderation".
    def worded(code: str | None, text: str) -> Any:
        task = {"id": "t", "status": "FAILED", "failure": text, "failureCode": code}
        return runway.provider._result(task).error

    flagged = "Blocked by our content moderation safety checks."
    assert worded("ASSET.INVALID", flagged).code == "prediction_failed"
    assert worded("ASSET.INVALID", flagged).retryable is False
    assert worded(None, flagged).code == "content_policy"
    assert worded("INPUT_PREPROCESSING.INTERNAL", flagged).retryable
    assert worded("INTERNALS.UNKNOWN", "oops").retryable is False  # a family, not a prefix
    throttled = runway.provider._result({"id": "t", "status": "THROTTLED"})
    assert (throttled.state, throttled.message) == (State.QUEUED, "throttled")


async def test_cancel_deletes_the_task(runway: Harness) -> None:
    submission = await runway.provider.submit(runway.request())
    await runway.provider.poll(submission.prediction_id)
    await runway.provider.cancel(submission.prediction_id)
    assert ("DELETE", f"/v1/tasks/{submission.prediction_id}") in runway.sim.requests
    sim = runway.sim
    assert isinstance(sim, RunwaySimulator) and sim.deleted[submission.prediction_id].canceled
    # "Aborted and deleted tasks will not be able to be fetched again" (the SDK's delete).
    with pytest.raises(PredictionLost):
        await runway.provider.poll(submission.prediction_id)
    await runway.provider.cancel(submission.prediction_id)  # already gone is fine
    await runway.provider.cancel("no-such-task")


async def test_a_bare_internal_failure_is_retryable(runway: Harness) -> None:
    """Runway lists ``INTERNAL`` itself (no dotted suffix) as worth a retry."""
    sim = runway.sim
    assert isinstance(sim, RunwaySimulator)
    sim.scenario.outcome = "fail"
    sim.failure_code = "INTERNAL"
    submission = await runway.provider.submit(runway.request())
    _, final = await poll_to_end(runway.provider, submission.prediction_id)
    assert final.state is State.FAILED and final.error is not None
    assert (final.error.retryable, final.error.code) == (True, "prediction_failed")
    assert "[INTERNAL]" in final.error.message


async def test_runway_has_no_webhooks(runway: Harness) -> None:
    with pytest.raises(WebhookRejected):
        await runway.provider.parse_webhook({}, b"{}", now=0.0)


# --- what text_to_video and image_to_video each accept (docs/providers.md, "runway") -------

IMAGE_RATIOS = ("1280x720", "720x1280", "1104x832", "960x960", "832x1104", "1584x672")


def test_text_to_video_is_gen4_5_in_two_ratios(runway: Harness) -> None:
    caps = runway.provider.capabilities
    assert caps.models_for(Mode.TEXT) == ("gen4.5",)
    assert caps.models_for(Mode.IMAGE) == ("gen4.5", "gen4_turbo")
    assert caps.resolutions_for(Mode.TEXT, "gen4.5") == ("1280x720", "720x1280")
    assert caps.resolutions_for(Mode.TEXT, "gen4_turbo") == ()
    for model in ("gen4.5", "gen4_turbo"):
        assert caps.resolutions_for(Mode.IMAGE, model) == IMAGE_RATIOS


@pytest.mark.parametrize(
    ("model", "resolution", "refused"),
    [
        ("gen4.5", "960x960", "ratio"),
        ("gen4.5", "1584x672", "ratio"),
        ("gen4_turbo", "1280x720", "model"),
    ],
)
async def test_simulator_refuses_what_text_to_video_does_not_take(
    runway: Harness, model: str, resolution: str, refused: str
) -> None:
    body = {
        "model": model,
        "promptText": "a fox",
        "ratio": resolution.replace("x", ":"),
        "duration": 5,
    }
    url = f"{runway.base_url}/v1/text_to_video"
    response = await send_raw(runway.provider, "POST", url, json=body)
    assert response.status_code == 400 and refused in response.json()["error"]
    with pytest.raises(ProviderError) as caught:
        await runway.provider.submit(runway.request(model=model, resolution=resolution))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert runway.sim.submissions == 0
    # The same request with an image is image_to_video, which takes it.
    await runway.provider.submit(
        runway.request(model=model, resolution=resolution, input_image=png())
    )
    assert runway.sim.submissions == 1


async def test_prompt_limit_counts_utf16_code_units(runway: Harness) -> None:
    caps = runway.provider.capabilities
    fox = "\U0001f98a"  # beyond U+FFFF: two UTF-16 code units
    assert caps.prompt_length(fox * 600) == 1200 > caps.max_prompt_length
    assert caps.prompt_length("é" * 1000) == 1000
    with pytest.raises(ProviderError) as caught:
        await runway.provider.submit(runway.request(fox * 600))
    assert "promptText" in caught.value.message
    await runway.provider.submit(runway.request(fox * 500))
    assert runway.sim.submissions == 1


def big_image(data_uri_chars: int, url: str | None = None) -> InputImage:
    """A (not decodable) PNG whose data: URI is about ``data_uri_chars`` long."""
    return InputImage(
        data=b"\x89PNG" + b"\0" * (data_uri_chars * 3 // 4), content_type="image/png", url=url
    )


async def test_an_image_over_5_mb_as_data_uri_goes_by_url(runway: Harness) -> None:
    caps = runway.provider.capabilities
    assert caps.max_inline_image_bytes == 5_000_000
    url = "https://media.example.com/media/1/input.png?exp=1&sig=abc"
    big = big_image(5_100_000, url=url)
    assert not caps.inlines(len(big.data), big.content_type)
    # Without a URL it would be refused by Runway itself...
    with pytest.raises(ProviderError) as caught:
        await runway.provider.submit(runway.request(input_image=big_image(5_100_000)))
    assert caught.value.retryable is False
    assert "promptImage" in caught.value.message
    # ...so with one, the URL goes instead.
    await runway.provider.submit(runway.request(input_image=big))
    assert runway.sim.received[-1]["promptImage"] == url
    # An image that fits still goes inline, URL or not.
    await runway.provider.submit(runway.request(input_image=replace(png(), url=url)))
    assert runway.sim.received[-1]["promptImage"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"GIF89a" + b"\0" * 64, "image/png"), (b"not an image at all", "image/jpeg")],
)
async def test_the_simulator_decodes_data_uris_and_refuses_what_is_no_image(
    runway: Harness, data: bytes, content_type: str
) -> None:
    """Runway decodes a data URI: what is not a readable image is refused with a 400 that
    names promptImage, permanent."""
    with pytest.raises(ProviderError) as caught:
        await runway.provider.submit(
            runway.request(input_image=InputImage(data=data, content_type=content_type))
        )
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    assert "promptImage" in caught.value.message
    assert runway.sim.submissions == 0
