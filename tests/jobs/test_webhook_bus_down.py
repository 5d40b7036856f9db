"""A webhook that arrives while Redis is down asks the provider to retry, and the retry counts.

Against a real, private redis-server (never the shared one on 6379): killed while the
delivery arrives, started again on the same port for the provider's retry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.jobs.conftest import awaiting_webhook
from tests.live.conftest import fast_bus
from tests.live.redis_server import RedisServer
from vidgen.events.channels import job_channel
from vidgen.events.local import RESYNC
from vidgen.events.redis import RedisBus
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.settings import Settings

PREDICTION = "test1-bus-down"


@pytest_asyncio.fixture
async def runtime(db: Settings, redis_server: RedisServer) -> AsyncIterator[Runtime]:
    bus = fast_bus(redis_server.url)
    rt = Runtime.create(db, bus=bus, providers={"test": TestProvider()})
    await rt.open()
    try:
        yield rt
    finally:
        await rt.close()


async def test_a_delivery_while_redis_is_down_is_retried_not_dropped(
    runtime: Runtime,
    redis_server: RedisServer,
    webhook_client: httpx.AsyncClient,
    db: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vidgen")
    video, post = await awaiting_webhook(runtime, webhook_client, PREDICTION)
    bus = runtime.bus
    assert isinstance(bus, RedisBus)

    async with bus.subscribe(job_channel(video.id)) as sub:
        redis_server.stop()
        response = await post()
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert sub.queue.empty()
        actions = [getattr(r, "action", None) for r in caplog.records]
        assert "webhook.undelivered" in actions
        assert "webhook.delivered" not in actions  # the log tells what happened
        assert "bus_publish_failed" not in actions  # no "event dropped" either

        # The provider retries once Redis is back: the retry is not taken for a replay.
        redis_server.start()
        assert await bus.wait_connected(within=10)
        response = await post()
        assert response.status_code == 200 and response.json()["known"] is True
        message = await sub.get()
        while message is RESYNC:  # the bus says it reconnected
            message = await sub.get()
        assert message["delivery_id"] == "msg_1" and message["state"] == "succeeded"

        # Delivered once: a replay of it now is the duplicate, without a second nudge.
        response = await post()
        assert response.status_code == 200
        assert sub.queue.empty()
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions.count("webhook.delivered") == 1
    assert actions.count("webhook.duplicate") == 1
