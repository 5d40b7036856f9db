"""Each HTTP provider end to end against its simulator: generateVideo over HTTP → worker →
completed Video with the simulator's real MP4, and every failure mode ending as the engine's
rules say (permanent → failed at once; 429/500/hang → re-queued, then completed; cancel →
the provider's cancel endpoint; a rescue resumes the prediction instead of paying twice).

Success runs on both backends; the failure matrix on :data:`ONE_BACKEND`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io

import pytest
from PIL import Image

from tests.api import documents as d
from tests.api.conftest import LiveServer
from tests.e2e.conftest import (
    CANCEL_ROUTES,
    CANCEL_VIDEO,
    CLIENT_TIMEOUT,
    HTTP_PROVIDERS,
    KEYS,
    REQUESTS,
    THUMBNAIL_WIDTH,
    Sims,
    db_id,
    fetch_video,
    generate,
    generate_for,
    one_backend,
    png_bytes,
    running_worker,
    set_poll_floor,
    wait_for_prediction,
    wait_for_status,
    wait_until,
)
from tests.simulators.media import FPS, FRAMES, SIZE, sample_mp4
from tests.simulators.vendors import VENDORS
from vidgen.events.channels import video_channel
from vidgen.jobs import pipeline, queue
from vidgen.jobs.worker import Worker
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus
from vidgen.runtime import Runtime
from vidgen.settings import Settings

S = VideoStatus
# Providers whose prompt reaches the simulator (Stability takes no prompt: script it instead).
PROMPTED = tuple(name for name in HTTP_PROVIDERS if VENDORS[name].takes_prompt)
# Providers that take an uploaded image inline (Luma takes images by https URL only).
INLINE_IMAGES = tuple(
    name
    for name in HTTP_PROVIDERS
    if VENDORS[name].text_to_video and not VENDORS[name].image_by_url_only
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def attempts(video_id: int) -> list[tuple[AttemptOutcome, str | None]]:
    rows = await VideoAttempt.filter(video_id=video_id).order_by("attempt")
    return [(AttemptOutcome(row.outcome), row.error_code) for row in rows]


async def assert_completed_with_sample(runtime: Runtime, video_id: int) -> Video:
    """Completed, with the simulator's MP4 stored, probed and thumbnailed."""
    video = await Video.get(id=video_id)
    assert video.status == S.COMPLETED, video.error_message
    assert video.error_message is None and video.progress == 1.0
    assert video.video_file and video.video_file.endswith("video.mp4")
    stored = runtime.storage.path(video.video_file)
    assert stored.read_bytes() == sample_mp4()
    assert (video.width, video.height, video.codec) == (SIZE, SIZE, "h264")
    assert video.frame_rate == pytest.approx(FPS)
    assert video.duration_seconds == pytest.approx(FRAMES / FPS, abs=1 / FPS)
    assert video.file_size == len(sample_mp4())
    assert video.thumbnail_file
    with Image.open(runtime.storage.path(video.thumbnail_file)) as thumb:
        assert thumb.format == "JPEG" and thumb.width == min(THUMBNAIL_WIDTH, SIZE)
    return video


