"""What a job does while one of its writes is in flight, and when its slot is free again.

- An instant submission's prediction id is written while its output is fetched and stored;
  the files are committed only once that write succeeded, and a job taken over meanwhile
  stores nothing.
- A job whose last write is under way no longer holds its worker's slot: the next job is
  claimed during that write instead of after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator

import pytest
from tortoise.expressions import F

from tests.jobs.conftest import make_video, wait_until
from vidgen.jobs import cpu, lifecycle
from vidgen.jobs.worker import Worker
from vidgen.media import ingest
from vidgen.models import Video, VideoAttempt, VideoStatus, VideoStatusEvent
from vidgen.providers.base import GenerationRequest, PollResult, ProviderError, State
from vidgen.providers.testing import TestProvider

S = VideoStatus


def keys(user_id: int, video_id: int) -> tuple[str, str]:
    return f"u{user_id}/v{video_id}/video.mp4", f"u{user_id}/v{video_id}/thumbnail.jpg"


class GatedStore:
    """``lifecycle.store_prediction`` that waits for :attr:`gate` before writing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.outcomes: list[BaseException | None] = []
        self._real = lifecycle.store_prediction
        monkeypatch.setattr(lifecycle, "store_prediction", self)

    async def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.started.set()
        await self.gate.wait()
        try:
            result = await self._real(*args, **kwargs)
        except BaseException as exc:
            self.outcomes.append(exc)
            raise
        self.outcomes.append(None)
        return result


class StageSpy:
    """Records each run of the media stage (in its worker thread) and what it returned;
    with ``go`` given, the stage waits for it before starting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, go: threading.Event | None = None) -> None:
        self.returned: list[object] = []
        self.raised: list[BaseException] = []
        self.go = go
        real = ingest.Ingest.run
        spy = self

        def run(job: ingest.Ingest, fetch):  # type: ignore[no-untyped-def]
            if spy.go is not None:
                assert spy.go.wait(10)
            try:
                result = real(job, fetch)
            except BaseException as exc:
                spy.raised.append(exc)
                raise
            spy.returned.append(result)
            return result

        monkeypatch.setattr(ingest.Ingest, "run", run)


def block_the_stage(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The media stage stops at its probe until ``go``; ``inside`` says it got there (its
    CPU thread, about to hand the probe to the media processes)."""
    inside, go = threading.Event(), threading.Event()
    real_run = cpu.run_in_process

    def run_in_process(*args, **kwargs):  # type: ignore[no-untyped-def]
        inside.set()
        assert go.wait(10)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(cpu, "run_in_process", run_in_process)
    return inside, go


async def _is_set(event: threading.Event) -> bool:
    return event.is_set()


async def test_instant_submission_polled_within_its_millisecond_is_done(monkeypatch) -> None:
    # The submission's time is kept to the millisecond; rounded up, a poll in the same
    # millisecond saw a negative age and reported an instant job as still running.
    provider = TestProvider()
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0007)
    request = GenerationRequest(
        prompt="succeed", resolution="64x64", output_format="mp4", duration_seconds=1
    )
    submission = await provider.submit(request)
    assert submission.state is State.SUCCEEDED
    assert (await provider.poll(submission.prediction_id)).state is State.SUCCEEDED


async def test_output_is_stored_while_the_prediction_id_write_is_in_flight(
    runtime, user, provider, monkeypatch
) -> None:
    store = GatedStore(monkeypatch)
    stage = StageSpy(monkeypatch)
    video = await make_video(user)
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    try:
        await wait_until(lambda: _true(stage.returned))
        # The stage ran up to its commit and stopped there: the write is not back yet.
        assert stage.returned == [None]
        row = await Video.get(id=video.id)
        assert row.status == S.PROCESSING and row.prediction_id is None
        video_key, thumbnail_key = keys(user.id, video.id)
        assert not runtime.storage.path(video_key).exists()
        store.gate.set()
        assert await run == 1
    finally:
        store.gate.set()
        run.cancel()
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED and done.prediction_id
    assert store.outcomes == [None]
    assert runtime.storage.path(done.video_file).stat().st_size == done.file_size > 0
    assert runtime.storage.path(done.thumbnail_file).stat().st_size > 0
    [attempt] = await VideoAttempt.filter(video_id=video.id)
    assert attempt.prediction_id == done.prediction_id
    assert provider.submissions[f"video-{video.id}"] == 1
    history = await VideoStatusEvent.filter(video_id=video.id).order_by("id")
    assert [h.to_status for h in history] == [S.QUEUED, S.PROCESSING, S.COMPLETED]
    assert list(runtime.storage.path(video_key).parent.glob(".*.part")) == []


