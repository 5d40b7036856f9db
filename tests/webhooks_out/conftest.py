"""Fixtures of the outgoing-webhook tests: the app with webhooks to 127.0.0.1 allowed and
quick retries, a receiver over real HTTP, and the GraphQL documents they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from tests.api.conftest import (
    Account,
    LiveServer,
    alice,  # noqa: F401 - a fixture
    bob,  # noqa: F401 - a fixture
    start_live_server,
    user_factory,  # noqa: F401 - a fixture
)
from tests.webhooks_out.receiver import Receiver, receiving
from vidgen.settings import Settings

#: Receivers on 127.0.0.1 over http, retries within a fraction of a second. The receivers
#: answer at once: a short attempt timeout would only let a stalled process turn an answer
#: into a retry, which the tests counting attempts rightly fail on. The tests of the
#: timeout itself set :data:`SHORT_TIMEOUT`.
HOOK_SETTINGS: dict[str, Any] = {
    "webhook_allow_private": True,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_cap_seconds": 0.2,
    "webhook_timeout_seconds": 10.0,
    "webhook_poll_seconds": 0.05,
}
#: The attempt timeout of the tests whose receiver never answers in time.
SHORT_TIMEOUT = 1.0

GENERATE = """
mutation Generate($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id status version }
}
"""
DELIVERIES = """
query Deliveries($id: ID!) {
  video(id: $id) {
    id version status
    webhookDeliveries { eventId status version attempts lastError deliveredAt nextAttemptAt }
  }
}
"""
SECRET = "query Secret { viewer { id webhookSecret } }"
ROTATE = "mutation Rotate { rotateWebhookSecret }"


@pytest_asyncio.fixture
async def server(db: Settings) -> AsyncIterator[LiveServer]:
    """The app on a real port with :data:`HOOK_SETTINGS` (no worker runs)."""
    async with start_live_server(db, **HOOK_SETTINGS) as live:
        yield live


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


async def generate(server: LiveServer, account: Account, **fields: Any) -> dict[str, Any]:
    variables = {"input": {"provider": "test", **fields}}
    body = await server.gql(GENERATE, variables, token=account.token)
    assert "errors" not in body, body
    return body["data"]["generateVideo"]


async def deliveries(server: LiveServer, account: Account, video_id: str) -> dict[str, Any]:
    body = await server.gql(DELIVERIES, {"id": video_id}, token=account.token)
    assert "errors" not in body, body
    return body["data"]["video"]


async def secret_of(server: LiveServer, account: Account) -> str:
    body = await server.gql(SECRET, token=account.token)
    return body["data"]["viewer"]["webhookSecret"]