# --- success, on both backends ----------------------------------------------------------------


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
async def test_completes_with_file_thumbnail_and_metadata(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    video_id, gid = await generate_for(server, token, name, prompt="a red fox running through snow")
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    video = await assert_completed_with_sample(runtime, video_id)
    sim = sims[name]
    assert sim.submissions == 1
    assert video.prediction_id in sim.jobs
    if VENDORS[name].takes_prompt:  # Stability's API takes no prompt
        assert "a red fox running through snow" in repr(sim.received[0])
    [(outcome, code)] = await attempts(video_id)
    assert (outcome, code) == (AttemptOutcome.SUCCEEDED, None)
    # Through the API: metadata, and the stored file behind the signed URL.
    fetched = await fetch_video(server, token, gid)
    assert fetched["status"] == "COMPLETED" and fetched["predictionId"] == video.prediction_id
    assert (fetched["width"], fetched["height"], fetched["fileSize"]) == (
        SIZE,
        SIZE,
        len(sample_mp4()),
    )
    served = await server.client.get(fetched["videoUrl"])
    assert served.status_code == 200 and served.content == sample_mp4()
    thumb = await server.client.get(fetched["thumbnailUrl"])
    assert thumb.status_code == 200
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.format == "JPEG"


@one_backend
@pytest.mark.parametrize("name", INLINE_IMAGES)
async def test_image_to_video_sends_the_uploaded_image(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    """(Stability, image-only, is covered above.)"""
    video = await generate(
        server, token, image=png_bytes(), prompt="slow pan", provider=name, **REQUESTS[name]
    )
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    await assert_completed_with_sample(runtime, db_id(video["id"]))
    received = repr(sims[name].received[0])
    assert any(
        sign in received
        for sign in ("data:image/png;base64,", "input_reference_type", "bytesBase64Encoded")
    )
    assert sims[name].submissions == 1


@one_backend
async def test_an_image_for_luma_needs_a_public_https_address(
    server: LiveServer, sims: Sims, token: str
) -> None:
    """Luma takes keyframe images by URL only: with this server's plain-http address the
    request is refused at once on inputImage, and nothing is queued or sent."""
    response = await server.upload(
        d.GENERATE_VIDEO,
        {
            "input": {
                "prompt": "slow pan",
                "provider": "luma",
                "inputImage": None,
                **REQUESTS["luma"],
            }
        },
        {"variables.input.inputImage": ("input.png", png_bytes(), "image/png")},
        token=token,
    )
    body = response.json()
    assert d.error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "inputImage"
    assert await Video.all().count() == 0
    assert sims["luma"].requests == []


@one_backend
@pytest.mark.parametrize("name", ["runway", "replicate", "openai"])
async def test_provider_progress_reaches_the_row_and_the_live_events(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    """Runway says 0-1, OpenAI-compatible 0-100, Replicate a percentage in its logs."""
    sims[name].scenario.running_polls = 3  # upstream progress 25 %, 50 %, 75 %, done
    # Polls 0.4 s apart, so the running phase outlasts the batch's second (docs/jobs.md,
    # "Capacity"): with faster polls every tick may land in the completion's last second
    # and be fenced out by it, which is right, but then nothing here would be shown.
    set_poll_floor(runtime.providers[name], 0.4)
    video_id, _ = await generate_for(server, token, name)
    async with runtime.bus.subscribe(video_channel(video_id)) as sub:
        assert await Worker(runtime, concurrency=1).run_until_idle() == 1
        events = []
        while not sub.queue.empty():
            events.append(await sub.get())
    running = [e["progress"] for e in events if e["status"] == "processing" and e["progress"]]
    # The worker writes its jobs' progress in batches (docs/jobs.md, "Capacity"): a report
    # after a quiet second at once, the ones within the next second together, so ticks may
    # coalesce into the newest (or be fenced out by the completion).
    assert running and running == sorted(running), events
    assert set(running) <= {0.25, 0.5, 0.75}, events
    assert events[-1]["status"] == "completed" and events[-1]["progress"] == 1.0
    assert (await Video.get(id=video_id)).progress == 1.0


# --- permanent failures: failed at once, no retry ---------------------------------------------


@one_backend
@pytest.mark.parametrize("name", PROMPTED)
@pytest.mark.parametrize(
    ("magic", "code"), [("sim:fail", "prediction_failed"), ("sim:policy", "content_policy")]
)
async def test_failed_or_refused_prediction_fails_without_retry(
    name: str, magic: str, code: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    video_id, _ = await generate_for(server, token, name, prompt=f"a fox {magic}")
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    video = await Video.get(id=video_id)
    assert video.status == S.FAILED
    assert video.error_message and video.error_message.startswith(f"{name}: ")
    assert video.retry_count == 0 and video.scheduled_at is None
    assert await attempts(video_id) == [(AttemptOutcome.FAILED, code)]
    assert sims[name].submissions == 1
    assert await Worker(runtime, concurrency=1).run_until_idle() == 0  # nothing re-queued


@one_backend
async def test_stability_content_filtered_fails_without_retry(
    server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    sims["stability"].scenario.outcome = "policy"
    video_id, _ = await generate_for(server, token, "stability")
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    video = await Video.get(id=video_id)
    assert video.status == S.FAILED and video.retry_count == 0
    assert "CONTENT_FILTERED" in (video.error_message or "")
    assert await attempts(video_id) == [(AttemptOutcome.FAILED, "content_policy")]


@one_backend
async def test_stability_failure_is_a_500_so_it_is_retried_then_given_up(
    server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    """Stability reports a failed generation as a 5xx on the result (docs/providers.md): the
    engine cannot tell it from an outage, so it retries the same generation, then gives up."""
    sims["stability"].scenario.outcome = "fail"
    video_id, _ = await generate_for(server, token, "stability")
    async with running_worker(runtime):
        video = await wait_for_status(video_id)
    assert video.status == S.FAILED and video.retry_count == runtime.settings.max_retries
    assert "gave up after" in (video.error_message or "")
    assert sims["stability"].submissions == 1  # each retry polls the same generation


# --- retryable failures: re-queued, then completed --------------------------------------------


@one_backend
@pytest.mark.parametrize("name", HTTP_PROVIDERS)
async def test_429_requeues_at_retry_after_then_completes(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    sim = sims[name]
    sim.scenario.retry_after = "1"
    sim.scenario.fail_next("submit", "429")
    video_id, _ = await generate_for(server, token, name)
    before = utcnow()
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    after = utcnow()
    video = await Video.get(id=video_id)
    assert video.status == S.QUEUED and video.retry_count == 0  # an outage: budget kept
    assert video.scheduled_at is not None
    # Retry-After (1 s) wins over the configured backoff (at most 0.05 s).
    assert before + dt.timedelta(seconds=1) <= video.scheduled_at
    assert video.scheduled_at <= after + dt.timedelta(seconds=1)
    assert await attempts(video_id) == [(AttemptOutcome.RETRY, "rate_limited")]
    assert await Worker(runtime, concurrency=1).run_until_idle() == 0  # not due yet
    await asyncio.sleep(max(0.0, (video.scheduled_at - utcnow()).total_seconds()) + 0.05)
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    await assert_completed_with_sample(runtime, video_id)
    assert sim.submissions == 1


@one_backend
@pytest.mark.parametrize("name", HTTP_PROVIDERS)
@pytest.mark.parametrize(("fault", "code"), [("500", "server_error"), ("hang", "timeout")])
async def test_server_error_or_hang_is_retried_then_completes(
    name: str,
    fault: str,
    code: str,
    server: LiveServer,
    runtime: Runtime,
    sims: Sims,
    token: str,
) -> None:
    sim = sims[name]
    sim.scenario.fail_next("submit", fault)
    video_id, _ = await generate_for(server, token, name)
    started = asyncio.get_running_loop().time()
    async with running_worker(runtime):
        await wait_for_status(video_id)
    elapsed = asyncio.get_running_loop().time() - started
    video = await assert_completed_with_sample(runtime, video_id)
    # A submission that met a 500 or timed out may have been accepted: it spends the budget
    # (an outage that cannot have been paid for does not; see test_provider_faults).
    assert video.retry_count == 1
    assert await attempts(video_id) == [
        (AttemptOutcome.RETRY, code),
        (AttemptOutcome.SUCCEEDED, None),
    ]
    assert sim.submissions == 1
    if fault == "hang":  # the client gave up at its timeout, not when the server answered
        assert elapsed >= CLIENT_TIMEOUT


# --- a wrong key ------------------------------------------------------------------------------


@one_backend
@pytest.mark.parametrize("name", HTTP_PROVIDERS)
async def test_rejected_key_fails_naming_the_setting_not_the_key(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    # The simulator wants another key, so ours is refused (and echoed back in the 401 body).
    sim = sims.replace(name, api_key="another-key-entirely-0123456789")
    video_id, _ = await generate_for(server, token, name)
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    video = await Video.get(id=video_id)
    assert video.status == S.FAILED and video.retry_count == 0
    message = video.error_message or ""
    assert f"VIDGEN_{name.upper()}_API_KEY" in message
    assert KEYS[name] not in message and KEYS[name][:12] not in message
    assert await attempts(video_id) == [(AttemptOutcome.FAILED, "auth")]
    assert sim.submissions == 0
    rows = await VideoAttempt.filter(video_id=video_id).values_list("error_message", flat=True)
    assert all(KEYS[name] not in (row or "") for row in rows)


# --- cancel -----------------------------------------------------------------------------------


@one_backend
@pytest.mark.parametrize("name", HTTP_PROVIDERS)
async def test_cancel_of_a_processing_job_reaches_the_provider(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    sim = sims[name]
    sim.scenario.running_polls = 1_000_000  # runs until canceled
    video_id, gid = await generate_for(server, token, name)
    async with running_worker(runtime):
        processing = await wait_for_prediction(video_id)
        await asyncio.sleep(0.2)  # let it poll a few times
        body = await server.gql(CANCEL_VIDEO, {"id": gid}, token=token)
        assert "errors" not in body, body
        assert body["data"]["cancelVideo"]["status"] in ("PROCESSING", "CANCELED")
        video = await wait_for_status(video_id, seconds=30)  # never, were the cancel lost
    assert video.status == S.CANCELED
    assert await attempts(video_id) == [(AttemptOutcome.CANCELED, None)]
    route = CANCEL_ROUTES[name]
    if route is None:  # no cancel endpoint (Stability, Google): only submit and polls sent
        assert not any(
            method in ("DELETE", "PUT") or path.endswith("/cancel") for method, path in sim.requests
        ), sim.requests
    else:
        method, path = route
        assert (method, path.format(id=processing.prediction_id)) in sim.requests
    assert sim.submissions == 1


@one_backend
@pytest.mark.parametrize("name", ["runway", "replicate"])
async def test_cancel_of_a_released_job_cancels_its_live_prediction(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    sim = sims[name]
    sim.scenario.running_polls = 1_000_000
    video_id, gid = await generate_for(server, token, name)
    worker = Worker(runtime, concurrency=1)
    worker.start()
    processing = await wait_for_prediction(video_id)
    await worker.stop(grace_seconds=0)  # released: queued again, the prediction kept
    released = await Video.get(id=video_id)
    assert released.status == S.QUEUED and released.prediction_id == processing.prediction_id
    assert [job.canceled for job in sim.jobs.values()] == [False]  # still running upstream
    body = await server.gql(CANCEL_VIDEO, {"id": gid}, token=token)
    assert "errors" not in body, body
    async with running_worker(runtime):  # give a worker the chance to do it, if it must
        video = await wait_for_status(video_id, seconds=30)
        assert video.status == S.CANCELED
        method, path = CANCEL_ROUTES[name] or ("", "")
        expected = (method, path.format(id=processing.prediction_id))

        async def cancel_sent() -> bool:
            return expected in sim.requests

        await wait_until(cancel_sent, seconds=15)  # the worker's sweep sends it


# --- no double submit after a rescue ----------------------------------------------------------


@one_backend
@pytest.mark.parametrize("name", HTTP_PROVIDERS)
async def test_rescued_job_polls_its_prediction_instead_of_submitting_again(
    name: str, server: LiveServer, runtime: Runtime, sims: Sims, token: str, db: Settings
) -> None:
    sim = sims[name]
    sim.scenario.running_polls = 3
    video_id, _ = await generate_for(server, token, name)
    # A worker claims the job, submits, stores the prediction id... and dies without a word.
    [claimed] = await queue.claim(worker_id="doomed", limit=1, lease_seconds=db.lease_seconds)
    ctx = pipeline.JobContext(runtime, claimed, worker_id="doomed")
    doomed = asyncio.create_task(pipeline.run_job(ctx))
    first = await wait_for_prediction(video_id)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert sim.submissions == 1
    # Its lease runs out; the next worker's sweeper rescues the job and the worker resumes it.
    await Video.filter(id=video_id).update(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    video = await assert_completed_with_sample(runtime, video_id)
    assert video.prediction_id == first.prediction_id
    assert (video.rescue_count, video.retry_count) == (1, 1)
    assert [outcome for outcome, _ in await attempts(video_id)] == [
        AttemptOutcome.RESCUED,
        AttemptOutcome.SUCCEEDED,
    ]
    assert sim.submissions == 1  # polled, never paid twice