async def test_output_ready_before_the_write_is_back_commits_at_once_when_it_is_back(
    runtime, user, provider, monkeypatch
) -> None:
    # The write comes back before the stage is ready: the stage stops before its commit as
    # always (the inspection's thread call), and the commit follows at once on the I/O pool.
    store = GatedStore(monkeypatch)
    go = threading.Event()
    stage = StageSpy(monkeypatch, go=go)
    video = await make_video(user)
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    try:
        await asyncio.wait_for(store.started.wait(), 5)
        store.gate.set()
        await wait_until(lambda: _true(store.outcomes))
        go.set()
        assert await run == 1
    finally:
        store.gate.set()
        go.set()
        run.cancel()
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED
    assert stage.returned == [None]  # ready, committed by the call after it
    assert runtime.storage.path(done.video_file).stat().st_size == done.file_size > 0


@pytest.mark.parametrize("stage_first", [True, False], ids=["stage-held", "write-back-first"])
async def test_job_taken_over_while_its_id_write_was_in_flight_stores_nothing(
    runtime, user, provider, monkeypatch, caplog, stage_first
) -> None:
    store = GatedStore(monkeypatch)
    go = None if stage_first else threading.Event()
    stage = StageSpy(monkeypatch, go=go)
    video = await make_video(user)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    try:
        if stage_first:
            await wait_until(lambda: _true(stage.returned))  # ready, held
        else:
            await asyncio.wait_for(store.started.wait(), 5)
        # Another worker took the job over (its lease was swept and the job claimed again).
        await Video.filter(id=video.id).update(attempt=F("attempt") + 1, processed_by="other")
        with caplog.at_level(logging.WARNING, logger="vidgen.jobs.pipeline"):
            store.gate.set()
            if go is not None:
                await wait_until(lambda: _true(store.outcomes))
                go.set()  # the stage starts only after the write came back stale
            assert await run == 1
    finally:
        store.gate.set()
        if go is not None:
            go.set()
        run.cancel()
    assert len(store.outcomes) == 1 and isinstance(store.outcomes[0], lifecycle.StaleAttempt)
    row = await Video.get(id=video.id)
    assert row.status == S.PROCESSING and row.processed_by == "other"
    assert row.video_file is None and row.prediction_id is None
    video_key, thumbnail_key = keys(user.id, video.id)
    folder = runtime.storage.path(video_key).parent
    assert not runtime.storage.path(video_key).exists()
    assert not runtime.storage.path(thumbnail_key).exists()
    assert not folder.exists() or list(folder.iterdir()) == []  # no part files left
    if stage_first:
        assert stage.returned == [None]
    else:
        assert [type(e) for e in stage.raised] == [ingest.Abandoned]
    messages = [r.getMessage() for r in caplog.records]
    assert "attempt went stale; stopping" in messages
    assert "job crashed" not in messages


