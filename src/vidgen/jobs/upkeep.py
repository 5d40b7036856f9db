"""What every worker does besides running jobs: the sweeper, which hands other workers'
expired leases back to the queue (a rescue), and the retention purge.

Both are safe in every worker at once: each sweep's change is fenced on the attempt and on
the lease still being expired, and the purge re-checks in its DELETE. Both ride out
database outages (:func:`vidgen.jobs.transient.loop_failed`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from vidgen.jobs import leases, transient
from vidgen.metrics import JOB_RESCUES
from vidgen.models import VideoStatus
from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)


# A worker that held a thousand jobs in flight leaves a thousand expired leases when it
# dies: a sweep takes batch after batch (each of leases.SWEEP_BATCH) until one comes back
# short, up to this many, instead of one batch per sweep interval.
MAX_SWEEP_BATCHES = 50


async def sweep_once(
    runtime: Runtime, *, worker_id: str, wake: Callable[[], None] | None = None
) -> bool:
    """Handle the expired leases (batch after batch while batches come back full); stop the
    predictions of the jobs that ended failed or canceled. ``wake`` is called after each
    batch that re-queued a job, so the claims overlap the rest of the sweep. Returns True
    when a job went back to the queue (claim again)."""
    requeued = False
    for _ in range(MAX_SWEEP_BATCHES):
        swept = await leases.sweep(
            max_rescues=runtime.settings.max_rescues,
            actor=f"sweeper:{worker_id}",
            bus=runtime.bus,
        )
        batch_requeued = False
        for item in swept:
            JOB_RESCUES.inc()
            if item.to_status is VideoStatus.QUEUED:
                batch_requeued = True
                continue
            await cancel_upstream(runtime, item.video_id, item.provider, item.prediction_id)
        if batch_requeued and wake is not None:
            wake()
        requeued = requeued or batch_requeued
        if len(swept) < leases.SWEEP_BATCH:
            break
    return requeued


async def sweep_loop(runtime: Runtime, *, worker_id: str, wake: Callable[[], None]) -> None:
    """Sweep every half lease (at most every 30 s); ``wake`` the claim loop for a rescue."""
    interval = max(0.2, min(runtime.settings.lease_seconds / 2, 30.0))
    failures = 0
    while True:
        try:
            if await sweep_once(runtime, worker_id=worker_id, wake=wake):
                wake()
            failures = 0
            delay = interval
        except Exception as exc:
            delay = min(interval, transient.loop_failed("sweep", exc, failures, worker_id))
            failures += 1
        await asyncio.sleep(delay)


async def purge_loop(runtime: Runtime, *, worker_id: str) -> None:
    """Run the retention purge every ``purge_interval_seconds`` (never when 0 or less)."""
    from vidgen.media import retention

    settings = runtime.settings
    interval = settings.purge_interval_seconds
    if interval <= 0:
        return
    # Spread workers started together over the first interval.
    await asyncio.sleep(random.uniform(0.5, 1.0) * interval)
    while True:
        try:
            await retention.purge(settings=settings, storage=runtime.storage)
        except Exception as exc:
            transient.loop_failed("purge", exc, 0, worker_id)
        await asyncio.sleep(interval)


async def cancel_upstream(
    runtime: Runtime, video_id: int, provider_name: str, prediction_id: str | None
) -> None:
    """Best effort: stop the paid prediction of a job that ended without its worker."""
    provider = runtime.providers.get(provider_name)
    if prediction_id and provider is not None:
        try:
            await provider.cancel(prediction_id)
        except Exception:
            logger.warning("provider cancel failed", exc_info=True, extra={"video_id": video_id})
