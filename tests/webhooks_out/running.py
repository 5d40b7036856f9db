"""Running the delivery loop, or a whole worker, in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from vidgen.jobs.worker import Worker
from vidgen.models import DeliveryState, WebhookDelivery
from vidgen.runtime import Runtime
from vidgen.webhooks_out import delivery


@contextlib.asynccontextmanager
async def delivering(runtime: Runtime, worker_id: str = "test") -> AsyncIterator[None]:
    """The delivery loop of a worker, running in this loop for the block."""
    task = asyncio.create_task(delivery.run(runtime, worker_id=worker_id))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def working(runtime: Runtime) -> AsyncIterator[Worker]:
    """A whole worker (jobs and webhooks) running in this loop for the block."""
    worker = Worker(runtime, concurrency=2)
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace_seconds=5)


async def settled(seconds: float = 30.0) -> None:
    """Until no event is pending (each delivered or given up); fails after ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        if not await WebhookDelivery.filter(state=DeliveryState.PENDING).exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("webhook events still pending")