class GatedFinish:
    """``lifecycle.finish`` that holds the given video's last write until :attr:`gate`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, video_id: int) -> None:
        self.gate = asyncio.Event()
        self.held = asyncio.Event()
        self.video_id = video_id
        self._real = lifecycle.finish
        monkeypatch.setattr(lifecycle, "finish", self)

    async def __call__(self, video_id: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        if video_id == self.video_id:
            self.held.set()
            await self.gate.wait()
        return await self._real(video_id, *args, **kwargs)


@contextlib.asynccontextmanager
async def burst_held_in_last_write(
    worker: Worker, finish: GatedFinish
) -> AsyncIterator[asyncio.Task[int]]:
    """A burst of ``worker``, once ``finish`` holds its job's last write: the burst's task.
    The write is let go on the way out."""
    run = asyncio.create_task(worker.run_until_idle())
    try:
        await asyncio.wait_for(finish.held.wait(), 5)
        yield run
    finally:
        finish.gate.set()


@pytest.mark.parametrize("mode", ["burst", "service"])
async def test_a_job_in_its_last_write_frees_its_slot(runtime, user, monkeypatch, mode) -> None:
    first = await make_video(user, priority=5)
    second = await make_video(user)
    finish = GatedFinish(monkeypatch, first.id)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle() if mode == "burst" else worker.run())
    try:
        await asyncio.wait_for(finish.held.wait(), 5)
        # The first job's completing write is under way: the second is claimed meanwhile,
        # and runs to its own end while the first one's write is still held.
        await wait_until(lambda: _status_is(second.id, S.COMPLETED))
        assert (await Video.get(id=first.id)).status == S.PROCESSING
        finish.gate.set()
        await wait_until(lambda: _status_is(first.id, S.COMPLETED))
        if mode == "burst":
            assert await run == 2
        else:
            await worker.stop()
    finally:
        finish.gate.set()
        if not run.done():
            await worker.stop()
            run.cancel()


async def test_slots_doing_provider_work_never_exceed_the_concurrency(
    runtime, user, provider, monkeypatch
) -> None:
    # Jobs in their last write are not counted; those between claim and last write are.
    busy = 0
    peak = 0
    real_submit = provider.submit

    async def submit(request):  # type: ignore[no-untyped-def]
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        try:
            await asyncio.sleep(0.01)
            return await real_submit(request)
        finally:
            busy -= 1

    monkeypatch.setattr(provider, "submit", submit)
    for _ in range(12):
        await make_video(user)
    assert await Worker(runtime, concurrency=3).run_until_idle() == 12
    assert peak <= 3
    assert await Video.filter(status=S.COMPLETED).count() == 12


async def _true(items: list[object]) -> bool:
    return bool(items)


async def _status_is(video_id: int, status: VideoStatus) -> bool:
    return (await Video.get(id=video_id)).status == status


class Boom(Exception):
    """A write error that is neither a blip nor a takeover (say, a statement timeout)."""


def part_files(runtime, user_id: int, video_id: int) -> list[str]:
    folder = runtime.storage.path(keys(user_id, video_id)[0]).parent
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_id_write_failing_while_the_poll_fails_still_ends_the_attempt(
    runtime, user, provider, monkeypatch
) -> None:
    polled = asyncio.Event()

    async def store(*args, **kwargs):  # type: ignore[no-untyped-def]
        await polled.wait()
        raise Boom("statement timeout")

    async def poll(prediction_id: str):  # type: ignore[no-untyped-def]
        polled.set()
        raise ProviderError("poll failed", retryable=True, code="server_error", status_code=500)

    monkeypatch.setattr(lifecycle, "store_prediction", store)
    monkeypatch.setattr(provider, "poll", poll)
    video = await make_video(user)
    assert await asyncio.wait_for(Worker(runtime, concurrency=1).run_until_idle(), 10) == 1
    row = await Video.get(id=video.id)
    # As when the write came first: the job fails for good, nothing left to resume.
    assert row.status == S.FAILED and row.prediction_id is None
    assert "Boom" in row.error_message
    [attempt] = await VideoAttempt.filter(video_id=video.id)
    assert attempt.outcome.value == "failed" and attempt.error_code == "internal"


async def test_id_write_failing_stores_no_output(runtime, user, provider, monkeypatch) -> None:
    failed = asyncio.Event()

    async def store(*args, **kwargs):  # type: ignore[no-untyped-def]
        failed.set()
        raise Boom("statement timeout")

    monkeypatch.setattr(lifecycle, "store_prediction", store)
    go = threading.Event()
    stage = StageSpy(monkeypatch, go=go)
    video = await make_video(user)
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    try:
        await asyncio.wait_for(failed.wait(), 5)
        await asyncio.sleep(0.05)
        go.set()  # the stage starts after the write failed
        assert await asyncio.wait_for(run, 10) == 1
    finally:
        go.set()
    row = await Video.get(id=video.id)
    assert row.status == S.FAILED and row.video_file is None
    assert [type(e) for e in stage.raised] == [ingest.Abandoned]
    assert part_files(runtime, user.id, video.id) == []


@pytest.mark.parametrize("when", ["in-stage", "held"])
async def test_job_canceled_with_its_id_write_in_flight_leaves_no_files(
    runtime, user, provider, monkeypatch, when
) -> None:
    store = GatedStore(monkeypatch)
    inside, go = block_the_stage(monkeypatch)
    stage = StageSpy(monkeypatch)
    video = await make_video(user)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    try:
        await wait_until(lambda: _is_set(inside))
        if when == "held":
            go.set()
            await wait_until(lambda: _true(stage.returned))
        # The lease is lost (heartbeat) or the shutdown's grace ran out.
        worker._jobs[video.id].task.cancel()
        await asyncio.sleep(0.05)
        go.set()
        await wait_until(lambda: _true(stage.returned + stage.raised))
        store.gate.set()
        await asyncio.wait_for(run, 10)
        await wait_until(lambda: _true([] if part_files(runtime, user.id, video.id) else [1]))
    finally:
        go.set()
        store.gate.set()
    assert not runtime.storage.path(keys(user.id, video.id)[0]).exists()


async def test_job_canceled_while_its_held_commit_waits_for_a_thread_leaves_no_files(
    runtime, user, provider, monkeypatch
) -> None:
    loop = asyncio.get_running_loop()
    store = GatedStore(monkeypatch)
    stage = StageSpy(monkeypatch)
    video = await make_video(user)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    pool = concurrent.futures.ThreadPoolExecutor(1)
    blocker = threading.Event()
    try:
        await wait_until(lambda: _true(stage.returned))  # held
        # The stage's commit runs on the I/O pool (vidgen.jobs.cpu): make it this one-thread
        # pool.
        monkeypatch.setattr(cpu, "io_executor", lambda: pool)
        busy = loop.run_in_executor(pool, blocker.wait, 10)  # every thread busy
        store.gate.set()
        await asyncio.sleep(0.1)  # the write is back: the commit waits for a thread
        worker._jobs[video.id].task.cancel()
        await asyncio.sleep(0.05)
        blocker.set()
        await busy
        await asyncio.wait_for(run, 10)
        await wait_until(lambda: _true([] if part_files(runtime, user.id, video.id) else [1]))
    finally:
        blocker.set()
        store.gate.set()
        pool.shutdown(wait=False)
    assert not runtime.storage.path(keys(user.id, video.id)[0]).exists()


async def test_shutdown_releases_a_job_only_after_its_id_write_landed(
    runtime, user, provider, monkeypatch
) -> None:
    store = GatedStore(monkeypatch)
    inside, go = block_the_stage(monkeypatch)
    video = await make_video(user)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: _is_set(inside))
        worker.request_stop(grace_seconds=0)  # no grace: the job is canceled and released
        await asyncio.sleep(0.1)
        store.gate.set()  # the id's write lands only now
        go.set()
        await asyncio.wait_for(run, 10)
    finally:
        go.set()
        store.gate.set()
    row = await Video.get(id=video.id)
    assert row.status == S.QUEUED and row.prediction_id  # the next attempt polls it
    assert store.outcomes == [None]


class DownStore:
    """``lifecycle.store_prediction`` while the database is unreachable (retried forever)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tries = 0
        monkeypatch.setattr(lifecycle, "store_prediction", self)

    async def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.tries += 1
        raise ConnectionRefusedError("database down")


