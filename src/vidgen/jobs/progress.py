"""Progress batching: the progress and status messages of all of a worker's jobs, written
as ONE statement per flush instead of one per report.

A job that waits at a remote provider reports what the provider says (a percentage, a
queue position) a few times a minute. With hundreds of jobs in flight, one statement per
report would be most of the worker's database work while it waits. Jobs hand their latest
values to the worker's :class:`ProgressBatcher` instead; it keeps only the newest values per
job, and a flush writes them all in one fenced statement
(:func:`vidgen.jobs.lifecycle.report_progress_many`) and publishes their events: the first
report after a quiet second at once, the ones that follow within the second together. A
report therefore reaches subscribers up to a second later, and a job whose status changes
first (it completed, failed or was taken over) keeps its status: the fence leaves its report
out.

A flush's version of a video must also reach subscribers before the job's next write's
(docs/live.md: every version, in order). Between a flush's statement and its publish, the
job's own next write (its completion) could commit and publish first, and subscribers would
see the newer version before the older one. So a job waits for a flush that holds its video
(:meth:`ProgressBatcher.settled`, called by ``JobContext.db`` before each of the job's
writes). The other way round, a flush leaves out the videos whose job has a write in flight
(:meth:`ProgressBatcher.writing`, held by ``JobContext.db`` around each of them): their
reports wait in the batch for the next flush. So a flush and a write of the same job never
overlap, and each publishes its version before the other writes the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from vidgen.events.bus import EventBus
from vidgen.jobs import lifecycle, transient

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class ProgressBatcher:
    """Collects running jobs' progress reports and writes them in one statement per flush."""

    def __init__(self, bus: EventBus | None, *, worker_id: str, every: float = FLUSH_SECONDS):
        self.bus = bus
        self.worker_id = worker_id
        self.every = every
        # video id → (attempt, progress, message); newest values win, None keeps the old one.
        self._pending: dict[int, tuple[int, float | None, str | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        # video id → the future of the flush that is writing and publishing its report.
        self._inflight: dict[int, asyncio.Future[None]] = {}
        # video id → how many of its job's own writes are in flight (see writing()).
        self._writing: dict[int, int] = {}
        self._last_flush = -every  # by the loop's clock
        self.statements = 0  # flushes sent (tests, the capacity benchmark)

    def report(
        self, video_id: int, attempt: int, progress: float | None, message: str | None
    ) -> None:
        """Queue a job's new progress and/or message (never blocks, never raises)."""
        old = self._pending.get(video_id)
        if old is not None and old[0] == attempt:
            progress = progress if progress is not None else old[1]
            message = message if message is not None else old[2]
        self._pending[video_id] = (attempt, progress, message)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="progress flush")

    async def settled(self, video_id: int) -> None:
        """Wait until no flush is between writing and publishing ``video_id``'s report."""
        while (flushing := self._inflight.get(video_id)) is not None:
            await asyncio.shield(flushing)

    @contextlib.contextmanager
    def writing(self, video_id: int) -> Iterator[None]:
        """Mark a write of ``video_id``'s job as in flight (from its statement to its
        publish): flushes meanwhile leave that video's report for later. Enter it right
        after :meth:`settled`, with no ``await`` between the two."""
        self._writing[video_id] = self._writing.get(video_id, 0) + 1
        try:
            yield
        finally:
            left = self._writing[video_id] - 1
            if left:
                self._writing[video_id] = left
            else:
                del self._writing[video_id]

    async def _write(self, batch: dict[int, tuple[int, float | None, str | None]]) -> None:
        """One statement for ``batch`` and its events' publish, with its videos marked in
        flight meanwhile (see :meth:`settled`)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for vid in batch:
            self._inflight[vid] = done
        try:
            await lifecycle.report_progress_many(
                [(vid, a, p, m) for vid, (a, p, m) in batch.items()], bus=self.bus
            )
        finally:
            for vid in batch:
                if self._inflight.get(vid) is done:
                    del self._inflight[vid]
            done.set_result(None)

    def forget(self, video_id: int, attempt: int) -> None:
        """The attempt ended: its unsent report would be fenced out anyway."""
        old = self._pending.get(video_id)
        if old is not None and old[0] == attempt:
            del self._pending[video_id]

    async def _flush_soon(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while self._pending:
            # A report after a quiet second goes out at once; the ones that follow it within
            # the second share the next flush.
            await asyncio.sleep(max(0.0, self._last_flush + self.every - loop.time()))
            self._last_flush = loop.time()
            if self._writing:  # those jobs' writes publish first; their reports wait
                batch = {v: r for v, r in self._pending.items() if v not in self._writing}
                for vid in batch:
                    del self._pending[vid]
                if not batch:
                    continue
            else:
                batch, self._pending = self._pending, {}
            try:
                await self._write(batch)
                self.statements += 1
                failures = 0
            except Exception as exc:
                # Progress is not worth a job: keep the newest values and try at the next
                # flush (a database outage); anything else is logged and dropped.
                if transient.is_transient(exc):
                    for vid, values in batch.items():
                        self._pending.setdefault(vid, values)
                transient.loop_failed("progress", exc, failures, self.worker_id)
                failures += 1

    async def close(self) -> None:
        """Stop flushing, sending what is pending once (best effort: progress is not kept
        across a failure, the next report or the job's end carries the news)."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        batch, self._pending = self._pending, {}
        if batch:
            try:
                await self._write(batch)
            except Exception as exc:
                transient.loop_failed("progress", exc, 0, self.worker_id)
