"""Running the delivery loop, or a whole worker, in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.faults.conftest import vidgen_env
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
    # Bounded by the clock, not by a count of loops: on a loaded machine each query can take
    # far longer than the sleep between them.
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if not await WebhookDelivery.filter(state=DeliveryState.PENDING).exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("webhook events still pending")


def worker_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``vidgen worker`` subprocess delivering to 127.0.0.1 quickly."""
    values = dict(
        VIDGEN_DATABASE_URL=database_url,
        VIDGEN_SECRET_KEY="webhook-test-secret",
        VIDGEN_DATA_DIR=str(tmp_path / "data"),
        VIDGEN_MEDIA_ROOT=str(tmp_path / "media"),
        VIDGEN_ENABLE_TEST_PROVIDER="true",
        VIDGEN_LEASE_SECONDS="3",
        VIDGEN_HEARTBEAT_SECONDS="0.5",
        VIDGEN_WORKER_POLL_SECONDS="0.2",
        VIDGEN_RETRY_BASE_SECONDS="0.05",
        VIDGEN_WEBHOOK_ALLOW_PRIVATE="true",
        VIDGEN_WEBHOOK_POLL_SECONDS="0.1",
        VIDGEN_WEBHOOK_RETRY_BASE_SECONDS="0.05",
        VIDGEN_WEBHOOK_RETRY_CAP_SECONDS="0.5",
        VIDGEN_LOG_LEVEL="WARNING",
        VIDGEN_LOG_JSON="true",
    )
    return vidgen_env(**{**values, **extra})