@pytest.mark.parametrize("how", ["wait-runs-out", "second-stop"])
async def test_shutdown_does_not_wait_forever_for_an_id_write_while_the_database_is_down(
    runtime, user, provider, monkeypatch, how
) -> None:
    from vidgen.jobs import worker as worker_module

    down = DownStore(monkeypatch)
    inside, go = block_the_stage(monkeypatch)
    if how == "wait-runs-out":
        monkeypatch.setattr(worker_module, "ID_WRITE_WAIT_SECONDS", 0.3)
    video = await make_video(user)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: _is_set(inside))
        worker.request_stop(grace_seconds=0)
        if how == "second-stop":
            await asyncio.sleep(0.1)
            worker.request_stop()  # a second signal: release now
        await asyncio.wait_for(asyncio.shield(run), 4)
    finally:
        go.set()
        if not run.done():
            run.cancel()
    assert down.tries >= 1
    # Not released (the id may still land): its lease expires and a sweeper hands it on.
    row = await Video.get(id=video.id)
    assert row.status == S.PROCESSING and row.prediction_id is None


async def test_canceling_a_stopping_worker_does_not_cancel_an_id_write(
    runtime, user, provider, monkeypatch
) -> None:
    store = GatedStore(monkeypatch)
    inside, go = block_the_stage(monkeypatch)
    video = await make_video(user)
    worker = Worker(runtime, concurrency=1)
    worker.start()
    try:
        await wait_until(lambda: _is_set(inside))
        with contextlib.suppress(TimeoutError):  # e.g. a lifespan's deadline cancels it
            await asyncio.wait_for(worker.stop(grace_seconds=0), 0.3)
        store.gate.set()
        await wait_until(lambda: _true(store.outcomes))
    finally:
        go.set()
        store.gate.set()
    assert store.outcomes == [None]
    assert (await Video.get(id=video.id)).prediction_id  # kept: a rescue will poll it


