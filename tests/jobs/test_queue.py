"""The queue: claim order, due times, the claim's writes, fencing, limits, concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.jobs.conftest import make_video, utcnow
from vidgen.jobs import leases, lifecycle, queue
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent

S = VideoStatus


async def claim(n: int = 10, worker: str = "w1", **kw) -> list[lifecycle.Claimed]:
    return await queue.claim(worker_id=worker, limit=n, lease_seconds=30, **kw)


async def test_claim_order_priority_then_due_time_then_age(db, user) -> None:
    past = utcnow() - dt.timedelta(minutes=5)
    older_past = utcnow() - dt.timedelta(minutes=10)
    low = await make_video(user, priority=-1)
    plain_a = await make_video(user)
    plain_b = await make_video(user)
    scheduled_past = await make_video(user, scheduled_at=past)
    scheduled_older = await make_video(user, scheduled_at=older_past)
    high = await make_video(user, priority=5)
    claimed = [c.video_id for c in await claim(10)]
    # Priority first; then due time (scheduled_at, else creation); then id.
    assert claimed[0] == high.id
    assert claimed[1:5] == [scheduled_older.id, scheduled_past.id, plain_a.id, plain_b.id]
    assert claimed[5] == low.id


async def test_claim_limit_and_future_schedule_not_claimed(db, user) -> None:
    future = await make_video(user, scheduled_at=utcnow() + dt.timedelta(hours=1))
    a, b = await make_video(user), await make_video(user)
    assert [c.video_id for c in await claim(1)] == [a.id]
    assert [c.video_id for c in await claim(5)] == [b.id]
    assert await claim(5) == []
    assert (await Video.get(id=future.id)).status == S.QUEUED
    assert await queue.next_due_at() is not None


async def test_next_due_at_reports_a_job_that_became_due_during_the_claim(db, user) -> None:
    # A retry re-queued with a tiny backoff while a worker's claim ran: already due when
    # the worker asks what comes next. Asking "after now" misses it (the worker would sleep
    # until its safety poll); asking "after the claim started" returns it, in the past.
    claim_started = utcnow()
    retry = await make_video(user, scheduled_at=claim_started + dt.timedelta(milliseconds=5))
    await asyncio.sleep(0.02)
    assert await queue.next_due_at() is None
    assert await queue.next_due_at(after=claim_started) == retry.scheduled_at
    # A job already due before the claim started (e.g. held by a provider limit) is not
    # returned, so a worker cannot spin on it.
    assert await queue.next_due_at(after=utcnow()) is None


async def test_deleted_and_foreign_provider_not_claimed(db, user) -> None:
    await make_video(user, deleted_at=utcnow())
    await make_video(user, provider="runway")
    assert await claim(5, providers=["test"]) == []
    assert len(await claim(5, providers=["runway"])) == 1


async def test_claim_writes_processing_lease_attempt_history_and_attempt_row(db, user) -> None:
    video = await make_video(user)
    before = utcnow()
    [job] = await claim(1, worker="host:1:a")
    fresh = await Video.get(id=video.id)
    assert fresh.status == S.PROCESSING
    assert fresh.processed_by == "host:1:a"
    assert fresh.attempt == job.attempt == 1
    assert fresh.version == video.version + 1 == job.event.version
    assert fresh.lease_expires_at is not None
    assert fresh.lease_expires_at >= before + dt.timedelta(seconds=29)
    history = await VideoStatusEvent.filter(video_id=video.id).order_by("id")
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, "queued"),
        ("queued", "processing"),
    ]
    assert history[-1].version == fresh.version and history[-1].actor == "host:1:a"
    assert job.event.event_id == history[-1].id and job.event.status == "processing"
    [attempt] = await VideoAttempt.filter(video_id=video.id)
    assert (attempt.attempt, attempt.worker, attempt.outcome) == (
        1,
        "host:1:a",
        AttemptOutcome.RUNNING,
    )


async def test_stale_attempt_write_raises_and_changes_nothing(db, user) -> None:
    video = await make_video(user)
    [job] = await claim(1)
    # The job is swept (its lease "expired") and claimed again: attempt 2.
    await Video.filter(id=video.id).update(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
    assert [s.to_status for s in await leases.sweep(max_rescues=3)] == [S.QUEUED]
    [job2] = await claim(1, worker="w2")
    assert job2.attempt == job.attempt + 1
    snapshot = await Video.get(id=video.id)
    with pytest.raises(lifecycle.StaleAttempt):
        await lifecycle.transition(
            video.id, S.COMPLETED, actor="w1", attempt=job.attempt, fields={"codec": "x"}
        )
    with pytest.raises(lifecycle.StaleAttempt):
        await lifecycle.report_progress(video.id, 0.5, attempt=job.attempt, bus=None)
    after = await Video.get(id=video.id)
    assert (after.status, after.version, after.codec, after.progress) == (
        snapshot.status,
        snapshot.version,
        snapshot.codec,
        snapshot.progress,
    )
    lost = await leases.extend_leases({video.id: job.attempt}, lease_seconds=30)
    assert lost.lost == {video.id}


async def test_heartbeat_extends_lease_and_reports_cancel(db, user) -> None:
    video = await make_video(user)
    [job] = await claim(1)
    first = (await Video.get(id=video.id)).lease_expires_at
    await Video.filter(id=video.id).update(cancel_requested=True)
    report = await leases.extend_leases({video.id: job.attempt}, lease_seconds=120)
    assert report.lost == set() and report.cancel_requested == {video.id}
    assert (await Video.get(id=video.id)).lease_expires_at > first


async def test_per_provider_limit_counts_processing_rows(db, user) -> None:
    for _ in range(4):
        await make_video(user)
    other = await make_video(user, provider="local")
    limits = {"test": 2}
    first = await claim(10, worker="a", provider_limits=limits)
    assert sorted(c.provider for c in first) == ["local", "test", "test"]
    assert await claim(10, worker="b", provider_limits=limits) == []
    done = next(c for c in first if c.provider == "test")
    await lifecycle.transition(done.video_id, S.COMPLETED, actor="t", attempt=done.attempt)
    [again] = await claim(10, worker="b", provider_limits=limits)
    assert again.provider == "test" and again.video_id != other.id


@pytest.mark.postgres_only
async def test_concurrent_claims_never_share_a_job(db, user) -> None:
    ids = {(await make_video(user)).id for _ in range(60)}

    async def worker(name: str) -> list[int]:
        mine: list[int] = []
        while True:
            got = await claim(3, worker=name)
            if not got:
                return mine
            mine += [c.video_id for c in got]

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
    claimed = [vid for part in results for vid in part]
    assert len(claimed) == len(set(claimed)) == len(ids)
    assert sum(1 for part in results if part) > 1  # really concurrent
    assert await VideoAttempt.all().count() == 60


@pytest.mark.postgres_only
async def test_concurrent_claims_respect_provider_limit(db, user) -> None:
    for _ in range(20):
        await make_video(user)
    results = await asyncio.gather(
        *(claim(5, worker=f"w{i}", provider_limits={"test": 3}) for i in range(5))
    )
    assert sum(len(r) for r in results) == 3
    assert await Video.filter(status=S.PROCESSING).count() == 3


@pytest.mark.postgres_only
@pytest.mark.parametrize("end", ["sweep", "finish"])
async def test_attempts_never_appear_to_overlap_when_a_workers_clock_lags(
    db, user, monkeypatch, end
) -> None:
    # The lease history (VideoAttempt start/end) proves that no two workers ran a job at
    # once, so one attempt must end before the next starts even when the worker that claims
    # next has a clock a second behind (another host, or a stalled event loop between
    # reading the time and sending the claim): on PostgreSQL both stamps come from the
    # database's clock.
    video = await make_video(user)
    (first,) = await queue.claim(worker_id="w1", limit=1, lease_seconds=0.01)
    if end == "sweep":
        await asyncio.sleep(0.05)
        assert [s.video_id for s in await leases.sweep(max_rescues=5)] == [video.id]
    else:
        await lifecycle.finish(
            video.id,
            first.attempt,
            S.QUEUED,
            AttemptOutcome.FAILED,
            actor="w1",
            message="retry",
            fields={"scheduled_at": None},
            retryable=True,
        )
    real_now = lifecycle.now
    # The claiming worker's clock (the claim's stamps come from its module's now()).
    monkeypatch.setattr(lifecycle.claim, "now", lambda: real_now() - dt.timedelta(seconds=1))
    (second,) = await claim(1, worker="w2")
    assert second.attempt == first.attempt + 1
    rows = await VideoAttempt.filter(video_id=video.id).order_by("attempt")
    assert [r.attempt for r in rows] == [first.attempt, second.attempt]
    assert rows[0].finished_at is not None
    assert rows[0].finished_at <= rows[1].started_at


async def test_a_full_provider_limit_does_not_hold_back_other_providers_due_jobs(db, user) -> None:
    # Many due jobs of a limited provider ahead in the queue (higher priority) used to fill
    # the claim's over-fetch window: the claim took the quota, skipped the rest, and a due job
    # of another provider waited for the next poll although the worker had free slots.
    for _ in range(8):
        await make_video(user, priority=5)
    other = await make_video(user, provider="local")
    got = await claim(4, worker="a", provider_limits={"test": 1})
    assert sorted(c.provider for c in got) == ["local", "test"]
    assert other.id in {c.video_id for c in got}
    assert await claim(4, worker="b", provider_limits={"test": 1}) == []
