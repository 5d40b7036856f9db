"""The job's media stage: download the provider's output, probe it, make its thumbnail and
store both durably (see :mod:`vidgen.media.ingest`). The stage's steps run on the CPU pool's
threads, and its probe + thumbnail in the media processes
(:func:`vidgen.jobs.cpu.run_in_process`), so that the worker's event loop does not wait for
the interpreter's lock meanwhile. Creating the download's file and the commit (fsyncs,
renames) only wait on the disk, so they run on the I/O pool (:mod:`vidgen.jobs.cpu`): a
burst of outputs finishing together keeps the cores busy inspecting while their fsyncs
overlap elsewhere."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from vidgen.jobs import cpu
from vidgen.jobs.job_context import JobContext
from vidgen.jobs.lifecycle import JobSpec
from vidgen.media import ingest, inspect
from vidgen.providers.base import PollResult, Provider

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def store_output(
    ctx: JobContext, spec: JobSpec, provider: Provider, result: PollResult, settings: Any
) -> ingest.Stored:
    """Download, probe, thumbnail and store durably (see :mod:`vidgen.media.ingest`).

    One CPU-pool call for the download, probe and thumbnail when the provider can download
    without the event loop; otherwise an I/O-pool call that opens the file, the provider's
    async download, and a call that probes and thumbnails (on the I/O pool when that waits
    for the media processes, else on the CPU pool). The stage always stops before committing,
    and one I/O-pool call commits: with the prediction id's write still in flight, only once
    that write succeeded (a job taken over meanwhile stores nothing).
    """
    pending = ctx.pending_write
    job = ingest.Ingest(
        ctx.runtime.storage,
        owner_id=spec.owner_id,
        video_id=ctx.video_id,
        output_format=str(spec.output_format),
        thumbnail_width=settings.thumbnail_width,
        thumbnail_format=settings.thumbnail_format,
        hold=ctx.write_done if pending is not None else None,
        commit_apart=True,
        inspector=_inspect_in_process,
    )
    ctx.ingest = job
    job.abandoned = ctx.write_error is not None
    try:
        stored = await _fetch_and_store(job, provider, result, max_bytes=settings.max_output_bytes)
        if stored is None:  # ready: wait for the write in flight, if any, then commit
            try:
                await ctx.settle_pending()
            except BaseException:
                await asyncio.shield(asyncio.to_thread(job.discard))
                raise
            stored = await _in_thread(job, job.commit, io=True)
        return stored
    except ingest.Abandoned:
        if ctx.write_error is not None:  # not canceled: the id's write went wrong
            await ctx.settle_pending()  # raises its error (StaleAttempt: taken over)
            raise ctx.write_error from None
        raise
    finally:
        ctx.ingest = None


def _inspect_in_process(video: Any, **options: Any) -> tuple[Any, bytes]:
    """:func:`vidgen.media.inspect.read` in the media processes (called on a CPU thread)."""
    return cpu.run_in_process(inspect.read, video, **options)


async def _fetch_and_store(
    job: ingest.Ingest, provider: Provider, result: PollResult, *, max_bytes: int
) -> ingest.Stored | None:
    download_blocking = getattr(provider, "download_blocking", None)
    if download_blocking is not None:
        fetch = functools.partial(download_blocking, result, max_bytes=max_bytes)
        return await _in_thread(job, job.run, fetch)
    dest = await _in_thread(job, job.open, io=True)
    try:
        content_type = await provider.download(result, dest, max_bytes=max_bytes)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(job.discard))
        raise
    # With the probe in the media processes, this call mostly waits for them: on the I/O
    # pool, the outputs of a burst queue at the processes (keeping each busy) instead of
    # waiting for one of the CPU pool's few threads.
    return await _in_thread(job, job.finish, content_type, io=cpu.processes() > 0)


async def _in_thread(job: ingest.Ingest, fn: Callable[..., T], *args: Any, io: bool = False) -> T:
    """``fn(*args)`` on the CPU pool (a burst of outputs queues there, bounded by the
    cores, instead of starving the event loop), or on the I/O pool with ``io``. Canceled
    before it started, it never runs; canceled while it runs, it runs on but commits nothing
    it has not started committing; canceled with the stage held (ready, waiting to commit),
    its files are removed."""
    loop = asyncio.get_running_loop()
    pool = cpu.io_executor() if io else cpu.executor()
    try:
        return await loop.run_in_executor(pool, fn, *args)
    except asyncio.CancelledError:
        if job.abandon():
            loop.run_in_executor(None, job.discard)  # held: nobody else would
        raise
