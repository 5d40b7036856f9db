"""A webhook that arrives while PostgreSQL is unreachable asks the provider to retry.

The outage is real: the test's own database stops taking connections and its backends are
terminated (see tests/api/test_db_outage.py). PostgreSQL only: on SQLite nothing makes the
prediction's lookup (a read) fail while the file is there.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.api.test_db_outage import database_outage
from tests.jobs.conftest import awaiting_webhook
from vidgen.events.channels import job_channel
from vidgen.runtime import Runtime
from vidgen.settings import Settings

PREDICTION = "test1-db-down"


@pytest.mark.postgres_only
async def test_a_delivery_while_the_database_is_down_is_retried_not_dropped(
    runtime: Runtime,
    webhook_client: httpx.AsyncClient,
    db: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vidgen")
    video, post = await awaiting_webhook(runtime, webhook_client, PREDICTION)
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


async def test_only_the_lookups_outage_is_answered_503(
    runtime: Runtime, webhook_client: httpx.AsyncClient, db: Settings, monkeypatch
) -> None:
    # An OSError that is not the database's (here from routing the nudge) is a bug to see,
    # not a delivery for the provider to retry forever.
    from vidgen.jobs import webhooks

    video, post = await awaiting_webhook(runtime, webhook_client, PREDICTION)

    def broken(video_id: int) -> str:
        raise FileNotFoundError("not the database")

    monkeypatch.setattr(webhooks, "job_channel", broken)
    response = await post()
    assert response.status_code == 500
