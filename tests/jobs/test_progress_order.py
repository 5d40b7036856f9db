"""A job's batched progress reaches subscribers before the job's next write does.

The worker's progress batch writes a version of the video, then publishes it. A write of
the job itself made between the two (its completion, another report) must not publish its
newer version first, or a subscriber sees versions out of order and drops one
(docs/live.md). The bus here holds the batch's publish, as a busy loop would."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from vidgen.events.memory import MemoryBus
from vidgen.jobs import lifecycle, queue
from vidgen.jobs.job_context import JobContext
from vidgen.jobs.progress import ProgressBatcher
from vidgen.models import User, Video
from vidgen.runtime import Runtime
from vidgen.settings import Settings


class HeldBus(MemoryBus):
    """The in-process bus, recording what it sends; its first publish waits for a release."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        self.sent += items
        await super().publish_many(items)


async def _running_job(db: Settings) -> tuple[Any, HeldBus, ProgressBatcher, JobContext]:
    """A claimed job of a new video, its held bus, a fast progress batch and its context."""
    owner = await User.create(email="order@example.com", password_hash="x")
    await lifecycle.record_created(
        Video(owner=owner, prompt="succeed", provider="test", resolution="64x64"), actor="test"
    )
    [claimed] = await queue.claim(worker_id="w:1:o", limit=1, lease_seconds=30)
    bus = HeldBus()
    batcher = ProgressBatcher(bus, worker_id="w:1:o", every=0.01)
    ctx = JobContext(Runtime.create(db, bus=bus), claimed, worker_id="w:1:o", progress=batcher)
    return claimed, bus, batcher, ctx


def _report(ctx: JobContext, bus: HeldBus, progress: float) -> Any:
    """The job's own progress write, through ``ctx.db`` as the pipeline sends it."""
    return ctx.db(
        "report progress",
        functools.partial(
            lifecycle.report_progress,
            ctx.video_id,
            progress,
            attempt=ctx.attempt,
            bus=bus,
        ),
    )


async def test_a_jobs_write_waits_until_its_batched_progress_is_published(db: Settings) -> None:
    claimed, bus, batcher, ctx = await _running_job(db)

    batcher.report(claimed.video_id, claimed.attempt, 0.5, None)
    await asyncio.wait_for(bus.holding.wait(), 10)  # written, its publish held
    write = asyncio.create_task(_report(ctx, bus, 0.9))
    await asyncio.sleep(0.3)
    assert not write.done()  # it waits for the batch's publish
    bus.release.set()
    await asyncio.wait_for(write, 10)
    await batcher.close()

    versions = [m["version"] for _, m in bus.sent if m.get("version") is not None]
    assert versions and versions == sorted(versions), versions
    row = await Video.get(id=claimed.video_id)
    assert max(versions) == row.version and row.progress == 0.9


async def test_a_flush_leaves_out_a_video_whose_jobs_write_is_in_flight(db: Settings) -> None:
    """The other order: the job's write has committed and its publish is held when the next
    report comes. A flush then would write and publish a newer version before the held one;
    it waits in the batch until the write is published."""
    claimed, bus, batcher, ctx = await _running_job(db)

    write = asyncio.create_task(_report(ctx, bus, 0.5))
    await asyncio.wait_for(bus.holding.wait(), 10)  # the job's write committed, publish held
    committed = (await Video.get(id=claimed.video_id)).version
    batcher.report(claimed.video_id, claimed.attempt, 0.9, None)
    await asyncio.sleep(0.3)  # thirty flush intervals
    assert batcher.statements == 0 and not bus.sent
    assert (await Video.get(id=claimed.video_id)).version == committed  # nothing written
    bus.release.set()
    await asyncio.wait_for(write, 10)
    for _ in range(500):  # the report goes out at the next flush
        if batcher.statements:
            break
        await asyncio.sleep(0.01)
    await batcher.close()

    versions = [m["version"] for _, m in bus.sent if m.get("version") is not None]
    # (Each change goes out on more than one channel.)
    assert versions == sorted(versions) and set(versions) == {committed, committed + 1}, versions
    row = await Video.get(id=claimed.video_id)
    assert row.version == committed + 1 and row.progress == 0.9
