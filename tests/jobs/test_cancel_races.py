"""Cancels that land while a job's attempt is ending: they take effect in that same write."""

from __future__ import annotations

import datetime as dt

from tests.jobs.conftest import make_video, utcnow
from vidgen.jobs import lifecycle, queue
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent

S = VideoStatus


async def test_a_retry_whose_cancel_was_requested_meanwhile_ends_canceled(db, user) -> None:
    # cancelVideo on a processing job only sets the flag; if the attempt then fails with a
    # retryable error before the worker sees the flag, the job must not go back to the queue
    # for the whole backoff (a provider's Retry-After can be long) and cancel only later.
    video = await make_video(user, prompt="fail-retryable retry-after:30")
    (claimed,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=30)
    await Video.filter(id=video.id).update(cancel_requested=True)
    change = await lifecycle.finish(
        video.id,
        claimed.attempt,
        S.QUEUED,
        AttemptOutcome.FAILED,
        actor="w1",
        message="retrying in 30 s",
        fields={"scheduled_at": utcnow() + dt.timedelta(seconds=30)},
        error_code="unavailable",
        retryable=True,
    )
    assert change.to_status is S.CANCELED
    assert change.event.status == S.CANCELED.value
    row = await Video.get(id=video.id)
    assert row.status is S.CANCELED
    last = await VideoStatusEvent.filter(video_id=video.id).order_by("-id").first()
    assert last is not None
    assert (last.from_status, last.to_status) == ("processing", "canceled")
    assert last.message == lifecycle.CANCELED_INSTEAD
    assert last.version == row.version
    attempt = await VideoAttempt.get(video_id=video.id, attempt=claimed.attempt)
    assert attempt.outcome is AttemptOutcome.FAILED and attempt.finished_at is not None
    # Nothing is left for a worker to claim.
    assert await queue.claim(worker_id="w2", limit=5, lease_seconds=30) == []


async def test_a_retry_without_a_cancel_still_goes_back_to_the_queue(db, user) -> None:
    video = await make_video(user, prompt="fail-retryable")
    (claimed,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=30)
    change = await lifecycle.finish(
        video.id,
        claimed.attempt,
        S.QUEUED,
        AttemptOutcome.FAILED,
        actor="w1",
        message="retrying now",
        fields={"scheduled_at": None},
        retryable=True,
    )
    assert change.to_status is S.QUEUED
    last = await VideoStatusEvent.filter(video_id=video.id).order_by("-id").first()
    assert last is not None and (last.to_status, last.message) == ("queued", "retrying now")
    (again,) = await queue.claim(worker_id="w2", limit=1, lease_seconds=30)
    assert again.video_id == video.id and again.attempt == claimed.attempt + 1
