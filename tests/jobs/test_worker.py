"""Workers: sweeping expired leases, rescue caps, wake-ups, graceful shutdown, lost leases."""

from __future__ import annotations

import asyncio
import datetime as dt

from tests.jobs.conftest import make_video, prediction_stored, utcnow, wait_until
from vidgen.events.memory import MemoryBus
from vidgen.jobs import control, leases, lifecycle, queue
from vidgen.jobs.worker import Worker, start_embedded
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime

S = VideoStatus


async def expire(video_id: int) -> None:
    await Video.filter(id=video_id).update(lease_expires_at=utcnow() - dt.timedelta(seconds=1))


async def claim_one(worker: str = "dead") -> int:
    [job] = await queue.claim(worker_id=worker, limit=1, lease_seconds=30)
    return job.attempt


async def test_sweeper_rescues_expired_lease_counting_the_attempt(db, user) -> None:
    video = await make_video(user)
    await claim_one()
    assert await leases.sweep(max_rescues=3) == []  # lease still valid
    await expire(video.id)
    [swept] = await leases.sweep(max_rescues=3)
    assert swept.to_status is S.QUEUED
    again = await Video.get(id=video.id)
    assert again.status == S.QUEUED and again.processed_by is None
    assert (again.retry_count, again.rescue_count) == (1, 1)
    assert "lease expired" in again.error_message
    attempt = await VideoAttempt.get(video_id=video.id, attempt=1)
    assert attempt.outcome == AttemptOutcome.RESCUED and attempt.error_code == "lease_expired"
    assert await leases.sweep(max_rescues=3) == []  # nothing twice


async def test_concurrent_sweepers_rescue_once(db, user) -> None:
    video = await make_video(user)
    await claim_one()
    await expire(video.id)
    results = await asyncio.gather(*(leases.sweep(max_rescues=3) for _ in range(4)))
    assert sum(len(r) for r in results) == 1
    assert (await Video.get(id=video.id)).rescue_count == 1


async def test_rescue_cap_fails_a_job_that_keeps_killing_workers(db, user) -> None:
    video = await make_video(user, max_retries=10, prediction_id="test1-kills")
    for n in range(1, 4):
        await claim_one(f"w{n}")
        await expire(video.id)
        [swept] = await leases.sweep(max_rescues=2)
        assert swept.to_status is (S.QUEUED if n <= 2 else S.FAILED)
        if n <= 2:  # a rescue resumes the prediction
            assert (await Video.get(id=video.id)).prediction_id == "test1-kills"
    failed = await Video.get(id=video.id)
    assert failed.status == S.FAILED and failed.rescue_count == 3
    assert "max_rescues" in failed.error_message
    # Its output most likely kills the workers: a retry asks for a new generation.
    assert failed.prediction_id is None


async def test_rescue_with_retries_spent_fails(db, user) -> None:
    video = await make_video(user, max_retries=0, prediction_id="test1-spent")
    await claim_one()
    await expire(video.id)
    [swept] = await leases.sweep(max_rescues=5)
    assert swept.to_status is S.FAILED
    assert swept.prediction_id == "test1-spent"  # for the worker to cancel upstream
    failed = await Video.get(id=video.id)
    assert "retries spent" in failed.error_message
    assert failed.prediction_id is None  # canceled upstream: retryVideo submits anew


async def test_rescue_of_a_canceled_job_cancels_it(runtime, user, provider) -> None:
    video = await make_video(user, "hang")
    await claim_one()
    await Video.filter(id=video.id).update(cancel_requested=True, prediction_id="test1-x")
    await expire(video.id)
    await Worker(runtime, concurrency=1).run_until_idle()
    assert (await Video.get(id=video.id)).status == S.CANCELED
    assert provider.cancels == ["test1-x"]


async def test_worker_wakes_on_bus_not_on_poll(runtime, user) -> None:
    runtime.settings.worker_poll_seconds = 60  # only a wake-up can make this fast
    worker = await start_embedded(runtime, concurrency=2)
    try:
        await asyncio.sleep(0.1)  # idle, waiting
        video = await make_video(user)
        await control.wake_workers(runtime.bus)
        # Well below the 60 s poll; the job itself (and a media process's start) needs time.
        await wait_until(lambda: Video.filter(id=video.id, status=S.COMPLETED).exists(), seconds=15)
    finally:
        await worker.stop()


