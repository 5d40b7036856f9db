"""Browser origins allowed to open the GraphQL WebSocket come from VIDGEN_WS_ALLOWED_ORIGINS."""

from __future__ import annotations

import json

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.api.conftest import start_live_server

PROTOCOL = "graphql-transport-ws"


async def _acked(url: str, token: str, origin: str | None) -> bool:
    """True when the handshake is accepted and connection_init is acknowledged."""
    try:
        async with connect(url, subprotocols=[PROTOCOL], origin=origin, open_timeout=5) as ws:
            payload = {"Authorization": f"Bearer {token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            return json.loads(await ws.recv())["type"] == "connection_ack"
    except (InvalidStatus, ConnectionClosed):
        return False


async def test_foreign_origins_are_refused_unless_configured(db, alice) -> None:
    async with start_live_server(db) as server:
        assert await _acked(server.ws_url, alice.token, None)  # no Origin: not a browser
        assert not await _acked(server.ws_url, alice.token, "https://evil.example")
    async with start_live_server(db, ws_allowed_origins=["https://app.example"]) as server:
        assert await _acked(server.ws_url, alice.token, "https://app.example")
        assert not await _acked(server.ws_url, alice.token, "https://evil.example")
