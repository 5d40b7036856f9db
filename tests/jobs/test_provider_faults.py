"""The engine against a real HTTP adapter and its simulator: what provider faults do to a job.

fal is the adapter here (webhooks, a separate output URL, error types); its simulator runs on
a free port and the engine talks to it over real HTTP. Timing is checked on the computed
schedule (``scheduled_at``) and on request counts, never on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from tests.jobs.conftest import make_video, prediction_stored, utcnow, wait_until
from tests.simulators import FalSimulator
from tests.simulators.server import aserve
from tests.simulators.vendors import VENDORS, adapter_settings
from vidgen.events.channels import job_channel
from vidgen.events.memory import MemoryBus
from vidgen.jobs import control
from vidgen.jobs.pipeline import MAX_POLL_ERRORS
from vidgen.jobs.retry import MAX_WAIT_SECONDS
from vidgen.jobs.worker import Worker
from vidgen.models import AttemptOutcome, User, Video, VideoAttempt, VideoStatus
from vidgen.providers.fal import FalProvider
from vidgen.runtime import Runtime
from vidgen.settings import Settings
from vidgen.web.webhooks import webhook_routes

S = VideoStatus
MODEL = "fal-ai/kling-video/v2/master/text-to-video"


@dataclasses.dataclass
class Fal:
    sim: FalSimulator
    provider: FalProvider
    runtime: Runtime


@pytest_asyncio.fixture
async def fal(db: Settings) -> AsyncIterator[Fal]:
    """A runtime whose only provider is fal, talking to a fresh simulator."""
    sim = FalSimulator(api_key=VENDORS["fal"].key)
    sim.scenario.queued_polls = 0
    sim.scenario.running_polls = 1
    async with aserve(sim.app) as url:
        sim.base_url = url
        provider = FalProvider(adapter_settings("fal", url, fal_model=MODEL))
        # Poll as fast as the test likes (fal's own floor is 2 s).
        provider.capabilities = dataclasses.replace(
            provider.capabilities, min_poll_interval=0.01, max_poll_interval=0.05
        )
        # A retry is never due within the same burst: each run_once is one attempt.
        db.retry_base_seconds = db.retry_cap_seconds = 30.0
        runtime = Runtime.create(db, bus=MemoryBus(), providers={"fal": provider})
        await runtime.open()
        try:
            yield Fal(sim=sim, provider=provider, runtime=runtime)
        finally:
            await runtime.close()


async def fal_video(fal: Fal, prompt: str = "a fox", **values: Any) -> Video:
    user = await User.create(email=f"fal{utcnow().timestamp()}@example.com", password_hash="x")
    return await make_video(
        user, prompt, provider="fal", resolution="1280x720", duration_seconds=5, **values
    )


async def attempts(video_id: int) -> list[tuple[AttemptOutcome, str | None]]:
    rows = await VideoAttempt.filter(video_id=video_id).order_by("attempt")
    return [(a.outcome, a.error_code) for a in rows]


async def run_once(fal: Fal) -> None:
    await asyncio.wait_for(Worker(fal.runtime, concurrency=1).run_until_idle(), timeout=20)


# --- finding 5: a 429 that states no wait ------------------------------------------------


async def test_429_without_retry_after_waits_the_rate_limit_fallback(fal: Fal) -> None:
    fal.runtime.settings.rate_limit_retry_seconds = 60.0
    fal.sim.scenario.retry_after = None  # what the providers' docs actually promise
    fal.sim.scenario.fail_next("submit", "429")
    video = await fal_video(fal)
    before = utcnow()
    await run_once(fal)
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED and queued.retry_count == 0  # an outage: budget kept
    # Not 2, 4, 8 s of backoff (all inside the lock-out): at least the fallback.
    assert queued.scheduled_at >= before + dt.timedelta(seconds=60)
    assert queued.scheduled_at <= utcnow() + dt.timedelta(seconds=60 * 1.25 + 1)
    assert await attempts(video.id) == [(AttemptOutcome.RETRY, "rate_limited")]


async def test_429_stating_its_wait_in_the_body_uses_that(fal: Fal) -> None:
    fal.sim.scenario.retry_after = None
    fal.sim.scenario.rate_limit_detail = "Request was throttled. Your rate limit resets in ~30s."
    fal.sim.scenario.fail_next("submit", "429")
    video = await fal_video(fal)
    before = utcnow()
    await run_once(fal)
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED
    assert before + dt.timedelta(seconds=30) <= queued.scheduled_at
    assert queued.scheduled_at <= utcnow() + dt.timedelta(seconds=31)


# --- finding 11: Retry-After must be finite and capped; deep JSON is malformed --------------


@pytest.mark.parametrize("header", ["inf", "1e400", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_absurd_retry_after_is_capped_at_a_day(fal: Fal, header: str) -> None:
    fal.sim.scenario.retry_after = header
    fal.sim.scenario.fail_next("submit", "429")
    video = await fal_video(fal)
    before = utcnow()
    await run_once(fal)
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED and queued.retry_count == 0  # an outage: budget kept
    assert queued.scheduled_at >= before + dt.timedelta(seconds=MAX_WAIT_SECONDS - 1)
    assert queued.scheduled_at <= utcnow() + dt.timedelta(seconds=MAX_WAIT_SECONDS)


async def test_deeply_nested_json_is_a_transient_bad_response(fal: Fal) -> None:
    fal.sim.scenario.fail_next("poll", "deep")
    video = await fal_video(fal)
    await run_once(fal)
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED, done.error_message
    assert fal.sim.submissions == 1  # the poll loop rode it out


async def test_deeply_nested_json_on_submit_is_retried_not_internal(fal: Fal) -> None:
    fal.sim.scenario.fail_next("submit", "deep")
    video = await fal_video(fal)
    await run_once(fal)
    assert await attempts(video.id) == [(AttemptOutcome.RETRY, "malformed_response")]


# --- finding 7: fal infrastructure failures are retried -----------------------------------


@pytest.mark.parametrize("error_type", ["runner_disconnected", "request_timeout"])
async def test_fal_infrastructure_failure_is_retried_with_a_new_request(
    fal: Fal, error_type: str
) -> None:
    fal.sim.scenario.outcome = "fail"
    fal.sim.error_type = error_type
    video = await fal_video(fal)
    await run_once(fal)
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED and queued.retry_count == 1
    assert queued.prediction_id is None  # the failed request is dead: submit a new one
    assert await attempts(video.id) == [(AttemptOutcome.RETRY, "prediction_failed")]
    fal.sim.scenario.outcome = "succeed"
    await Video.filter(id=video.id).update(scheduled_at=None)
    await run_once(fal)
    assert (await Video.get(id=video.id)).status == S.COMPLETED
    assert fal.sim.submissions == 2


async def test_fal_model_failure_is_permanent(fal: Fal) -> None:
    fal.sim.scenario.outcome = "fail"  # no error_type: the model failed on this input
    video = await fal_video(fal)
    await run_once(fal)
    assert (await Video.get(id=video.id)).status == S.FAILED
    assert await attempts(video.id) == [(AttemptOutcome.FAILED, "prediction_failed")]


# --- finding 12: an expired output URL is fetched again, not a bad key ----------------------


@pytest.mark.parametrize("kind", ["expired", "gone"])
async def test_expired_output_url_is_polled_again_and_downloaded(fal: Fal, kind: str) -> None:
    fal.sim.file_host = "localhost"  # a CDN: not the API's host
    fal.sim.scenario.fail_next("download", kind)
    video = await fal_video(fal)
    await run_once(fal)
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED, done.error_message
    assert await attempts(video.id) == [(AttemptOutcome.SUCCEEDED, None)]
    assert fal.sim.submissions == 1  # never paid twice
    downloads = [r for r in fal.sim.requests if r[1].startswith("/files/")]
    assert len(downloads) == 2


async def test_output_url_expiring_for_good_requeues_keeping_the_prediction(fal: Fal) -> None:
    fal.sim.file_host = "localhost"
    fal.sim.scenario.fail_next("download", "expired", times=2)
    video = await fal_video(fal)
    await run_once(fal)
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED and queued.prediction_id  # resumed, not resubmitted
    assert "no longer available" in queued.error_message
    assert "rejected" not in queued.error_message and "API_KEY" not in queued.error_message
    assert await attempts(video.id) == [(AttemptOutcome.RETRY, "output_expired")]
    await Video.filter(id=video.id).update(scheduled_at=None)
    await run_once(fal)
    assert (await Video.get(id=video.id)).status == S.COMPLETED
    assert fal.sim.submissions == 1


# --- finding 9: replayed webhooks wake the job once -------------------------------------


async def test_replayed_fal_webhook_nudges_the_job_once(fal: Fal) -> None:
    # The receiving app runs in this event loop (it uses the test's database connection).
    app = Starlette(routes=webhook_routes(fal.runtime))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vidgen.test") as hooks:
        fal.provider.capabilities = dataclasses.replace(
            fal.provider.capabilities, min_poll_interval=30, max_poll_interval=30
        )
        video = await fal_video(fal)
        fal.sim.scenario.running_polls = 10_000  # keep it running
        run = asyncio.create_task(Worker(fal.runtime, concurrency=1).run_until_idle())
        try:
            await wait_until(lambda: prediction_stored(video.id))
            prediction_id = (await Video.get(id=video.id)).prediction_id
            async with fal.runtime.bus.subscribe(job_channel(video.id)) as sub:
                first = await fal.sim.deliver_webhook(
                    prediction_id, url="http://vidgen.test/webhooks/fal", client=hooks
                )
                again = await fal.sim.replay_webhook(times=5, client=hooks)
                assert [r.status_code for r in [first, *again]] == [200] * 6
                assert all(r.json()["known"] for r in [first, *again])
                await asyncio.sleep(0.05)
                messages = []
                while not sub.queue.empty():
                    messages.append(await sub.get())
            assert [m["type"] for m in messages] == ["webhook"]
        finally:
            await control.request_cancel(video.id, actor="test", bus=fal.runtime.bus)
            await asyncio.wait_for(run, timeout=10)


# --- provider outages delay jobs, never fail them (probe, 2026-11-26) ----------------------


async def run_due(fal: Fal, video_id: int) -> Video:
    """One attempt now, whatever its backoff said."""
    await Video.filter(id=video_id, status=S.QUEUED).update(scheduled_at=None)
    await run_once(fal)
    return await Video.get(id=video_id)


async def test_an_outage_spends_no_retries_and_resumes_the_same_prediction(fal: Fal) -> None:
    """A provider answering 500 to every poll for longer than the whole retry budget: the job
    waits it out on the prediction it paid for, then completes (it used to fail for good after
    ``max_retries`` attempts, however short the outage)."""
    video = await fal_video(fal, max_retries=1)
    fal.sim.scenario.fail_next("poll", "500", times=4 * (MAX_POLL_ERRORS + 1))
    outcomes = []
    for _ in range(8):
        current = await run_due(fal, video.id)
        outcomes = await attempts(video.id)
        if current.status is not S.QUEUED:
            break
        assert current.retry_count == 0 and current.prediction_id is not None
        assert "provider outage" in (await last_message(video.id))
    assert current.status is S.COMPLETED, outcomes
    assert current.retry_count == 0
    assert len(outcomes) > current.max_retries + 1
    assert outcomes[:-1] == [(AttemptOutcome.RETRY, "server_error")] * (len(outcomes) - 1)
    assert outcomes[-1] == (AttemptOutcome.SUCCEEDED, None)
    assert fal.sim.submissions == 1


async def last_message(video_id: int) -> str:
    from vidgen.models import VideoStatusEvent

    row = await VideoStatusEvent.filter(video_id=video_id).order_by("-id").first()
    return row.message or ""


async def test_a_resumed_prediction_rides_out_a_failed_first_poll(fal: Fal) -> None:
    """The first poll of a resumed prediction gets the same tolerance as any other poll."""
    video = await fal_video(fal)
    fal.sim.scenario.fail_next("poll", "500", times=MAX_POLL_ERRORS + 1)
    assert (await run_due(fal, video.id)).status is S.QUEUED  # one attempt spent
    fal.sim.scenario.fail_next("poll", "500")  # the resumed attempt's first poll
    done = await run_due(fal, video.id)
    assert done.status is S.COMPLETED
    assert await attempts(video.id) == [
        (AttemptOutcome.RETRY, "server_error"),
        (AttemptOutcome.SUCCEEDED, None),
    ]
    assert fal.sim.submissions == 1


async def test_an_outage_past_its_patience_spends_the_budget_and_retry_resumes(fal: Fal) -> None:
    """Past ``provider_outage_seconds`` the failures spend the budget; the video fails keeping
    its live prediction, and retryVideo resumes that prediction instead of paying again."""
    fal.runtime.settings.provider_outage_seconds = 60.0
    video = await fal_video(fal, max_retries=1)
    fal.sim.scenario.fail_next("poll", "500", times=100)
    first = await run_due(fal, video.id)
    assert (first.status, first.retry_count) == (S.QUEUED, 0)
    # The outage began two minutes ago.
    await VideoAttempt.filter(video_id=video.id).update(
        started_at=utcnow() - dt.timedelta(seconds=120)
    )
    second = await run_due(fal, video.id)
    assert (second.status, second.retry_count) == (S.QUEUED, 1)
    failed = await run_due(fal, video.id)
    assert failed.status is S.FAILED and "gave up after 1 retries" in failed.error_message
    assert failed.prediction_id is not None
    fal.sim.scenario.faults.clear()
    again = await control.retry(video.id, actor="user:1", bus=fal.runtime.bus)
    assert again.prediction_id == failed.prediction_id
    done = await run_due(fal, video.id)
    assert done.status is S.COMPLETED
    assert fal.sim.submissions == 1  # never paid twice


async def test_a_refused_submission_is_waited_out(fal: Fal) -> None:
    """503 (load shedding) and 429 refuse a submission: nothing was accepted, so waiting
    them out costs nothing and spends no retries."""
    video = await fal_video(fal, max_retries=0)
    fal.sim.scenario.retry_after = "0"
    fal.sim.scenario.fail_next("submit", "503", times=2)
    fal.sim.scenario.fail_next("submit", "429")
    for _ in range(5):
        current = await run_due(fal, video.id)
        if current.status is not S.QUEUED:
            break
    assert current.status is S.COMPLETED
    assert [o for o, _ in await attempts(video.id)].count(AttemptOutcome.RETRY) == 3
    assert fal.sim.submissions == 1


@pytest.mark.parametrize("fault", ["500", "hang"])
async def test_a_submission_that_may_have_been_accepted_spends_the_budget(
    fal: Fal, fault: str
) -> None:
    """A 500 or a timeout on submit may hide an accepted (paid) submission: waiting such an
    outage out for hours could pay a hundred times, so these spend the retry budget."""
    fal.sim.scenario.hang_seconds = 0.5
    fal.provider.client.timeout = httpx.Timeout(0.2)
    video = await fal_video(fal, max_retries=1)
    fal.sim.scenario.fail_next("submit", fault, times=5)
    assert (await run_due(fal, video.id)).retry_count == 1
    failed = await run_due(fal, video.id)
    assert failed.status is S.FAILED and "gave up after 1 retries" in failed.error_message


async def test_a_failure_of_the_output_drops_the_prediction_for_retry(fal: Fal) -> None:
    """Failed for good on its output (its URL refused even after a fresh poll), the video
    drops its prediction: retryVideo asks for a new generation, not the same dead file."""
    fal.sim.file_host = "localhost"  # a CDN: not the API's host
    video = await fal_video(fal, max_retries=0)
    fal.sim.scenario.fail_next("download", "expired", times=2)
    failed = await run_due(fal, video.id)
    assert failed.status is S.FAILED and failed.prediction_id is None, failed.error_message
    assert await attempts(video.id) == [(AttemptOutcome.FAILED, "output_expired")]
    fal.sim.scenario.faults.clear()
    again = await control.retry(video.id, actor="user:1", bus=fal.runtime.bus)
    assert again.prediction_id is None
    done = await run_due(fal, video.id)
    assert done.status is S.COMPLETED, done.error_message
    assert fal.sim.submissions == 2


async def test_a_cancel_met_by_an_outage_cancels_the_prediction(fal: Fal) -> None:
    """Canceled while its polls fail, the job ends canceled in its retry write; the live
    prediction must be canceled upstream too (it was left running, and paid)."""
    fal.runtime.settings.heartbeat_seconds = 60.0  # the flag is found only by the last write
    fal.sim.scenario.running_polls = 10_000
    fal.provider.capabilities = dataclasses.replace(
        fal.provider.capabilities, min_poll_interval=0.3, max_poll_interval=0.3
    )
    video = await fal_video(fal)
    worker = asyncio.create_task(run_once(fal))
    await wait_until(lambda: prediction_stored(video.id))
    fal.sim.scenario.fail_next("poll", "500", times=MAX_POLL_ERRORS + 1)
    await Video.filter(id=video.id).update(cancel_requested=True)  # no message: unseen
    await worker
    canceled = await Video.get(id=video.id)
    assert canceled.status is S.CANCELED
    [job] = fal.sim.jobs.values()
    assert job.canceled


async def test_outages_spend_the_budget_when_patience_is_zero(fal: Fal) -> None:
    fal.runtime.settings.provider_outage_seconds = 0.0
    video = await fal_video(fal, max_retries=0)
    fal.sim.scenario.fail_next("submit", "503")
    failed = await run_due(fal, video.id)
    assert failed.status is S.FAILED and "gave up after 0 retries" in failed.error_message


async def test_retry_of_a_canceled_video_submits_anew(fal: Fal) -> None:
    """A canceled video's prediction was canceled upstream: retryVideo must not resume it."""
    fal.sim.scenario.running_polls = 10_000
    video = await fal_video(fal)
    worker = asyncio.create_task(run_once(fal))
    await wait_until(lambda: prediction_stored(video.id))
    await control.request_cancel(video.id, actor="user:1", bus=fal.runtime.bus)
    await worker
    canceled = await Video.get(id=video.id)
    assert canceled.status is S.CANCELED and canceled.prediction_id is not None
    again = await control.retry(video.id, actor="user:1", bus=fal.runtime.bus)
    assert again.prediction_id is None
    fal.sim.scenario.running_polls = 1
    assert (await run_due(fal, video.id)).status is S.COMPLETED
    assert fal.sim.submissions == 2