async def test_a_video_claimed_again_while_its_old_task_is_in_its_last_write_is_adopted(
    runtime, user, monkeypatch
) -> None:
    video = await make_video(user)
    finish = GatedFinish(monkeypatch, video.id)
    worker = Worker(runtime, concurrency=1)
    async with burst_held_in_last_write(worker, finish) as run:
        old = worker._jobs[video.id].task
        # Meanwhile its lease was swept and this worker claimed it again, the claim's reply
        # lost on the way back: the row is this worker's attempt 2.
        await Video.filter(id=video.id).update(attempt=F("attempt") + 1)
        finish.video_id = -1  # attempt 2's own last write is not held
        await worker._adopt_orphans()
        assert worker._jobs[video.id].ctx.attempt == 2 and worker._jobs[video.id].task is not old
        finish.gate.set()  # attempt 1's write: stale now
        assert await asyncio.wait_for(run, 10) == 1
    assert old.done()
    done = await Video.get(id=video.id)
    assert done.status == S.COMPLETED and done.attempt == 2


async def test_the_heartbeat_keeps_the_lease_of_a_job_in_its_last_write(
    runtime, user, monkeypatch
) -> None:
    video = await make_video(user)
    finish = GatedFinish(monkeypatch, video.id)
    worker = Worker(runtime, concurrency=1)
    async with burst_held_in_last_write(worker, finish) as run:
        first = (await Video.get(id=video.id)).lease_expires_at

        async def extended() -> bool:
            later = await Video.get(id=video.id)
            assert later.status == S.PROCESSING
            return later.lease_expires_at > first

        # A beat comes every 0.5 s; a loaded machine may delay one, so wait for it.
        await wait_until(extended, seconds=15)
        finish.gate.set()
        assert await asyncio.wait_for(run, 10) == 1
    assert (await Video.get(id=video.id)).status == S.COMPLETED


