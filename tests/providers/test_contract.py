"""The same contract, checked for every HTTP adapter against its simulator over real HTTP."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from tests.providers.conftest import KEYS, PROVIDERS, WRONG_KEYS, Harness, png
from tests.providers.helpers import assert_playable, poll_to_end
from tests.simulators.vendors import VENDORS
from vidgen.providers.base import Mode, PredictionLost, Provider, ProviderError, State


async def test_is_a_provider(harness: Harness) -> None:
    assert isinstance(harness.provider, Provider)
    assert harness.provider.available
    assert harness.provider.capabilities.output_formats == ("mp4",)
    assert harness.provider.name == harness.name


async def test_without_key_it_is_unavailable(harness: Harness) -> None:
    provider = harness.make(**{f"{harness.name}_api_key": None})
    assert not provider.available
    with pytest.raises(ProviderError) as caught:
        await provider.submit(harness.request())
    assert not caught.value.retryable
    assert f"VIDGEN_{harness.name.upper()}_API_KEY" in caught.value.message
    assert harness.sim.submissions == 0


async def test_submit_poll_download_a_real_video(harness: Harness, tmp_path: Path) -> None:
    submission = await harness.provider.submit(harness.request())
    assert submission.prediction_id
    seen, final = await poll_to_end(harness.provider, submission.prediction_id)
    states = [r.state for r in seen]
    vendor = VENDORS[harness.name]
    if vendor.shows_queue:
        assert State.QUEUED in states
    assert State.RUNNING in states
    assert states.index(State.RUNNING) < states.index(State.SUCCEEDED)
    running = [r for r in seen if r.state is State.RUNNING]
    if vendor.reports_progress:
        assert all(r.progress is not None and 0 < r.progress < 1 for r in running)
    if harness.name == "fal":
        assert any(r.message and "queue position" in r.message for r in seen)
        assert all(r.message for r in running)
    assert final.state is State.SUCCEEDED and final.output_url

    dest = tmp_path / "out" / "video.mp4"
    content_type = await harness.provider.download(final, dest, max_bytes=10_000_000)
    assert content_type == "video/mp4"
    assert_playable(dest)
    assert harness.sim.submissions == 1  # exactly one paid job


async def test_download_over_the_cap_is_permanent_and_leaves_no_file(
    harness: Harness, tmp_path: Path
) -> None:
    submission = await harness.provider.submit(harness.request())
    _, final = await poll_to_end(harness.provider, submission.prediction_id)
    dest = tmp_path / "video.mp4"
    with pytest.raises(ProviderError) as caught:
        await harness.provider.download(final, dest, max_bytes=100)
    assert (caught.value.retryable, caught.value.code) == (False, "too_large")
    assert not dest.exists()


# Stability has no failed state (its result errors are HTTP errors) and takes no prompt.
WITH_PROMPT_AND_FAILED_STATE = [name for name in PROVIDERS if VENDORS[name].takes_prompt]


@pytest.mark.parametrize("harness", WITH_PROMPT_AND_FAILED_STATE, indirect=True)
async def test_failed_prediction_is_permanent(harness: Harness) -> None:
    harness.sim.scenario.outcome = "fail"
    submission = await harness.provider.submit(harness.request())
    _, final = await poll_to_end(harness.provider, submission.prediction_id)
    assert final.state is State.FAILED
    assert final.error is not None
    assert (final.error.retryable, final.error.code) == (False, "prediction_failed")


async def test_content_policy_is_permanent(harness: Harness) -> None:
    # Magic prompt words reach every provider but Stability (which takes no prompt).
    if not VENDORS[harness.name].takes_prompt:
        harness.sim.scenario.outcome = "policy"
    submission = await harness.provider.submit(harness.request("sim:policy a fox"))
    _, final = await poll_to_end(harness.provider, submission.prediction_id)
    assert final.state is State.FAILED and final.error is not None
    assert (final.error.retryable, final.error.code) == (False, "content_policy")


async def test_429_is_retryable_with_retry_after(harness: Harness) -> None:
    harness.sim.scenario.fail_next("submit", "429")
    with pytest.raises(ProviderError) as caught:
        await harness.provider.submit(harness.request())
    error = caught.value
    assert (error.retryable, error.code, error.status_code) == (True, "rate_limited", 429)
    assert error.retry_after == 7.0
    assert error.__cause__ is not None  # raise ... from exc
    assert harness.sim.submissions == 0
    # The retry goes through, and only it counts.
    await harness.provider.submit(harness.request())
    assert harness.sim.submissions == 1


async def test_retry_after_ms_wins(harness: Harness) -> None:
    harness.sim.scenario.retry_after_ms = "1500"
    harness.sim.scenario.fail_next("poll", "429")
    submission = await harness.provider.submit(harness.request())
    with pytest.raises(ProviderError) as caught:
        await harness.provider.poll(submission.prediction_id)
    assert caught.value.retry_after == 1.5


async def test_500_is_retryable(harness: Harness) -> None:
    submission = await harness.provider.submit(harness.request())
    harness.sim.scenario.fail_next("poll", "500")
    with pytest.raises(ProviderError) as caught:
        await harness.provider.poll(submission.prediction_id)
    # Stability's 500 on a result may be a failed generation (docs/providers.md): its own code,
    # so the engine spends the retry budget on it rather than treat it as an outage.
    code = "generation_error" if harness.name == "stability" else "server_error"
    assert (caught.value.retryable, caught.value.code) == (True, code)
    assert caught.value.status_code == 500


async def test_hang_past_the_client_timeout_is_retryable(harness: Harness) -> None:
    harness.sim.scenario.fail_next("submit", "hang")
    with pytest.raises(ProviderError) as caught:
        await harness.provider.submit(harness.request())
    assert (caught.value.retryable, caught.value.code) == (True, "timeout")


@pytest.mark.parametrize("harness", WITH_PROMPT_AND_FAILED_STATE, indirect=True)
async def test_magic_prompt_faults_hit_only_the_first_submission(harness: Harness) -> None:
    with pytest.raises(ProviderError) as caught:
        await harness.provider.submit(harness.request("sim:500 a fox"))
    assert caught.value.retryable
    await harness.provider.submit(harness.request("sim:500 a fox"))
    assert harness.sim.submissions == 1


async def test_malformed_body_is_a_retryable_provider_error(harness: Harness) -> None:
    # A 2xx whose body is not the JSON we expect is almost always a gateway or proxy fault,
    # so it is classified retryable (code malformed_response); the retry budget bounds it.
    submission = await harness.provider.submit(harness.request())
    harness.sim.scenario.fail_next("poll", "malformed")
    with pytest.raises(ProviderError) as caught:
        await harness.provider.poll(submission.prediction_id)
    assert (caught.value.retryable, caught.value.code) == (True, "malformed_response")
    assert caught.value.__cause__ is not None


async def test_unknown_prediction_is_lost(harness: Harness) -> None:
    with pytest.raises(PredictionLost):
        await harness.provider.poll("0" * 64 if harness.name == "stability" else "missing-id")


async def test_rejected_key_names_the_setting_and_never_the_key(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = harness.make(**{f"{harness.name}_api_key": WRONG_KEYS[harness.name]})
    with pytest.raises(ProviderError) as caught:
        await provider.submit(harness.request())
    error = caught.value
    status = VENDORS[harness.name].rejected_key_status
    assert (error.retryable, error.code, error.status_code) == (False, "auth", status)
    setting = f"VIDGEN_{harness.name.upper()}_API_KEY"
    assert f"{setting} was rejected by {harness.name} ({status})" in error.message
    # The simulator echoes the presented key in its 401 body: it must be scrubbed.
    for text in (str(error), repr(error), error.message, caplog.text):
        assert WRONG_KEYS[harness.name] not in text
        assert KEYS[harness.name] not in text


async def test_key_never_appears_in_errors_or_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    key = KEYS[harness.name]
    messages: list[str] = []
    submission = await harness.provider.submit(harness.request())
    _, final = await poll_to_end(harness.provider, submission.prediction_id)
    await harness.provider.download(final, tmp_path / "v.mp4", max_bytes=10_000_000)
    for kind in ("429", "500", "hang", "malformed", "401"):
        harness.sim.scenario.fail_next("poll", kind)
        with pytest.raises(ProviderError) as caught:
            await harness.provider.poll(submission.prediction_id)
        messages += [str(caught.value), repr(caught.value), repr(caught.value.__cause__)]
    assert caplog.records  # something was logged, and none of it holds the key
    for text in [*messages, caplog.text]:
        assert key not in text


async def test_what_capabilities_offer_per_mode_and_model_is_exactly_what_is_taken(
    harness: Harness,
) -> None:
    """Every (mode, model, resolution) the capabilities offer, the provider accepts; every
    resolution they withhold from a mode or model, it refuses: validation at enqueue and the
    provider agree, so an accepted request never becomes a job that fails for good later."""
    caps = harness.provider.capabilities
    # With a URL too, for the providers that take images by URL only (Luma).
    image_in = replace(png(), url="https://media.example.com/media/1/input.png?sig=x")
    for mode in (Mode.TEXT, Mode.IMAGE):
        if not caps.supports(mode):
            continue
        image = {"input_image": image_in} if mode is Mode.IMAGE else {}
        for model in caps.models_for(mode) or (None,):
            offered = caps.resolutions_for(mode, model)
            assert offered, (mode, model)
            for resolution in caps.resolutions:
                request = harness.request(model=model, resolution=resolution, **image)
                if resolution in offered:
                    await harness.provider.submit(request)
                    continue
                with pytest.raises(ProviderError) as caught:
                    await harness.provider.submit(request)
                assert not caught.value.retryable, (mode, model, resolution)
        for model in set(caps.models) - set(caps.models_for(mode)):
            with pytest.raises(ProviderError):
                await harness.provider.submit(harness.request(model=model, **image))
