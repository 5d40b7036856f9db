"""A database outage while a request's token is checked: a GraphQL answer, never a bare 500.

The outage is real, not mocked: on PostgreSQL the test's own database stops taking
connections (``ALLOW_CONNECTIONS false``) and its backends are terminated; on SQLite another
connection holds the write lock (the first use of a token records ``last_used_at``), with a
short busy timeout so the lookup gives up quickly. The database is the test's own copy on
both backends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import pytest
from tortoise.connection import get_connection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import Account, LiveServer, start_live_server
from tests.conftest import PG_ADMIN_URL
from vidgen.settings import Settings

VIEWER = "query Viewer { viewer { id email } }"
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


@contextlib.asynccontextmanager
async def database_outage(settings: Settings) -> AsyncIterator[None]:
    """The test's database refuses the app's statements until the block ends."""
    url = str(settings.database_url)
    if url.startswith("sqlite"):
        app_connection = get_connection("default")
        await app_connection.execute_script("PRAGMA busy_timeout = 200")
        holder = sqlite3.connect(url.removeprefix("sqlite://"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        await admin.close()


def _outage_logged(caplog: pytest.LogCaptureFixture, error_id: str | None = None) -> bool:
    return any(
        getattr(record, "action", None) == "graphql.auth_unavailable"
        and record.exc_info is not None
        and (error_id is None or getattr(record, "error_id", None) == error_id)
        for record in caplog.records
    )


async def test_http_request_answers_a_graphql_error_during_an_outage(
    live_server: LiveServer, alice: Account, db: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="vidgen")
    async with database_outage(db):
        response = await live_server.post(VIEWER, token=alice.token)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert "data" not in body  # nothing ran
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INTERNAL"
    assert "Traceback" not in response.text and "asyncpg" not in response.text
    assert "sqlite" not in response.text.lower()
    assert _outage_logged(caplog, error["extensions"]["errorId"])
    # Back to normal once the database is.
    body = await live_server.gql(VIEWER, token=alice.token)
    assert body["data"]["viewer"]["email"] == alice.email


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_websocket_init_closes_with_try_again_later_during_an_outage(
    db: Settings, alice: Account, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="vidgen")
    async with start_live_server(db, legacy_graphql_ws=True) as server:
        async with connect(server.ws_url, subprotocols=[protocol], open_timeout=5) as ws:
            payload = {"Authorization": f"Bearer {alice.token}"}
            async with database_outage(db):
                await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
                messages = []
                with pytest.raises(ConnectionClosed):
                    while True:
                        messages.append(json.loads(await ws.recv()))
            assert ws.close_code == 1013, (ws.close_code, ws.close_reason)
            assert ws.close_reason == "database unavailable; try again later"
        if protocol == LEGACY_WS:  # the legacy protocol says why in a message first
            [message] = messages
            assert message["type"] == "connection_error"
            assert message["payload"]["code"] == "INTERNAL"
        else:
            assert messages == []
        assert _outage_logged(caplog)
        # The same token is accepted again once the database is back.
        async with connect(server.ws_url, subprotocols=[protocol], open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"


async def test_a_token_check_failing_for_another_reason_is_a_500_not_try_again(
    live_server: LiveServer, alice: Account, db: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Not an outage (here the tokens table is gone: a broken deployment, a bug): the same
    INTERNAL body, but 500 without Retry-After, since retrying will not help."""
    caplog.set_level(logging.ERROR, logger="vidgen")
    await get_connection("default").execute_script("DROP TABLE api_tokens")
    response = await live_server.post(VIEWER, token=alice.token)
    assert response.status_code == 500, response.text
    assert "retry-after" not in response.headers
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "INTERNAL"
    assert "api_tokens" not in response.text
    assert _outage_logged(caplog, error["extensions"]["errorId"])