async def test_a_burst_rides_out_a_failing_claim_while_a_job_is_in_its_last_write(
    runtime, user, monkeypatch
) -> None:
    from vidgen.jobs import queue

    first = await make_video(user, priority=5)
    await make_video(user)
    finish = GatedFinish(monkeypatch, first.id)
    real_claim = queue.claim
    failures = 0

    async def claim(**kwargs):  # type: ignore[no-untyped-def]
        nonlocal failures
        if finish.held.is_set() and not finish.gate.is_set():  # down while it is held
            failures += 1
            raise ConnectionRefusedError("database down")
        return await real_claim(**kwargs)

    monkeypatch.setattr(queue, "claim", claim)
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    try:
        await asyncio.wait_for(finish.held.wait(), 5)
        await wait_until(lambda: _true([1] * failures))  # the claim during that write
        finish.gate.set()
        assert await asyncio.wait_for(run, 20) == 2
    finally:
        finish.gate.set()
    assert await Video.filter(status=S.COMPLETED).count() == 2


async def test_a_second_stop_does_not_wait_for_a_hung_last_write(runtime, user) -> None:
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)
    # A batch of last writes hung on a connection that neither answers nor fails.
    worker.writer._flusher = asyncio.create_task(asyncio.Event().wait())
    try:
        worker.request_stop()
        await asyncio.sleep(0.1)
        worker.request_stop()  # the second signal
        await asyncio.wait_for(asyncio.shield(run), 3)
    finally:
        worker.writer._flusher.cancel()
        if not run.done():
            run.cancel()


def silent_polls(provider, monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The provider answers every poll 'running', with no progress and no message (so the
    job writes nothing while it waits); returns the polled ids as they come."""
    polled: list[str] = []

    async def poll(prediction_id: str) -> PollResult:
        polled.append(prediction_id)
        return PollResult(state=State.RUNNING)

    monkeypatch.setattr(provider, "poll", poll)
    return polled


async def test_a_task_replaced_by_a_newer_attempt_of_its_video_is_stopped(
    runtime, user, provider, monkeypatch
) -> None:
    video = await make_video(user, "sleep:60")
    polled = silent_polls(provider, monkeypatch)
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    try:
        await wait_until(lambda: _true(polled))
        old = worker._jobs[video.id].task
        # Its lease was swept while the database was out of reach (the job kept polling),
        # and this worker claimed the video again, the claim's reply lost.
        await Video.filter(id=video.id).update(attempt=F("attempt") + 1)
        await worker._adopt_orphans()
        await asyncio.wait({old}, timeout=15)  # stopped, not polling beside the new attempt
        assert old.cancelled() and worker._jobs[video.id].ctx.attempt == 2
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    # A burst that is canceled hands its jobs back.
    row = await Video.get(id=video.id)
    assert row.status == S.QUEUED and row.attempt == 2 and row.prediction_id


async def test_a_burst_adopts_a_claim_whose_reply_was_lost(runtime, user, monkeypatch) -> None:
    from vidgen.jobs import queue

    first = await make_video(user, priority=5)
    second = await make_video(user)
    finish = GatedFinish(monkeypatch, first.id)
    real_claim = queue.claim
    lost: list[int] = []

    async def claim(**kwargs):  # type: ignore[no-untyped-def]
        claimed = await real_claim(**kwargs)
        if finish.held.is_set() and not lost and claimed:
            lost.extend(c.video_id for c in claimed)
            raise ConnectionResetError("the reply was lost")  # committed all the same
        return claimed

    monkeypatch.setattr(queue, "claim", claim)
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    try:
        await asyncio.wait_for(finish.held.wait(), 5)
        await wait_until(lambda: _true(lost))
        finish.gate.set()
        await asyncio.wait_for(run, 20)
    finally:
        finish.gate.set()
    assert lost == [second.id]
    assert {v.status for v in await Video.all()} == {S.COMPLETED}


async def test_a_stop_request_ends_a_burst_once_its_jobs_end(runtime, user) -> None:
    await make_video(user, "sleep:0.3")
    worker = Worker(runtime, concurrency=1)
    run = asyncio.create_task(worker.run_until_idle())
    await wait_until(lambda: _status_is_any(S.PROCESSING))
    worker.request_stop()
    assert await asyncio.wait_for(run, 5) == 1
    assert (await Video.first()).status == S.COMPLETED


async def _status_is_any(status: VideoStatus) -> bool:
    return await Video.filter(status=status).exists()
