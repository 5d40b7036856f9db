"""A webhook that arrives while Redis is down asks the provider to retry, and the retry counts.

Against a real, private redis-server (never the shared one on 6379): killed while the
delivery arrives, started again on the same port for the provider's retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from tests.jobs.conftest import make_video
from tests.live.conftest import fast_bus
from tests.live.redis_server import RedisServer
from vidgen.events.bus import RESYNC, job_channel
from vidgen.events.redis import RedisBus
from vidgen.models import User, Video
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.settings import Settings
from vidgen.web.webhooks import webhook_routes

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


@pytest_asyncio.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=webhook_routes(runtime))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_a_delivery_while_redis_is_down_is_retried_not_dropped(
    runtime: Runtime,
    redis_server: RedisServer,
    client: httpx.AsyncClient,
    db: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vidgen")
    user = await User.create(email="owner@example.com", password_hash="x")
    video = await make_video(user)
    await Video.filter(id=video.id).update(prediction_id=PREDICTION)
    provider = runtime.providers["test"]
    assert isinstance(provider, TestProvider)
    body = json.dumps(
        {"prediction_id": PREDICTION, "delivery_id": "msg_1", "state": "succeeded"}
    ).encode()
    bus = runtime.bus
    assert isinstance(bus, RedisBus)

    async def post() -> httpx.Response:
        return await client.post(
            "/webhooks/test", content=body, headers=provider.sign_webhook(body)
        )

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