async def test_worker_picks_up_retry_when_it_becomes_due(runtime, user) -> None:
    runtime.settings.worker_poll_seconds = 60
    runtime.settings.retry_base_seconds = 0.3
    runtime.settings.retry_cap_seconds = 0.3
    video = await make_video(user, "fail-times:1")
    worker = await start_embedded(runtime, concurrency=1)
    try:
        await control.wake_workers(runtime.bus)
        await wait_until(lambda: Video.filter(id=video.id, status=S.COMPLETED).exists())
    finally:
        await worker.stop()
    assert (await Video.get(id=video.id)).retry_count == 1


async def test_graceful_shutdown_finishes_short_jobs_and_releases_the_rest(
    runtime, user, provider
) -> None:
    quick = await make_video(user, "sleep:0.2")
    stuck = await make_video(user, "hang")
    worker = await start_embedded(runtime, concurrency=2)
    await wait_until(lambda: prediction_stored(stuck.id))
    await wait_until(lambda: prediction_stored(quick.id))
    await worker.stop(grace_seconds=1.0)
    assert (await Video.get(id=quick.id)).status == S.COMPLETED
    released = await Video.get(id=stuck.id)
    assert released.status == S.QUEUED
    assert released.retry_count == 0 and released.rescue_count == 0
    assert released.prediction_id is not None  # the next worker resumes it
    assert released.lease_expires_at is None and released.processed_by is None
    [attempt] = await VideoAttempt.filter(video_id=stuck.id)
    assert attempt.outcome == AttemptOutcome.RELEASED
    assert provider.cancels == []  # a release does not cancel the paid prediction


async def test_shutdown_of_a_job_whose_cancel_was_requested_cancels_its_prediction(
    runtime, user, provider
) -> None:
    # The cancel flag was set but the job's worker had not seen it yet (no nudge, next
    # heartbeat far away) when the worker shut down: the release ends it canceled, and
    # its paid prediction is canceled too instead of running on upstream.
    runtime.settings.heartbeat_seconds = 30
    stuck = await make_video(user, "hang")
    worker = await start_embedded(runtime, concurrency=1)
    await wait_until(lambda: prediction_stored(stuck.id))
    await Video.filter(id=stuck.id).update(cancel_requested=True)
    await worker.stop(grace_seconds=0.1)
    video = await Video.get(id=stuck.id)
    assert video.status == S.CANCELED
    assert provider.cancels == [video.prediction_id]


async def test_worker_that_lost_its_lease_stops_without_writing(runtime, user) -> None:
    runtime.settings.heartbeat_seconds = 0.1
    video = await make_video(user, "hang")
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    await wait_until(lambda: prediction_stored(video.id))
    # Another worker's sweeper took the job over (its lease "expired") and claimed it. The
    # live worker's heartbeat (every 0.1 s) may extend the lease between the expiry and the
    # sweep: expire again until a sweep lands first (it failed about 2 runs in 12 under load).
    for _ in range(50):
        await expire(video.id)
        if await leases.sweep(max_rescues=3):
            break
    [job] = await queue.claim(worker_id="other", limit=1, lease_seconds=30)
    await asyncio.wait_for(run, timeout=3)
    now = await Video.get(id=video.id)
    assert now.status == S.PROCESSING and now.processed_by == "other"
    assert now.attempt == job.attempt == 2


async def test_worker_purges_expired_soft_deleted_videos_on_its_interval(runtime, user) -> None:
    runtime.settings.purge_interval_seconds = 0.2
    runtime.settings.retention_days = 30
    expired = await make_video(user, deleted_at=utcnow() - dt.timedelta(days=31))
    recent = await make_video(user, deleted_at=utcnow() - dt.timedelta(days=1))
    key = f"u{user.id}/v{expired.id}/video.mp4"
    await runtime.storage.save_bytes(key, b"old output")
    await Video.filter(id=expired.id).update(video_file=key, status=S.COMPLETED)
    worker = await start_embedded(runtime, concurrency=1)
    try:
        await wait_until(lambda: _gone(expired.id), seconds=5)
        # Every interval, not once: a second expired video goes too.
        later = await make_video(user, deleted_at=utcnow() - dt.timedelta(days=40))
        await Video.filter(id=later.id).update(status=S.FAILED)
        await wait_until(lambda: _gone(later.id), seconds=5)
    finally:
        await worker.stop()
    assert not await runtime.storage.exists(key)
    assert await Video.filter(id=recent.id).exists()  # inside the retention period


