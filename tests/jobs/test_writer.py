"""Group commit: concurrent jobs' last writes share round trips, each stays fenced alone."""

from __future__ import annotations

import asyncio

import pytest

from tests.jobs.conftest import make_video
from vidgen.jobs import lifecycle, queue
from vidgen.jobs.writer import GroupWriter
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent

S = VideoStatus


async def _finish(writer: GroupWriter, job: lifecycle.Claimed, **fields) -> lifecycle.Change:
    return await lifecycle.finish(
        job.video_id,
        job.attempt,
        S.COMPLETED,
        AttemptOutcome.SUCCEEDED,
        actor="worker:w",
        message="completed",
        fields={"codec": "h264", **fields},
        runner=writer.run,
    )


async def test_batched_finishes_are_fenced_one_by_one(db, user) -> None:
    for _ in range(6):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=6, lease_seconds=30)
    stale = jobs[0]
    await Video.filter(id=stale.video_id).update(attempt=stale.attempt + 1)  # taken over
    writer = GroupWriter()
    results = await asyncio.gather(*(_finish(writer, j) for j in jobs), return_exceptions=True)
    assert isinstance(results[0], lifecycle.StaleAttempt)
    changes = results[1:]
    assert all(isinstance(c, lifecycle.Change) and c.to_status is S.COMPLETED for c in changes)
    for job, change in zip(jobs[1:], changes, strict=True):
        video = await Video.get(id=job.video_id)
        assert (video.status, video.version, video.codec) == (S.COMPLETED, change.version, "h264")
        event = await VideoStatusEvent.get(id=change.event.event_id)
        assert (event.video_id, event.to_status) == (job.video_id, "completed")
        attempt = await VideoAttempt.get(video_id=job.video_id, attempt=job.attempt)
        assert attempt.outcome == AttemptOutcome.SUCCEEDED
    untouched = await Video.get(id=stale.video_id)
    assert untouched.status == S.PROCESSING and untouched.codec is None


@pytest.mark.postgres_only
async def test_concurrent_writes_share_round_trips(db, user) -> None:
    for _ in range(8):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=8, lease_seconds=30)
    writer = GroupWriter()
    await asyncio.gather(*(_finish(writer, j) for j in jobs))
    assert writer.statements == 8
    assert writer.batches <= 2  # the first goes alone, the rest wait for it and go together
    assert await Video.filter(status=S.COMPLETED).count() == 8


@pytest.mark.postgres_only
async def test_a_bad_row_fails_alone(db, user) -> None:
    for _ in range(4):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=4, lease_seconds=30)
    writer = GroupWriter()
    bad = jobs[-1]
    results = await asyncio.gather(
        *(_finish(writer, j, codec="x" * 500 if j is bad else "h264") for j in jobs),
        return_exceptions=True,
    )
    assert isinstance(results[-1], Exception)  # varchar(32) overflow: a real error
    assert all(isinstance(r, lifecycle.Change) for r in results[:-1])
    assert await Video.filter(status=S.COMPLETED).count() == 3
    assert (await Video.get(id=bad.video_id)).status == S.PROCESSING


@pytest.mark.postgres_only
async def test_back_to_back_batches_keep_one_connection(db, user, monkeypatch) -> None:
    for _ in range(6):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=6, lease_seconds=30)
    conn = Video._meta.db
    acquired = 0
    original = conn.acquire_connection

    def counting():  # type: ignore[no-untyped-def]
        nonlocal acquired
        acquired += 1
        return original()

    monkeypatch.setattr(conn, "acquire_connection", counting)
    writer = GroupWriter()
    first = asyncio.create_task(_finish(writer, jobs[0]))
    for _ in range(100):  # until the first batch is in flight
        if writer._flusher is not None and not writer._pending:
            break
        await asyncio.sleep(0)
    await asyncio.gather(first, *(_finish(writer, j) for j in jobs[1:]))
    assert (writer.batches, writer.statements) == (2, 6)
    assert acquired == 1  # the second batch went on the same connection (no pool reset)
    assert await Video.filter(status=S.COMPLETED).count() == 6


@pytest.mark.postgres_only
async def test_no_connection_fails_every_waiter_instead_of_hanging(db, user, monkeypatch) -> None:
    for _ in range(3):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=3, lease_seconds=30)
    conn = Video._meta.db

    def refused():  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError(111, "Connect call failed")  # the database is down

    monkeypatch.setattr(conn, "acquire_connection", refused)
    writer = GroupWriter()
    results = await asyncio.wait_for(
        asyncio.gather(*(_finish(writer, j) for j in jobs), return_exceptions=True), 5
    )
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    monkeypatch.undo()  # the database is back: each waiter's retry goes through
    await asyncio.gather(*(_finish(writer, j) for j in jobs))
    assert await Video.filter(status=S.COMPLETED).count() == 3


@pytest.mark.postgres_only
async def test_prediction_ids_of_many_jobs_go_as_one_combined_statement_fenced(db, user) -> None:
    for _ in range(20):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=20, lease_seconds=30)
    stale = jobs[0]
    await Video.filter(id=stale.video_id).update(attempt=stale.attempt + 1)  # taken over
    writer = GroupWriter()
    results = await asyncio.gather(
        *(
            lifecycle.store_prediction(j.video_id, j.attempt, f"p-{j.video_id}", runner=writer.run)
            for j in jobs
        ),
        return_exceptions=True,
    )
    assert isinstance(results[0], lifecycle.StaleAttempt)
    # Twenty jobs' writes, at most two statements: the ones that waited together are ONE
    # statement over arrays.
    assert writer.combined >= 1 and writer.statements <= 2
    for job, event in zip(jobs[1:], results[1:], strict=True):
        video = await Video.get(id=job.video_id)
        assert (video.prediction_id, video.version) == (f"p-{job.video_id}", event.version)
        attempt = await VideoAttempt.get(video_id=job.video_id, attempt=job.attempt)
        assert attempt.prediction_id == f"p-{job.video_id}"
    untouched = await Video.get(id=stale.video_id)
    assert untouched.prediction_id is None
    assert (await VideoAttempt.get(video_id=stale.video_id)).prediction_id is None


@pytest.mark.postgres_only
async def test_ids_of_predictions_still_running_combine_from_two_up(db, user) -> None:
    # A few jobs submitted together (one claim's worth): their ids go as a pipelined batch
    # when the job waits on the write, as one statement when the prediction is still running.
    for _ in range(7):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=7, lease_seconds=30)
    stale = jobs[0]
    await Video.filter(id=stale.video_id).update(attempt=stale.attempt + 1)  # taken over
    for running, statements in ((False, 7), (True, 1)):
        writer = GroupWriter()
        results = await asyncio.gather(
            *(
                lifecycle.store_prediction(
                    j.video_id,
                    j.attempt,
                    f"p{running}-{j.video_id}",
                    runner=writer.run,
                    running=running,
                )
                for j in jobs
            ),
            return_exceptions=True,
        )
        assert isinstance(results[0], lifecycle.StaleAttempt)
        # The seven writes that waited together: seven statements pipelined, or one.
        assert writer.batches == 1 and writer.statements == statements
        for job in jobs[1:]:
            video = await Video.get(id=job.video_id)
            assert video.prediction_id == f"p{running}-{job.video_id}"
            attempt = await VideoAttempt.get(video_id=job.video_id, attempt=job.attempt)
            assert attempt.prediction_id == f"p{running}-{job.video_id}"
    assert (await Video.get(id=stale.video_id)).prediction_id is None
