"""Workers: hold up to N jobs in flight in one process, keep their leases, sweep lost ones.

A job in flight is a task: waiting at a remote provider costs no CPU, so a worker holds
hundreds (``worker_max_in_flight``, default 1000). CPU-bound work runs on the process's CPU
pool (:mod:`vidgen.jobs.cpu`), sized to the cores, and a worker claims no more jobs of a
CPU-bound provider (the ``local`` renderer) than it has render threads.

A :class:`Worker` has five loops:

- the claim loop: claims as many due jobs as it has free slots, then sleeps until a wake-up
  on :data:`~vidgen.events.channels.WAKEUP_CHANNEL`, a finished job, the next scheduled job, or
  the slow safety poll (``worker_poll_seconds``), whichever comes first. A job frees its
  slot when its last write (one fenced statement) starts, so the next claim overlaps it;
- the heartbeat (every ``heartbeat_seconds``): ONE statement extends the leases of all its
  running jobs (by worker id, :func:`~vidgen.jobs.leases.extend_worker_leases`), stops the
  ones it no longer owns and passes on cancel requests;
- the sweeper: returns other workers' expired leases to the queue, and the purge (every
  ``purge_interval_seconds``, 0 or less: never): removes expired soft-deleted videos and
  orphaned files (:mod:`vidgen.jobs.upkeep`; both safe in every worker);
- the delivery of outgoing webhooks (:mod:`vidgen.webhooks_out.delivery`).

The jobs' last writes go through the worker's :class:`~vidgen.jobs.writer.GroupWriter`
(group commit). Every loop rides out database outages: a connection error (see
:mod:`vidgen.jobs.transient`) is logged and retried with capped exponential backoff and
jitter, never fatal, and never fails a job; a job whose lease was swept meanwhile finds its
fenced writes stale and stops. A claim that failed in flight may have committed: its jobs
(processing under this worker's id) are adopted at the next claim.

Shutdown (SIGTERM/SIGINT, or :meth:`Worker.stop`): stop claiming, let running jobs finish
within ``shutdown_grace_seconds``, then release the rest back to ``queued`` (a second signal
releases at once). ``vidgen worker`` runs one in its own process (:func:`run_worker`); the
API runs the same worker in its own process with :func:`start_embedded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidgen import backoff, eventloop
from vidgen.events.channels import WAKEUP_CHANNEL
from vidgen.events.local import BusSubscription, SubscriberOverflow
from vidgen.jobs import cpu, leases, lifecycle, pipeline, queue, transient, upkeep
from vidgen.jobs.job_context import JobContext
from vidgen.jobs.lifecycle import Claimed, now
from vidgen.jobs.progress import ProgressBatcher
from vidgen.jobs.writer import GroupWriter
from vidgen.models import Video, VideoStatus
from vidgen.providers.local import render_slots as local_slots
from vidgen.runtime import Runtime
from vidgen.settings import Settings
from vidgen.webhooks_out import delivery as webhooks

logger = logging.getLogger(__name__)

# At shutdown, how long a released job's prediction id write may take to land first. One not
# back by then (the database is down) is not released: its lease expires and a sweeper hands
# it on, as if the worker had been killed.
ID_WRITE_WAIT_SECONDS = 5.0

# The least time between two claims while the queue is drained (the last claim found fewer
# due jobs than free slots): a burst of wake-ups costs a few claim statements, not one each.
# A worker whose every slot was filled claims again as soon as one frees.
CLAIM_SPACING_SECONDS = 0.2


@dataclass
class _Running:
    ctx: JobContext
    task: asyncio.Task[object]
    lost: bool = False  # the lease is gone: never release, never write


def default_worker_id(name: str | None = None) -> str:
    """``host:pid:name``, unique per worker instance."""
    return f"{socket.gethostname()}:{os.getpid()}:{name or uuid.uuid4().hex[:6]}"


class Worker:
    """Claims and runs jobs (see the module docstring).

    Args:
        runtime: the process's shared resources (settings, bus, providers, storage).
        concurrency: jobs in flight at once (``worker_max_in_flight``).
        worker_id: written to ``processed_by``; default ``host:pid:random``.
    """

    def __init__(self, runtime: Runtime, *, concurrency: int, worker_id: str | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.runtime = runtime
        self.settings = runtime.settings
        self.concurrency = concurrency
        # Providers whose jobs are this process's CPU (the local renderer): claimed no more
        # than their own threads can run, or the rest would hold leases while they wait.
        self.cpu_slots = {
            name: local_slots(self.settings)
            for name, p in runtime.providers.items()
            if getattr(p, "cpu_bound", False)
        }
        self.worker_id = worker_id or default_worker_id()
        self.grace_seconds = self.settings.shutdown_grace_seconds
        self._jobs: dict[int, _Running] = {}
        # Tasks of an older attempt of a video claimed again while they were still in their
        # last write (StaleAttempt awaits them): not running a job, but not to be lost either.
        self._retired: set[asyncio.Task[object]] = set()
        self.writer = GroupWriter()  # group commit of the jobs' last writes
        # The jobs' progress reports, one statement per flush for all of them.
        self.progress = ProgressBatcher(runtime.bus, worker_id=self.worker_id)
        self._wake = asyncio.Event()
        self._stopping = False
        self._release_now = asyncio.Event()  # a second stop request: stop waiting
        self._adopt = False  # a claim failed in flight: it may have claimed jobs for us
        self._running = False
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- public ----------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run in a background task (see :func:`start_embedded`)."""
        self._task = asyncio.create_task(self.run(), name=f"worker {self.worker_id}")
        return self._task

    async def run(self) -> None:
        """Claim and run jobs until :meth:`stop`."""
        self._running = True
        self._done.clear()
        logger.info(
            "worker started",
            extra={
                "action": "worker.start",
                "worker_id": self.worker_id,
                "concurrency": self.concurrency,
                # uvloop or asyncio (VIDGEN_EVENT_LOOP)
                "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
            },
        )
        try:
            async with self.runtime.bus.subscribe(WAKEUP_CHANNEL, maxsize=64) as sub:
                helpers = [
                    asyncio.create_task(self._listen_wakeups(sub)),
                    asyncio.create_task(self._heartbeat_loop()),
                    asyncio.create_task(
                        upkeep.sweep_loop(
                            self.runtime, worker_id=self.worker_id, wake=self._wake.set
                        )
                    ),
                    asyncio.create_task(upkeep.purge_loop(self.runtime, worker_id=self.worker_id)),
                    # Outgoing webhooks (vidgen.webhooks_out).
                    asyncio.create_task(webhooks.run(self.runtime, worker_id=self.worker_id)),
                ]
                try:
                    await self._claim_loop()
                finally:
                    for task in helpers[2:]:
                        task.cancel()  # no more sweeping, purging or webhooks while shutting down
                    await self._shutdown()
                    # The jobs' last writes still being sent, before the database closes; as
                    # bounded as the wait for id writes (a hung connection must not hang us).
                    if self.writer.in_flight is not None:
                        await self._wait_or_release_now(
                            [self.writer.in_flight], ID_WRITE_WAIT_SECONDS
                        )
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
        finally:
            await self.progress.close()
            self._running = False
            self._done.set()
            logger.info(
                "worker stopped", extra={"action": "worker.stop", "worker_id": self.worker_id}
            )

    def request_stop(self, *, grace_seconds: float | None = None) -> None:
        """Ask the worker to stop (safe from a signal handler); a second call releases now."""
        if self._stopping:
            self.grace_seconds = 0.0
            self._release_now.set()
        elif grace_seconds is not None:
            self.grace_seconds = grace_seconds
        self._stopping = True
        self._wake.set()

    async def stop(self, *, grace_seconds: float | None = None) -> None:
        """Stop claiming, let running jobs finish within the grace period, release the rest."""
        self.request_stop(grace_seconds=grace_seconds)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        elif self._running:
            await self._done.wait()

    async def run_until_idle(self) -> int:
        """Burst mode (tests, one-off runs): sweep once, run every due job, return.

        Jobs that become due later (retries with backoff, schedules) are left queued.

        Returns:
            How many jobs were claimed.
        """
        await upkeep.sweep_once(self.runtime, worker_id=self.worker_id)
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        claimed_total = 0
        failures = 0
        finished = False
        try:
            while True:
                self._wake.clear()
                try:
                    if self._adopt:
                        await self._adopt_orphans()
                    claimed_total += len(await self._claim_free_slots())
                    failures = 0
                except Exception as exc:
                    # A claim can fail while a job's last write rides out an outage: keep
                    # running the jobs and claim again (adopting what a claim whose reply
                    # was lost took), unless there is nothing to wait for.
                    if not transient.is_transient(exc) or not self._jobs:
                        raise
                    self._adopt = True
                    transient.loop_failed("claim", exc, failures, self.worker_id)
                    failures += 1
                    await asyncio.sleep(backoff.delay(failures))
                    continue
                tasks = [r.task for r in self._jobs.values() if not r.task.done()]
                if not tasks:
                    if self._wake.is_set():
                        # A job ended while the claim ran, which may have made another job
                        # due (a film waiting for its last clip): claim once more.
                        continue
                    break
                # Until a job ends or one starts its last write (its slot is free then).
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait([*tasks, woken], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
            if self._retired:  # older attempts, stopped or in a doomed write: let them end
                await asyncio.wait(list(self._retired))
            finished = True
            return claimed_total
        finally:
            if not finished:  # an error or a cancel ended the burst: hand its jobs back
                await self._release_running()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.progress.close()

    # --- claiming --------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        poll = self.settings.worker_poll_seconds
        failures = 0
        loop = asyncio.get_running_loop()
        last_claim, drained = -CLAIM_SPACING_SECONDS, False
        while not self._stopping:
            if drained:
                # The last claim found fewer due jobs than free slots: wake-ups that come in
                # a burst (enqueues, jobs ending) share the next claim instead of one each.
                gap = last_claim + CLAIM_SPACING_SECONDS - loop.time()
                if gap > 0:
                    await asyncio.sleep(gap)
                    if self._stopping:
                        break
            self._wake.clear()
            timeout = poll
            try:
                if self._adopt:
                    await self._adopt_orphans()
                started = now()
                last_claim = loop.time()
                free = self.concurrency - self._busy_slots()
                drained = len(await self._claim_free_slots()) < free
                # Slots left free (nothing claimed, or fewer jobs due than slots): wake when
                # the next scheduled or backed-off job is due, not at the safety poll.
                if self._busy_slots() < self.concurrency:
                    due = await queue.next_due_at(after=started)
                    if due is not None:
                        timeout = min(poll, max(0.0, (due - now()).total_seconds()))
                failures = 0
            except Exception as exc:
                timeout = transient.loop_failed("claim", exc, failures, self.worker_id)
                failures += 1
                # The claim may have committed with its reply lost: look for such jobs next.
                self._adopt = self._adopt or transient.is_transient(exc)
                if self._stopping:
                    break
                await self._pause(timeout)
                continue
            if self._stopping:
                break
            await eventloop.wait_event(self._wake, timeout)

    async def _adopt_orphans(self) -> None:
        orphans = await lifecycle.claimed_by(
            self.worker_id, exclude={vid: r.ctx.attempt for vid, r in self._jobs.items()}
        )
        self._adopt = False
        for job in orphans:
            logger.warning(
                "adopting a job claimed while the database connection failed",
                extra={
                    "action": "job.adopt",
                    "video_id": job.video_id,
                    "worker_id": self.worker_id,
                },
            )
            self._start(job)

    def _start(self, job: Claimed) -> None:
        ctx = JobContext(
            self.runtime,
            job,
            worker_id=self.worker_id,
            runner=self.writer.run,
            on_last_write=self._wake.set,
            progress=self.progress,
        )
        task = asyncio.create_task(self._run_one(ctx), name=f"job {job.video_id}")
        older = self._jobs.get(job.video_id)
        if older is not None and not older.task.done():
            if not older.ctx.finished:
                # The row's newer attempt proves its lease gone (swept while the database
                # was out of reach): stop it as the heartbeat stops a lost lease, leaving
                # the provider's prediction to the new attempt.
                older.lost = True
                older.task.cancel()
            self._retired.add(older.task)
            older.task.add_done_callback(self._retired.discard)
        self._jobs[job.video_id] = _Running(ctx, task)

    def _busy_slots(self) -> int:
        """Jobs holding a slot: every running job but those whose last write (one fenced
        statement, no provider call) is under way. Counting those too would leave a slot idle
        for that write's round trip and the next claim's, one after the other, on every job;
        the rows still count as ``processing`` for the per-provider limits until it commits."""
        return sum(1 for r in self._jobs.values() if not r.ctx.slot_free)

    async def _claim_free_slots(self) -> list[Claimed]:
        free = self.concurrency - self._busy_slots()
        if free <= 0 or self._stopping:
            return []
        worker_limits = None
        if self.cpu_slots:
            running: dict[str, int] = {}
            for r in self._jobs.values():
                if not r.ctx.slot_free:
                    name = r.ctx.claimed.provider
                    running[name] = running.get(name, 0) + 1
            worker_limits = {n: max(0, k - running.get(n, 0)) for n, k in self.cpu_slots.items()}
        claimed = await queue.claim(
            worker_id=self.worker_id,
            limit=free,
            worker_limits=worker_limits,
            lease_seconds=self.settings.lease_seconds,
            # Only the providers configured here (with their keys): another worker may run
            # the rest, and a job claimed here would fail as "not available".
            providers=[name for name, p in self.runtime.providers.items() if p.available],
            provider_limits=self.settings.provider_concurrency,
            bus=self.runtime.bus,
        )
        for job in claimed:
            self._start(job)
        return claimed

    async def _pause(self, seconds: float) -> None:
        """Back off for ``seconds``: wake-ups do not cut it short, a stop request does."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._wake.clear()
            await eventloop.wait_event(self._wake, left)

    async def _run_one(self, ctx: JobContext) -> None:
        try:
            await pipeline.run_job(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:  # run_job handles its errors; this is the last line of defence
            logger.exception("job task failed", extra=ctx.log_extra)
        finally:
            self.progress.forget(ctx.video_id, ctx.attempt)
            running = self._jobs.get(ctx.video_id)
            if running is not None and running.ctx is ctx and not self._stopping:
                del self._jobs[ctx.video_id]
            self._wake.set()

    async def _listen_wakeups(self, sub: BusSubscription) -> None:
        while True:
            try:
                await sub.get()
            except SubscriberOverflow:
                self._wake.set()
                return  # the safety poll keeps us going
            self._wake.set()

    # --- leases ------------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._heartbeat()
                failures = 0
            except Exception as exc:
                # The next beat is the retry; the lease outlives a few missed beats.
                transient.loop_failed("heartbeat", exc, failures, self.worker_id)
                failures += 1

    async def _heartbeat(self) -> None:
        # A job in its last write keeps its lease too (that write may be riding out an
        # outage); once it committed the row no longer matches, which is not a loss.
        jobs = {vid: r.ctx.attempt for vid, r in self._jobs.items() if not r.lost}
        if not jobs:
            return
        report = await leases.extend_worker_leases(
            self.worker_id, jobs, lease_seconds=self.settings.lease_seconds
        )
        if report.unknown:
            # Processing under our id but not running here: a claim whose reply was lost.
            self._adopt = True
            self._wake.set()
        for video_id in report.lost:
            running = self._jobs.get(video_id)
            if running is None or running.task.done() or running.ctx.finished:
                continue
            running.lost = True
            running.task.cancel()
            logger.warning(
                "lost the lease; stopping the job",
                extra={
                    "action": "job.lease_lost",
                    "video_id": video_id,
                    "worker_id": self.worker_id,
                },
            )
        for video_id in report.cancel_requested:
            running = self._jobs.get(video_id)
            if running is not None:
                running.ctx.cancel_requested = True
                running.ctx.nudge()

    # --- shutdown ----------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._stopping = True
        running = [r for r in self._jobs.values() if not r.task.done()]
        if running and self.grace_seconds > 0:
            logger.info(
                "waiting for running jobs",
                extra={
                    "action": "worker.drain",
                    "worker_id": self.worker_id,
                    "count": len(running),
                },
            )
            await self._wait_or_release_now([r.task for r in running], self.grace_seconds)
        await self._release_running()

    async def _release_running(self) -> None:
        """Stop the jobs still running and hand them back to the queue (best effort)."""
        leftover = [r for r in self._jobs.values() if not r.task.done()]
        for r in leftover:
            r.task.cancel()
        retired = [t for t in self._retired if not t.done()]
        for task in retired:  # older attempts: nothing of theirs to release
            task.cancel()
        await asyncio.gather(*(r.task for r in leftover), *retired, return_exceptions=True)
        # A prediction id's write still in flight lands before the release, or the release
        # would make it stale and the next attempt would pay for a new prediction.
        writes = [r.ctx.pending_write for r in leftover if r.ctx.pending_write is not None]
        if writes:
            await self._wait_or_release_now(writes, ID_WRITE_WAIT_SECONDS)
        for r in leftover:
            if r.lost:
                continue
            if r.ctx.pending_write is not None and not r.ctx.pending_write.done():
                logger.warning(
                    "not releasing a job whose prediction id is still being written;"
                    " its lease will expire",
                    extra={"action": "job.release_skipped", "video_id": r.ctx.video_id},
                )
                continue
            try:
                status = await leases.release(
                    r.ctx.video_id, r.ctx.attempt, worker_id=self.worker_id, bus=self.runtime.bus
                )
            except Exception as exc:
                # Its lease expires and a sweeper hands it on: nothing is lost.
                transient.loop_failed("release", exc, 0, self.worker_id)
                continue
            if status is VideoStatus.CANCELED:
                # Its cancel was requested while it ran: released as canceled, so its
                # prediction must stop too, as when its own worker cancels it.
                row = await Video.get_or_none(id=r.ctx.video_id).values("provider", "prediction_id")
                if row:
                    await upkeep.cancel_upstream(
                        self.runtime, r.ctx.video_id, row["provider"], row["prediction_id"]
                    )
            logger.info(
                "released job",
                extra={
                    "action": "job.release",
                    "video_id": r.ctx.video_id,
                    "worker_id": self.worker_id,
                    "status": status,
                },
            )
        self._jobs.clear()

    async def _wait_or_release_now(self, tasks: list[asyncio.Task[Any]], seconds: float) -> None:
        """Wait up to ``seconds`` for ``tasks`` to end, less when a second stop request
        comes; never cancels them (they may be shielded writes), even when canceled itself."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        waiting: set[asyncio.Future[Any]] = set(tasks)
        while waiting and not self._release_now.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return
            cut = asyncio.ensure_future(self._release_now.wait())
            try:
                done, _ = await asyncio.wait(
                    [*waiting, cut], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                cut.cancel()
            waiting -= done


async def start_embedded(runtime: Runtime, *, concurrency: int | None = None) -> Worker:
    """Start a worker inside this process (the API's embedded mode); ``await worker.stop()``."""
    worker = Worker(
        runtime,
        concurrency=concurrency or runtime.settings.worker_max_in_flight,
        worker_id=default_worker_id("embedded"),
    )
    worker.start()
    return worker


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    serving: Callable[[Runtime], contextlib.AbstractAsyncContextManager[Any]] | None = None,
) -> None:
    """The ``vidgen worker`` process: open the database and runtime, run until a signal.

    ``serving``: what else the process serves while its worker runs (the CLI's metrics
    endpoint), entered once the runtime is open and left once the worker stopped."""
    from vidgen import db

    await db.init(settings)
    runtime = await Runtime.start(settings)
    worker = Worker(runtime, concurrency=concurrency or settings.worker_max_in_flight)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        async with serving(runtime) if serving else contextlib.nullcontext():
            await worker.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        # Its jobs have ended or been handed back: nothing waits on the media processes.
        await asyncio.to_thread(cpu.shutdown)
        await runtime.close()
        await db.close()
