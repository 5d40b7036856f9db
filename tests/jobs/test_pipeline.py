"""Running jobs: success with metadata, retries with backoff, failures, cancellation, resume."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.jobs.conftest import make_video, prediction_stored, utcnow, wait_until
from vidgen.events.channels import video_channel
from vidgen.jobs import control, queue
from vidgen.jobs.lifecycle import IllegalTransition
from vidgen.jobs.retry import MAX_WAIT_SECONDS, RATE_LIMIT_JITTER, RetryPolicy, retries_left
from vidgen.jobs.worker import Worker
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent
from vidgen.providers.base import GenerationRequest
from vidgen.settings import Settings

S = VideoStatus


async def attempts(video_id: int) -> list[VideoAttempt]:
    return await VideoAttempt.filter(video_id=video_id).order_by("attempt")


async def test_success_stores_media_and_metadata(runtime, user, provider) -> None:
    video = await make_video(user, "succeed progress sleep:0.1")
    async with runtime.bus.subscribe(video_channel(video.id)) as sub:
        assert await Worker(runtime, concurrency=2).run_until_idle() == 1
        events = []
        while not sub.queue.empty():
            events.append(await sub.get())
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED and done.progress == 1.0
    assert done.completed_at is not None and done.lease_expires_at is None
    assert done.video_file == f"u{user.id}/v{video.id}/video.mp4"
    assert done.thumbnail_file == f"u{user.id}/v{video.id}/thumbnail.jpg"
    assert (done.width, done.height, done.codec) == (64, 64, "h264")
    assert done.duration_seconds == pytest.approx(1.0) and done.frame_rate == pytest.approx(8.0)
    assert done.file_size == runtime.storage.path(done.video_file).stat().st_size > 0
    assert runtime.storage.path(done.thumbnail_file).stat().st_size > 0
    assert done.prediction_id and provider.submissions[f"video-{video.id}"] == 1
    [attempt] = await attempts(video.id)
    assert attempt.outcome == AttemptOutcome.SUCCEEDED and attempt.finished_at is not None
    assert attempt.prediction_id == done.prediction_id
    # Versions only grow, the last event is the completion, progress events have no cursor.
    versions = [e["version"] for e in events]
    assert versions == sorted(versions) and versions[-1] == done.version
    assert events[-1]["status"] == "completed" and events[-1]["event_id"] is not None
    assert any(e["event_id"] is None and e["status"] == "processing" for e in events)
    leftovers = list(runtime.storage.tmp_dir.iterdir()) if runtime.storage.tmp_dir.exists() else []
    assert leftovers == []


async def test_retryable_error_requeues_with_backoff(runtime, user) -> None:
    runtime.settings.retry_base_seconds = 10.0
    runtime.settings.retry_cap_seconds = 20.0
    video = await make_video(user, "fail-times:1")
    before = utcnow()
    await Worker(runtime, concurrency=1).run_until_idle()
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED and queued.retry_count == 1
    assert queued.scheduled_at is not None and queued.scheduled_at >= before
    assert queued.scheduled_at <= utcnow() + dt.timedelta(seconds=10.5)
    assert "temporary failure" in queued.error_message and queued.prediction_id is None
    [attempt] = await attempts(video.id)
    assert (attempt.outcome, attempt.retryable, attempt.error_code) == (
        AttemptOutcome.RETRY,
        True,
        "temporary",
    )
    # Not due yet: a burst leaves it alone. Once due it runs and succeeds.
    assert await Worker(runtime, concurrency=1).run_until_idle() == 0
    await Video.filter(id=video.id).update(scheduled_at=utcnow() - dt.timedelta(seconds=1))
    await Worker(runtime, concurrency=1).run_until_idle()
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED and done.retry_count == 1 and done.error_message is None
    assert [a.outcome for a in await attempts(video.id)] == [
        AttemptOutcome.RETRY,
        AttemptOutcome.SUCCEEDED,
    ]


async def test_retry_after_longer_than_backoff_wins(runtime, user) -> None:
    video = await make_video(user, "retry-after:30")  # backoff here is <= 0.05 s
    before = utcnow()
    await Worker(runtime, concurrency=1).run_until_idle()
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED
    assert queued.scheduled_at >= before + dt.timedelta(seconds=29.9)


def test_backoff_full_jitter_bounds() -> None:
    import random

    policy = RetryPolicy(base_seconds=2, cap_seconds=60)
    rng = random.Random(4)
    for n in range(10):
        ceiling = min(60, 2 * 2**n)
        assert policy.ceiling(n) == ceiling
        assert all(0 <= policy.delay(n, rng=rng) <= ceiling for _ in range(50))
    assert policy.delay(0, retry_after=100, rng=rng) == 100
    assert policy.delay(30, retry_after=0.001, rng=random.Random(1)) > 0.001
    assert retries_left(2, 3) and not retries_left(3, 3)


def test_rate_limited_without_a_hint_waits_the_fallback() -> None:
    import random

    policy = RetryPolicy(base_seconds=2, cap_seconds=300, rate_limit_seconds=60)
    rng = random.Random(7)
    # Backoff alone would retry after <= 2, 4, 8 s, all inside a 60 s lock-out.
    for n in range(3):
        delays = [policy.delay(n, rate_limited=True, rng=rng) for _ in range(50)]
        assert all(60 <= d <= 60 * (1 + RATE_LIMIT_JITTER) for d in delays)
        assert len(set(delays)) > 1  # spread, not a thundering herd at +60 s
    assert policy.delay(0, retry_after=5, rate_limited=True, rng=rng) == 5  # stated: wins
    assert policy.delay(0, rng=rng) <= 2  # not rate limited: plain backoff
    assert RetryPolicy.from_settings(Settings(_env_file=None)).rate_limit_seconds == 60


@pytest.mark.parametrize("hint", [float("inf"), 1e300, 10**12])
def test_retry_after_is_capped_at_a_day(hint: float) -> None:
    delay = RetryPolicy().delay(0, retry_after=hint)
    assert delay == MAX_WAIT_SECONDS == 86400
    assert utcnow() + dt.timedelta(seconds=delay)  # the schedule can be computed
    assert RetryPolicy().delay(0, retry_after=float("nan")) <= 2


async def test_rate_limited_job_without_a_hint_is_scheduled_after_the_fallback(
    runtime, user
) -> None:
    runtime.settings.rate_limit_retry_seconds = 45.0
    # NaN is a hint nobody can use: the test provider then sends a 429 with no usable wait.
    video = await make_video(user, "retry-after:nan")
    before = utcnow()
    await Worker(runtime, concurrency=1).run_until_idle()
    queued = await Video.get(id=video.id)
    assert queued.status == S.QUEUED
    assert queued.scheduled_at >= before + dt.timedelta(seconds=45)


async def test_permanent_failure_fails_at_once(runtime, user) -> None:
    video = await make_video(user, "fail")
    await Worker(runtime, concurrency=1).run_until_idle()
    failed = await Video.get(id=video.id)
    assert failed.status == S.FAILED and failed.retry_count == 0
    assert "failed as commanded" in failed.error_message
    [attempt] = await attempts(video.id)
    assert (attempt.outcome, attempt.retryable, attempt.error_code) == (
        AttemptOutcome.FAILED,
        False,
        "generation_failed",
    )


async def test_unexpected_exception_fails_with_internal_error(runtime, user) -> None:
    video = await make_video(user, "raise")
    await Worker(runtime, concurrency=1).run_until_idle()
    failed = await Video.get(id=video.id)
    assert failed.status == S.FAILED and "RuntimeError" in failed.error_message
    assert (await attempts(video.id))[0].error_code == "internal"


async def test_max_retries_spent_fails(runtime, user, provider) -> None:
    video = await make_video(user, "fail-retryable", max_retries=2)
    worker = Worker(runtime, concurrency=1)
    for _ in range(3):
        await Video.filter(id=video.id, status=S.QUEUED).update(scheduled_at=None)
        await worker.run_until_idle()
    failed = await Video.get(id=video.id)
    assert failed.status == S.FAILED and failed.retry_count == 2
    assert "gave up after 2 retries" in failed.error_message
    assert [a.outcome for a in await attempts(video.id)] == [
        AttemptOutcome.RETRY,
        AttemptOutcome.RETRY,
        AttemptOutcome.FAILED,
    ]
    assert provider.submissions[f"video-{video.id}"] == 3
    history = await VideoStatusEvent.filter(video_id=video.id).values_list("to_status", flat=True)
    assert history[-1] == "failed" and history.count("processing") == 3


async def test_cancel_queued_is_immediate_and_terminal_is_conflict(runtime, user) -> None:
    video = await make_video(user)
    canceled = await control.request_cancel(video.id, actor="user:1", bus=runtime.bus)
    assert canceled.status == S.CANCELED
    assert await Worker(runtime, concurrency=1).run_until_idle() == 0
    with pytest.raises(IllegalTransition) as info:
        await control.request_cancel(video.id, actor="user:1", bus=runtime.bus)
    assert info.value.code == "CONFLICT"


async def test_cancel_processing_via_heartbeat_cancels_prediction(runtime, user, provider) -> None:
    video = await make_video(user, "hang")
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    await wait_until(lambda: prediction_stored(video.id))
    # No bus message (as when the API runs in another process): the heartbeat must notice.
    await Video.filter(id=video.id).update(cancel_requested=True)
    start = asyncio.get_running_loop().time()
    # Without the heartbeat's check the "hang" job never ends (nothing else reads the flag):
    # the timeout catches that. The bound is one beat (0.5 s) plus the beat's read and the
    # cancel's writes, which a loaded machine can stretch to seconds.
    await asyncio.wait_for(run, timeout=15)
    elapsed = asyncio.get_running_loop().time() - start
    assert elapsed <= runtime.settings.heartbeat_seconds + 5
    done = await Video.get(id=video.id)
    assert done.status == S.CANCELED
    assert provider.cancels == [done.prediction_id]
    assert (await attempts(video.id))[0].outcome == AttemptOutcome.CANCELED


async def test_cancel_processing_through_service_wakes_job(runtime, user, provider) -> None:
    runtime.settings.heartbeat_seconds = 30  # only the bus nudge can be this fast
    video = await make_video(user, "hang")
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    await wait_until(lambda: prediction_stored(video.id))
    flagged = await control.request_cancel(video.id, actor="user:1", bus=runtime.bus)
    assert flagged.status == S.PROCESSING and flagged.cancel_requested
    await asyncio.wait_for(run, timeout=10)  # far below the 30 s heartbeat
    assert (await Video.get(id=video.id)).status == S.CANCELED
    assert len(provider.cancels) == 1


async def test_rescued_job_with_prediction_polls_instead_of_submitting(
    runtime, user, provider
) -> None:
    video = await make_video(user, "sleep:0.3")
    [job] = await queue.claim(worker_id="dead", limit=1, lease_seconds=30)
    submission = await provider.submit(
        GenerationRequest(
            prompt=video.prompt,
            resolution="64x64",
            output_format="mp4",
            duration_seconds=1,
            reference=f"video-{video.id}",
        )
    )
    # The dead worker had stored its prediction, then its lease expired.
    await Video.filter(id=video.id).update(
        prediction_id=submission.prediction_id, lease_expires_at=utcnow() - dt.timedelta(seconds=1)
    )
    await Worker(runtime, concurrency=1).run_until_idle()  # sweeps, then resumes
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED and done.rescue_count == 1 and done.retry_count == 1
    assert provider.submissions[f"video-{video.id}"] == 1  # never paid twice
    assert provider.polls[submission.prediction_id] >= 1
    outcomes = [(a.attempt, a.outcome) for a in await attempts(video.id)]
    assert outcomes == [(1, AttemptOutcome.RESCUED), (2, AttemptOutcome.SUCCEEDED)]
    assert job.attempt == 1


async def test_lost_prediction_is_submitted_again(runtime, user, provider) -> None:
    video = await make_video(user, "lose-once")
    await Worker(runtime, concurrency=1).run_until_idle()
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED
    assert provider.submissions[f"video-{video.id}"] == 2


async def test_manual_retry_gives_a_fresh_budget(runtime, user) -> None:
    video = await make_video(user, "fail")
    await Worker(runtime, concurrency=1).run_until_idle()
    await Video.filter(id=video.id).update(retry_count=3, rescue_count=2)
    queued = await make_video(user)
    with pytest.raises(IllegalTransition):
        await control.retry(queued.id, actor="user:1", bus=runtime.bus)
    again = await control.retry(video.id, actor="user:1", bus=runtime.bus)
    assert again.status == S.QUEUED
    assert (again.retry_count, again.rescue_count, again.error_message, again.prediction_id) == (
        0,
        0,
        None,
        None,
    )


async def test_test_provider_log_comes_from_settings(tmp_path, monkeypatch) -> None:
    from vidgen.providers.registry import build_providers, close_providers
    from vidgen.settings import Settings

    monkeypatch.setenv("VIDGEN_TEST_PROVIDER_LOG", str(tmp_path / "from-env.log"))
    from_env = Settings(_env_file=None, enable_test_provider=True, data_dir=tmp_path)
    assert from_env.test_provider_log == tmp_path / "from-env.log"
    explicit = from_env.model_copy(update={"test_provider_log": tmp_path / "given.log"})
    providers = build_providers(explicit)
    try:
        assert providers["test"].submissions_log == tmp_path / "given.log"
    finally:
        await close_providers(providers)
