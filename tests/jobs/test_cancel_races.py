"""Cancels that land while a job's attempt is ending: they take effect in that same write."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import pytest

from tests.jobs.conftest import make_video, utcnow
from vidgen import errors
from vidgen.jobs import control, leases, lifecycle, queue
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent
from vidgen.services import videos
from vidgen.services.videos import changes

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


async def _canceled_video(user) -> Video:
    video = await make_video(user, prompt="hang")
    await lifecycle.transition(video.id, S.CANCELED, actor="t", expect=[S.QUEUED])
    return video


async def test_retry_of_a_video_deleted_meanwhile_is_a_conflict(runtime, user) -> None:
    # deleteVideo's mark committed between retryVideo's own check and its transition: the
    # transition re-checks on the locked row and refuses, instead of queuing a deleted video
    # (which no worker claims, so it waited, invisible, until someone restored it).
    video = await _canceled_video(user)
    await Video.filter(id=video.id).update(deleted_at=utcnow())
    with pytest.raises(errors.Conflict):
        await control.retry(video.id, actor="t", bus=runtime.bus)
    row = await Video.get(id=video.id)
    assert row.status is S.CANCELED and row.deleted_at is not None


async def test_retry_and_delete_at_once_never_leave_a_deleted_video_queued(runtime, user) -> None:
    viewer = user
    for _ in range(12):
        video = await _canceled_video(user)
        results = await asyncio.gather(
            videos.retry_video(runtime=runtime, viewer=viewer, video_id=video.id),
            videos.delete_video(runtime=runtime, viewer=viewer, video_id=video.id),
            return_exceptions=True,
        )
        for result in results:
            assert not isinstance(result, Exception) or isinstance(result, errors.Conflict), result
        row = await Video.get(id=video.id)
        assert row.deleted_at is not None
        assert row.status in (S.CANCELED, S.FAILED), (row.status, results)


async def test_a_job_released_between_the_read_and_the_cancel_is_canceled_upstream(
    runtime, user, provider
) -> None:
    # cancelVideo read the video while it was processing; before its cancel landed, the
    # worker shut down and released it to the queue with its live prediction. The cancel then
    # ended it at once (queued → canceled), so no worker will stop that prediction: the
    # service must, although its earlier read said "processing".
    video = await make_video(user, prompt="hang")
    (claimed,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=30)
    await lifecycle.store_prediction(video.id, claimed.attempt, "pred-released")
    seen = await Video.get(id=video.id)
    assert seen.status is S.PROCESSING
    assert await leases.release(video.id, claimed.attempt, worker_id="w1") is S.QUEUED
    result = await changes._cancel_job(runtime=runtime, video=seen, actor="user:1")
    assert result.status is S.CANCELED
    assert provider.cancels == ["pred-released"]


@pytest.mark.parametrize("ending", ["sweep", "release"])
async def test_a_delete_between_the_ending_read_and_its_write_is_not_left_queued(
    runtime, user, provider, monkeypatch, ending
) -> None:
    # The sweeper and a worker shutting down read the cancel flag, then write: a delete (or
    # a cancel) landing between the two must end the job canceled, not send it back to the
    # queue where no claim sees a deleted video again and its prediction runs on.
    video = await make_video(user, prompt="hang")
    (claimed,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=30)
    await lifecycle.store_prediction(video.id, claimed.attempt, "test1-x")
    if ending == "sweep":
        await Video.filter(id=video.id).update(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
    # The hook: the transaction of the ending's transition (after its read of the flag).
    real, deleted = lifecycle.transitions.in_transaction, []

    @contextlib.asynccontextmanager
    async def delete_first(*args, **kwargs):
        if not deleted:  # the delete commits after the flag was read, before this write
            deleted.append(video.id)
            await videos.delete_video(runtime=runtime, viewer=user, video_id=video.id)
        async with real(*args, **kwargs) as connection:
            yield connection

    monkeypatch.setattr(lifecycle.transitions, "in_transaction", delete_first)
    if ending == "sweep":
        assert await leases.sweep(max_rescues=3) == []  # stale: the next sweep decides
        [swept] = await leases.sweep(max_rescues=3)
        assert (swept.to_status, swept.prediction_id) == (S.CANCELED, "test1-x")
    else:
        assert await leases.release(video.id, claimed.attempt, worker_id="w1") is S.CANCELED
    row = await Video.get(id=video.id)
    assert row.deleted_at is not None and row.status is S.CANCELED
    assert await queue.claim(worker_id="w2", limit=5, lease_seconds=30) == []


async def test_a_release_of_a_job_taken_over_writes_nothing(db, user) -> None:
    video = await make_video(user, prompt="hang")
    (claimed,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=30)
    await Video.filter(id=video.id).update(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
    await leases.sweep(max_rescues=3)
    (again,) = await queue.claim(worker_id="w2", limit=1, lease_seconds=30)
    assert await leases.release(video.id, claimed.attempt, worker_id="w1") is None
    row = await Video.get(id=video.id)
    assert (row.status, row.attempt, row.processed_by) == (S.PROCESSING, again.attempt, "w2")


@pytest.mark.parametrize("prompt", ["succeed", "hang"])
async def test_a_delete_retried_after_failing_midway_cancels_the_job(
    runtime, user, provider, monkeypatch, prompt
) -> None:
    # The first delete marks the video, then fails before it cancels the job (a database
    # blip, a killed process): the client's retry must still stop the job, not return early
    # because the mark is there and leave a deleted video queued (or its prediction running).
    video = await make_video(user, prompt=prompt)
    if prompt == "hang":
        (claimed,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=30)
        await lifecycle.store_prediction(video.id, claimed.attempt, "test1-x")
    real, failures = control.request_cancel, []

    async def fails_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise ConnectionResetError("the database went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(control, "request_cancel", fails_once)
    with pytest.raises(ConnectionResetError):
        await videos.delete_video(runtime=runtime, viewer=user, video_id=video.id)
    row = await Video.get(id=video.id)
    assert row.deleted_at is not None and not row.cancel_requested
    again = await videos.delete_video(runtime=runtime, viewer=user, video_id=video.id)
    assert again.deleted_at == row.deleted_at  # the first mark stays
    if prompt == "succeed":
        assert again.status is S.CANCELED
    else:  # processing: flagged for its worker, which cancels upstream
        assert again.status is S.PROCESSING and again.cancel_requested
    # A third delete changes nothing more.
    third = await videos.delete_video(runtime=runtime, viewer=user, video_id=video.id)
    assert (third.status, third.version) == (again.status, again.version)