async def _gone(video_id: int) -> bool:
    return not await Video.filter(id=video_id).exists()


async def test_worker_with_purge_disabled_keeps_everything(runtime, user) -> None:
    runtime.settings.purge_interval_seconds = 0
    expired = await make_video(user, deleted_at=utcnow() - dt.timedelta(days=31))
    await Video.filter(id=expired.id).update(status=S.COMPLETED)
    worker = await start_embedded(runtime, concurrency=1)
    try:
        await asyncio.sleep(0.5)
    finally:
        await worker.stop()
    assert await Video.filter(id=expired.id).exists()


def _sample(name: str, **labels: str) -> float:
    from vidgen.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_job_metrics_are_observed_where_jobs_happen(runtime, user) -> None:
    retries = _sample("vidgen_job_retries_total", provider="test")
    retried = _sample("vidgen_job_duration_seconds_count", provider="test", outcome="retry")
    done = _sample("vidgen_job_duration_seconds_count", provider="test", outcome="succeeded")
    rescues = _sample("vidgen_job_rescues_total")
    video = await make_video(user, "fail-times:1")
    worker = Worker(runtime, concurrency=1)
    await worker.run_until_idle()
    await Video.filter(id=video.id).update(scheduled_at=None)
    await worker.run_until_idle()
    assert (await Video.get(id=video.id)).status == S.COMPLETED
    assert _sample("vidgen_job_retries_total", provider="test") == retries + 1
    assert (
        _sample("vidgen_job_duration_seconds_count", provider="test", outcome="retry")
        == retried + 1
    )
    assert (
        _sample("vidgen_job_duration_seconds_count", provider="test", outcome="succeeded")
        == done + 1
    )
    lost = await make_video(user)
    await claim_one()
    await expire(lost.id)
    await worker.run_until_idle()  # sweeps first
    assert _sample("vidgen_job_rescues_total") == rescues + 1


async def test_a_shutdown_during_the_prediction_ids_write_keeps_the_id(
    runtime, user, provider, monkeypatch
) -> None:
    # The database blinks as the id of a running prediction is written, and the worker is
    # stopped with no grace meanwhile: the write must still land before the job is handed
    # back, or its next attempt submits (and pays) again.
    real, tries = lifecycle.store_prediction, []

    async def blinking(*args, **kwargs):
        tries.append(1)
        if len(tries) <= 3:
            raise ConnectionRefusedError("the database is restarting")
        return await real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "store_prediction", blinking)
    video = await make_video(user, "hang")
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: asyncio.sleep(0, tries))
    worker.request_stop(grace_seconds=0)
    await asyncio.wait_for(run, timeout=10)
    row = await Video.get(id=video.id)
    assert row.status == S.QUEUED and row.prediction_id is not None, row
    next_worker = await start_embedded(runtime, concurrency=1)
    try:  # the next attempt polls the prediction it finds
        await wait_until(lambda: asyncio.sleep(0, provider.polls[row.prediction_id]))
    finally:
        await next_worker.stop(grace_seconds=0)
    assert provider.submissions[f"video-{video.id}"] == 1


async def test_a_worker_claims_only_the_providers_it_can_run(db, user) -> None:
    # A worker process without a provider's key leaves that provider's jobs to the workers
    # that have it, instead of failing them for good as "not available".
    class Unconfigured(TestProvider):
        @property
        def available(self) -> bool:
            return False

    runtime = Runtime.create(db, bus=MemoryBus(), providers={"test": Unconfigured()})
    await runtime.open()
    try:
        video = await make_video(user)
        assert await Worker(runtime, concurrency=1).run_until_idle() == 0
    finally:
        await runtime.close()
    row = await Video.get(id=video.id)
    assert (row.status, row.attempt, row.error_message) == (S.QUEUED, 0, None)


async def test_a_job_scheduled_soon_is_claimed_when_due_beside_a_running_one(runtime, user) -> None:
    # One slot busy, one free: the worker wakes for the job due in 0.5 s, not at its poll.
    runtime.settings.worker_poll_seconds = 60
    running = await make_video(user, "hang")
    soon = await make_video(user, scheduled_at=utcnow() + dt.timedelta(seconds=0.5))
    worker = await start_embedded(runtime, concurrency=2)
    try:
        await wait_until(lambda: prediction_stored(running.id))
        await wait_until(lambda: Video.filter(id=soon.id, status=S.COMPLETED).exists(), seconds=5)
    finally:
        await worker.stop(grace_seconds=0)
