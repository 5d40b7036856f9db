"""The job's media stage: download the provider's output, probe it, make its thumbnail and
store both durably, on the CPU pool's threads (:mod:`vidgen.jobs.cpu`; see
:mod:`vidgen.media.ingest`)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from vidgen.jobs import cpu
from vidgen.jobs.job_context import JobContext
from vidgen.jobs.lifecycle import JobSpec
from vidgen.media import ingest
from vidgen.providers.base import PollResult, Provider

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def store_output(
    ctx: JobContext, spec: JobSpec, provider: Provider, result: PollResult, settings: Any
) -> ingest.Stored:
    """Download, probe, thumbnail and store durably (see :mod:`vidgen.media.ingest`).

    One worker-thread call for the whole stage when the provider can download without the
    event loop; otherwise one before and one after its async download. With the prediction
    id's write still in flight the stage commits only once that write succeeded (a job
    taken over meanwhile stores nothing): when the write is not back by then, the stage
    stops before committing and one more thread call commits after it.
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
    )
    ctx.ingest = job
    job.abandoned = ctx.write_error is not None
    try:
        stored = await _fetch_and_store(job, provider, result, max_bytes=settings.max_output_bytes)
        if stored is None:  # held: wait for the write, then commit
            try:
                await ctx.settle_pending()
            except BaseException:
                await asyncio.shield(asyncio.to_thread(job.discard))
                raise
            stored = await _in_thread(job, job.commit)
        return stored
    except ingest.Abandoned:
        if ctx.write_error is not None:  # not canceled: the id's write went wrong
            await ctx.settle_pending()  # raises its error (StaleAttempt: taken over)
            raise ctx.write_error from None
        raise
    finally:
        ctx.ingest = None


async def _fetch_and_store(
    job: ingest.Ingest, provider: Provider, result: PollResult, *, max_bytes: int
) -> ingest.Stored | None:
    download_blocking = getattr(provider, "download_blocking", None)
    if download_blocking is not None:
        fetch = functools.partial(download_blocking, result, max_bytes=max_bytes)
        return await _in_thread(job, job.run, fetch)
    dest = await _in_thread(job, job.open)
    try:
        content_type = await provider.download(result, dest, max_bytes=max_bytes)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(job.discard))
        raise
    return await _in_thread(job, job.finish, content_type)


async def _in_thread(job: ingest.Ingest, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the CPU pool (a burst of outputs queues there, bounded by the
    cores, instead of starving the event loop). Canceled before it started, it never runs; canceled
    while it runs, it runs on but commits nothing it has not started committing; canceled
    with the stage held (ready, waiting to commit), its files are removed."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(cpu.executor(), fn, *args)
    except asyncio.CancelledError:
        if job.abandon():
            loop.run_in_executor(None, job.discard)  # held: nobody else would
        raise
