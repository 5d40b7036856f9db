"""A webhook that arrives while PostgreSQL is unreachable asks the provider to retry.

The outage is real: the test's own database stops taking connections and its backends are
terminated (see tests/api/test_db_outage.py). PostgreSQL only: on SQLite nothing makes the
prediction's lookup (a read) fail while the file is there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from tests.api.test_db_outage import database_outage
from tests.jobs.conftest import make_video
from vidgen.events.bus import job_channel
from vidgen.models import User, Video
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.settings import Settings
from vidgen.web.webhooks import webhook_routes

PREDICTION = "test1-db-down"


@pytest_asyncio.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=webhook_routes(runtime))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.postgres_only
async def test_a_delivery_while_the_database_is_down_is_retried_not_dropped(
    runtime: Runtime,
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

    async def post() -> httpx.Response:
        return await client.post(
            "/webhooks/test", content=body, headers=provider.sign_webhook(body)
        )

    async with runtime.bus.subscribe(job_channel(video.id)) as sub:
        async with database_outage(db):
            response = await post()
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
        assert sub.queue.empty()
        assert any(
            r.getMessage() == "webhook deferred: database unavailable" for r in caplog.records
        )
        # The provider's retry, once the database is back: not taken for a replay.
        again = await post()
        assert again.status_code == 200 and again.json() == {"ok": True, "known": True}
        message = await sub.get()
        assert message["prediction_id"] == PREDICTION and message["delivery_id"] == "msg_1"
