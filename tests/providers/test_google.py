"""Google Veo (Gemini API) specifics: the wire format, per-model parameters, the operation's
outcomes (samples, errors, safety filtering), the key header, RetryInfo, no cancel."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.providers.conftest import KEYS, Harness, png
from tests.providers.helpers import assert_playable, poll_to_end, send_raw
from tests.simulators import GoogleSimulator
from vidgen.providers.base import Mode, ProviderError, State, WebhookRejected

MODEL = "veo-3.1-generate-preview"


@pytest.fixture
async def google(open_harness: Callable[..., Any]) -> Harness:
    return await open_harness("google")


def sim_of(harness: Harness) -> GoogleSimulator:
    assert isinstance(harness.sim, GoogleSimulator)
    return harness.sim


async def test_text_request_wire_format(google: Harness) -> None:
    submission = await google.provider.submit(google.request(resolution="720x1280"))
    assert ("POST", f"/v1beta/models/{MODEL}:predictLongRunning") in google.sim.requests
    assert google.sim.received[-1] == {
        "instances": [{"prompt": "a red fox running through snow"}],
        "parameters": {"aspectRatio": "9:16", "durationSeconds": 8, "resolution": "720p"},
        "model": MODEL,
    }
    # The operation's name is the prediction id, polled as GET /v1beta/{name}.
    assert submission.prediction_id.startswith(f"models/{MODEL}/operations/")
    await google.provider.poll(submission.prediction_id)
    assert ("GET", f"/v1beta/{submission.prediction_id}") in google.sim.requests


async def test_the_key_goes_in_its_header_to_the_api_host_only(google: Harness) -> None:
    """``x-goog-api-key``, no Authorization header: the simulator accepts nothing else."""
    await google.provider.submit(google.request())
    client = google.provider.client
    request = client.build_request("GET", f"{google.base_url}/v1beta/x")
    flow = client.auth.auth_flow(request)  # type: ignore[union-attr]
    sent = next(flow)
    assert sent.headers["x-goog-api-key"] == KEYS["google"]
    assert "authorization" not in sent.headers
    elsewhere = next(client.auth.auth_flow(client.build_request("GET", "https://cdn.example/x")))  # type: ignore[union-attr]
    assert "x-goog-api-key" not in elsewhere.headers


async def test_an_image_goes_inline_as_the_first_frame(google: Harness) -> None:
    image = png(1280, 720)
    await google.provider.submit(google.request(input_image=image))
    instance = google.sim.received[-1]["instances"][0]
    assert instance["image"] == {
        "bytesBase64Encoded": base64.b64encode(image.data).decode(),
        "mimeType": "image/png",
    }


async def test_veo_2_gets_no_resolution_and_its_own_durations(google: Harness) -> None:
    caps = google.provider.capabilities
    assert caps.durations_for("veo-2.0-generate-001") == (5.0, 6.0, 7.0, 8.0)
    assert caps.resolutions_for(Mode.TEXT, "veo-2.0-generate-001") == ("1280x720", "720x1280")
    await google.provider.submit(google.request(model="veo-2.0-generate-001", duration_seconds=5))
    assert google.sim.received[-1]["parameters"] == {"aspectRatio": "16:9", "durationSeconds": 5}


async def test_1080p_only_at_8_seconds(google: Harness) -> None:
    caps = google.provider.capabilities
    assert caps.durations_for(MODEL, "1920x1080") == (8.0,)
    assert caps.durations_for(MODEL, "1280x720") == (4.0, 6.0, 8.0)
    # Veo 3.0 makes 1080p in 16:9 only.
    assert "1080x1920" not in caps.resolutions_for(Mode.TEXT, "veo-3.0-generate-001")
    await google.provider.submit(google.request(resolution="1920x1080", duration_seconds=8))
    with pytest.raises(ProviderError) as caught:
        await google.provider.submit(google.request(resolution="1920x1080", duration_seconds=4))
    assert (caught.value.retryable, caught.value.code) == (False, "bad_request")
    raw = await send_raw(
        google.provider,
        "POST",
        f"{google.base_url}/v1beta/models/{MODEL}:predictLongRunning",
        json={
            "instances": [{"prompt": "a fox"}],
            "parameters": {"aspectRatio": "16:9", "durationSeconds": 4, "resolution": "1080p"},
        },
    )
    assert raw.status_code == 400 and raw.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert google.sim.submissions == 1


async def test_the_sample_is_downloaded_from_the_api_with_the_key(
    google: Harness, tmp_path: Path
) -> None:
    submission = await google.provider.submit(google.request())
    _, final = await poll_to_end(google.provider, submission.prediction_id)
    assert final.output_url and ":download?alt=media" in final.output_url
    dest = tmp_path / "veo.mp4"
    assert await google.provider.download(final, dest, max_bytes=10**8) == "video/mp4"
    assert_playable(dest)


async def test_safety_filtering_is_a_content_policy_failure(google: Harness) -> None:
    """Filtered samples are not an HTTP error: the done operation counts and explains them."""
    submission = await google.provider.submit(google.request("sim:policy a fox"))
    _, final = await poll_to_end(google.provider, submission.prediction_id)
    assert final.state is State.FAILED and final.error is not None
    assert (final.error.retryable, final.error.code) == (False, "content_policy")
    assert "violate our policies" in final.error.message


@pytest.mark.parametrize(
    ("code", "retryable"), [(3, False), (7, False), (13, True), (14, True), (4, True)]
)
async def test_an_operation_error_is_classified_by_its_code(
    google: Harness, code: int, retryable: bool
) -> None:
    sim_of(google).scenario.outcome = "fail"
    sim_of(google).error_code = code
    submission = await google.provider.submit(google.request())
    _, final = await poll_to_end(google.provider, submission.prediction_id)
    assert final.state is State.FAILED and final.error is not None
    assert (final.error.retryable, final.error.code) == (retryable, "prediction_failed")
    assert f"[code {code}]" in final.error.message


async def test_a_429_without_retry_after_waits_its_retry_info(google: Harness) -> None:
    google.sim.scenario.retry_after = "21"  # as RetryInfo in the body, no header
    google.sim.scenario.fail_next("submit", "429")
    with pytest.raises(ProviderError) as caught:
        await google.provider.submit(google.request())
    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", 21.0)


async def test_a_missing_key_is_refused_as_auth(google: Harness) -> None:
    keyless = google.make(google_api_key=None)
    url = f"{google.base_url}/v1beta/models/{MODEL}:predictLongRunning"
    response = await send_raw(keyless, "POST", url, json={"instances": [{"prompt": "a fox"}]})
    assert response.status_code == 403
    error = google.provider.errors.from_response(response, "submit")
    assert (error.code, error.retryable) == ("auth", False)


async def test_the_simulator_refuses_unknown_models_and_foreign_parameters(
    google: Harness,
) -> None:
    url = f"{google.base_url}/v1beta/models/veo-9:predictLongRunning"
    unknown = await send_raw(google.provider, "POST", url, json={"instances": [{"prompt": "x"}]})
    assert unknown.status_code == 404
    veo2 = f"{google.base_url}/v1beta/models/veo-2.0-generate-001:predictLongRunning"
    body = {"instances": [{"prompt": "x"}], "parameters": {"resolution": "720p"}}
    foreign = await send_raw(google.provider, "POST", veo2, json=body)
    assert foreign.status_code == 400 and "resolution" in foreign.json()["error"]["message"]
    seed = {"instances": [{"prompt": "x"}], "parameters": {"seed": 5}}
    refused = await send_raw(google.provider, "POST", url.replace("veo-9", MODEL), json=seed)
    assert refused.status_code == 400  # seed is Vertex-only
    assert google.sim.submissions == 0


async def test_no_cancel_and_no_webhooks(google: Harness) -> None:
    caps = google.provider.capabilities
    assert (caps.cancellable, caps.webhooks) == (False, False)
    submission = await google.provider.submit(google.request())
    before = list(google.sim.requests)
    await google.provider.cancel(submission.prediction_id)
    assert google.sim.requests == before
    with pytest.raises(WebhookRejected):
        await google.provider.parse_webhook({}, b"{}", now=0.0)
