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
from tests.providers.conftest import KEYS, provider_settings
from tests.simulators import FalSimulator
from tests.simulators.server import aserve
from vidgen.events.bus import job_channel
from vidgen.events.memory import MemoryBus
from vidgen.jobs import service
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
    sim = FalSimulator(api_key=KEYS["fal"])
    sim.scenario.queued_polls = 0
    sim.scenario.running_polls = 1
    async with aserve(sim.app) as url:
        sim.base_url = url
        provider = FalProvider(provider_settings("fal", url, fal_model=MODEL))
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
    assert queued.status == S.QUEUED and queued.retry_count == 1
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
    assert queued.status == S.QUEUED and queued.retry_count == 1
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
            await service.request_cancel(video.id, actor="test", bus=fal.runtime.bus)
            await asyncio.wait_for(run, timeout=10)
