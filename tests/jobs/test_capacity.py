"""Engine capacity (docs/jobs.md, "Capacity"): remote jobs in flight by the hundreds with the
embedded defaults, fair claims between owners, one heartbeat statement per worker, batched
progress. On SQLite with the in-process bus and on PostgreSQL with Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tortoise.functions import Count

from vidgen.events.bus import create_bus
from vidgen.events.memory import MemoryBus
from vidgen.jobs import leases, lifecycle, queue
from vidgen.jobs.progress import ProgressBatcher
from vidgen.jobs.worker import Worker, start_embedded
from vidgen.models import User, Video, VideoStatus
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.services import videos
from vidgen.settings import Settings

from ..conftest import REDIS_URL

# The engine's knobs as a fresh install has them (the test settings shorten leases and polls).
ENGINE_DEFAULTS = (
    "worker_max_in_flight",
    "cpu_workers",
    "render_workers",
    "lease_seconds",
    "heartbeat_seconds",
    "worker_poll_seconds",
    "provider_concurrency",
)


def embedded_defaults(settings: Settings, **changes: object) -> Settings:
    defaults = Settings(_env_file=None)
    values = {name: getattr(defaults, name) for name in ENGINE_DEFAULTS}
    return settings.model_copy(update={**values, **changes})


@pytest_asyncio.fixture
async def live_runtime(db: Settings, backend: str) -> AsyncIterator[Runtime]:
    """The embedded defaults; SQLite with the in-process bus, PostgreSQL with Redis."""
    settings = embedded_defaults(db)
    bus = (
        MemoryBus()
        if backend == "sqlite"
        else create_bus(REDIS_URL, namespace=f"capacity-{uuid.uuid4().hex[:8]}")
    )
    rt = Runtime.create(settings, bus=bus, providers={"test": TestProvider()})
    await rt.open()
    try:
        yield rt
    finally:
        await rt.close()


async def _enqueue(runtime: Runtime, owner: User, prompt: str) -> int:
    video = await videos.generate_video(
        runtime=runtime, viewer=owner, prompt=prompt, provider="test", resolution="64x64"
    )
    return video.id


@pytest.mark.timeout(150)
async def test_200_remote_jobs_of_10s_finish_within_45s_of_the_last_enqueue(
    live_runtime: Runtime,
) -> None:
    owner = await User.create(email="many@example.com", password_hash="x")
    worker = await start_embedded(live_runtime)
    assert worker.concurrency == Settings(_env_file=None).worker_max_in_flight
    peak = 0
    try:
        ids = [await _enqueue(live_runtime, owner, f"sleep:10 job {i}") for i in range(200)]
        last_enqueue = time.monotonic()
        while True:
            counts = {
                row["status"]: row["n"]
                for row in await Video.filter(id__in=ids)
                .group_by("status")
                .annotate(n=Count("id"))
                .values("status", "n")
            }
            peak = max(peak, counts.get(VideoStatus.PROCESSING, 0))
            if counts.get(VideoStatus.COMPLETED, 0) == len(ids):
                break
            assert set(counts) <= {"queued", "processing", "completed"}, counts
            assert time.monotonic() - last_enqueue < 45, f"still running after 45 s: {counts}"
            await asyncio.sleep(0.5)
        took = time.monotonic() - last_enqueue
    finally:
        await worker.stop(grace_seconds=0)
    print(f"200 jobs of 10 s: done {took:.1f} s after the last enqueue; {peak} in flight at most")
    assert took < 45
    # They ran side by side, not four at a time: most of them were in flight together.
    assert peak >= 150, f"at most {peak} jobs were processing at once"


async def _make(owner: User, prompt: str = "succeed", **values: object) -> Video:
    """Queue a new video as the videos service does (record_created inserts it, so its
    turn, fair_rank, is computed by the insert)."""
    fields: dict[str, object] = {"provider": "test", "resolution": "64x64", **values}
    video = Video(owner=owner, prompt=prompt, **fields)
    await lifecycle.record_created(video, actor="test")
    return video


async def test_claims_alternate_between_owners_within_a_priority(db: Settings) -> None:
    a = await User.create(email="a@example.com", password_hash="x")
    b = await User.create(email="b@example.com", password_hash="x")
    c = await User.create(email="c@example.com", password_hash="x")
    backlog = [await _make(a) for _ in range(6)]
    first = await queue.claim(worker_id="w:1:x", limit=2, lease_seconds=30)
    assert [j.video_id for j in first] == [backlog[0].id, backlog[1].id]
    single = await _make(b)  # after A's backlog, but it is B's first
    pair = [await _make(c), await _make(c)]
    urgent = await _make(a, priority=5)  # priority still wins over every turn
    order = [j.video_id for j in await queue.claim(worker_id="w:1:x", limit=20, lease_seconds=30)]
    assert order[0] == urgent.id
    # B and C join at the head's turn, A's backlog keeps its own turns behind them.
    assert order.index(single.id) < order.index(backlog[3].id)
    assert order.index(pair[0].id) < order.index(backlog[3].id)
    assert order.index(pair[1].id) < order.index(backlog[4].id)
    assert sorted(order) == sorted(
        [v.id for v in backlog[2:]] + [single.id, *(v.id for v in pair), urgent.id]
    )


async def test_one_owners_backlog_does_not_starve_another_with_the_provider_limited_to_2(
    live_runtime: Runtime,
) -> None:
    live_runtime.settings.provider_concurrency = {"test": 2}
    a = await User.create(email="a@example.com", password_hash="x")
    b = await User.create(email="b@example.com", password_hash="x")
    worker = await start_embedded(live_runtime)
    try:
        a_ids = [await _enqueue(live_runtime, a, f"sleep:0.3 a{i}") for i in range(40)]
        b_id = await _enqueue(live_runtime, b, "sleep:0.3 b")

        async def b_done() -> bool:
            return await Video.filter(id=b_id, status=VideoStatus.COMPLETED).exists()

        for _ in range(600):
            if await b_done():
                break
            running = await Video.filter(status=VideoStatus.PROCESSING).count()
            assert running <= 2, "the provider's limit must hold"
            await asyncio.sleep(0.05)
    finally:
        await worker.stop(grace_seconds=0)
    b_video = await Video.get(id=b_id)
    assert b_video.status == VideoStatus.COMPLETED
    a_done = sorted(
        await Video.filter(id__in=a_ids, status=VideoStatus.COMPLETED).values_list(
            "completed_at", flat=True
        )
    )
    # B's job completed before A's sixth (A's jobs completed after it do not count).
    assert len([t for t in a_done if t < b_video.completed_at]) < 6


async def test_one_heartbeat_statement_extends_every_lease_and_reports_losses(
    db: Settings,
) -> None:
    owner = await User.create(email="hb@example.com", password_hash="x")
    for _ in range(30):
        await _make(owner)
    claimed = await queue.claim(worker_id="w:1:hb", limit=30, lease_seconds=1)
    jobs = {j.video_id: j.attempt for j in claimed}
    lost, cancel = claimed[0].video_id, claimed[1].video_id
    # One lost (swept and claimed by another worker), one with a cancel request.
    await Video.filter(id=lost).update(processed_by="w:2:other", attempt=jobs[lost] + 1)
    await Video.filter(id=cancel).update(cancel_requested=True)
    before = dict(await Video.filter(id__in=list(jobs)).values_list("id", "lease_expires_at"))
    report = await leases.extend_worker_leases("w:1:hb", jobs, lease_seconds=60)
    assert report.lost == {lost}
    assert report.cancel_requested == {cancel}
    assert report.unknown == set()
    after = dict(await Video.filter(id__in=list(jobs)).values_list("id", "lease_expires_at"))
    assert all(after[v] > before[v] for v in jobs if v != lost)
    # A job processing under this worker id that it does not run: reported for adoption.
    del jobs[claimed[2].video_id]
    report = await leases.extend_worker_leases("w:1:hb", jobs, lease_seconds=60)
    assert report.unknown == {claimed[2].video_id}


async def test_progress_of_many_jobs_is_one_statement_and_fenced(db: Settings) -> None:
    owner = await User.create(email="p@example.com", password_hash="x")
    for _ in range(20):
        await _make(owner)
    claimed = await queue.claim(worker_id="w:1:p", limit=20, lease_seconds=30)
    batcher = ProgressBatcher(MemoryBus(), worker_id="w:1:p", every=0.05)
    stale = claimed[0]
    await Video.filter(id=stale.video_id).update(attempt=stale.attempt + 1)
    for i, job in enumerate(claimed):
        batcher.report(job.video_id, job.attempt, 0.1, None)
        batcher.report(job.video_id, job.attempt, 0.2 + i / 100, f"step {i}")  # newest wins
    for _ in range(100):
        if batcher.statements:
            break
        await asyncio.sleep(0.02)
    await batcher.close()
    assert batcher.statements == 1
    rows = {r["id"]: r for r in await Video.all().values("id", "progress", "status_message")}
    assert rows[stale.video_id]["progress"] == 0.0  # fenced out: a newer attempt holds it
    for i, job in enumerate(claimed[1:], start=1):
        assert rows[job.video_id]["progress"] == pytest.approx(0.2 + i / 100)
        assert rows[job.video_id]["status_message"] == f"step {i}"


async def test_a_worker_claims_no_more_cpu_bound_jobs_than_its_render_threads(
    db: Settings,
) -> None:
    settings = db.model_copy(update={"cpu_workers": 2, "render_workers": None})
    owner = await User.create(email="cpu@example.com", password_hash="x")
    for _ in range(5):
        await _make(owner, provider="local", resolution="256x256", duration_seconds=1.0)
    for _ in range(5):
        await _make(owner, prompt="sleep:30")
    rt = Runtime.create(settings, bus=MemoryBus())
    rt.providers = {"local": rt.providers["local"], "test": TestProvider()}
    await rt.open()
    try:
        worker = Worker(rt, concurrency=100)
        assert worker.cpu_slots == {"local": 2}
        claimed = await worker._claim_free_slots()
        assert sorted(j.provider for j in claimed) == ["local"] * 2 + ["test"] * 5
        # Nothing more of the local renderer while its two are running.
        assert await worker._claim_free_slots() == []
        await worker._release_running()
    finally:
        await rt.close()
