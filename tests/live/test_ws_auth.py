"""WebSocket authorization: connection_init auth, close codes, ownership, revocation,
legacy graphql-ws off by default (and just as strict when a setting turns it on)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import InvalidHandshake

from tests.live.conftest import gid, make_video
from tests.live.wsclient import LEGACY_WS, TRANSPORT_WS, Closed, GraphQLWS, expect_error
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus
from vidgen.services import users

WATCH = "subscription W($id: ID!) { videoUpdated(id: $id) { id status version } }"
FEED = "subscription { videoUpdates { id status version } }"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused_code(url: str, payload: dict | None, protocol: str = TRANSPORT_WS) -> int | None:
    ws = await GraphQLWS.open(url, protocol=protocol)
    try:
        with pytest.raises(Closed) as refused:
            await ws.init(payload)
        if refused.value.code is None:  # legacy: connection_error first, then the close
            await asyncio.wait_for(ws.ws.wait_closed(), 5)
            return ws.ws.close_code
        return refused.value.code
    finally:
        await ws.close()


async def test_connection_init_without_or_with_bad_token_is_refused(live, accounts):
    alice = await accounts("alice@example.com")
    assert await refused_code(live.ws_url, None) == 4403
    assert await refused_code(live.ws_url, {"Authorization": ""}) == 4403
    assert await refused_code(live.ws_url, bearer("vg_not-a-real-token")) == 4403
    assert await refused_code(live.ws_url, {"Authorization": alice.token}) == 4403  # no scheme
    await users.revoke_token(token=alice.token)
    assert await refused_code(live.ws_url, bearer(alice.token)) == 4403


async def test_lowercase_authorization_key_works(live, accounts):
    alice = await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init({"authorization": f"Bearer {alice.token}"})
        op = await ws.subscribe(FEED)
        await asyncio.sleep(0.2)
        assert ws.queues[op].empty()  # live and quiet: no error
    finally:
        await ws.close()


async def test_subscribe_before_init_closes_4401(live, accounts):
    await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.subscribe(FEED, op_id="early")
        with pytest.raises(Closed) as closed:
            await ws.init(None)
        assert closed.value.code == 4401
    finally:
        await ws.close()


async def test_someone_elses_video_does_not_exist(live, accounts):
    alice = await accounts("alice@example.com")
    bob = await accounts("bob@example.com")
    video = await make_video(alice.user)
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(bob.token))
        for video_gid in (gid("Video", video.id), gid("Video", 999_999), gid("Project", 1)):
            op = await ws.subscribe(WATCH, {"id": video_gid})
            error = await expect_error(ws, op)
            assert error["extensions"]["code"] == "NOT_FOUND"
            assert error["message"] == "No video with that id."
        # And bob's feed does not carry alice's changes.
        op = await ws.subscribe(FEED)
        await asyncio.sleep(0.1)
        await lifecycle.transition(
            video.id, VideoStatus.PROCESSING, actor="t", bus=live.runtime.bus
        )
        with pytest.raises(TimeoutError):
            await ws.receive(op, within=0.5)
    finally:
        await ws.close()


async def test_revoked_token_ends_its_subscriptions(live, accounts, monkeypatch):
    monkeypatch.setattr(live.runtime.settings, "ws_reauth_seconds", 0.2)
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        watch = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        feed = await ws.subscribe(FEED)
        assert (await ws.next_data(watch, "videoUpdated"))["status"] == "QUEUED"
        await users.revoke_token(token=alice.token)
        for op in (watch, feed):
            error = await expect_error(ws, op, within=15)
            assert error["extensions"]["code"] == "UNAUTHENTICATED"
        # The socket's identity is gone too: a new subscription is refused.
        op = await ws.subscribe(FEED)
        error = await expect_error(ws, op, within=15)
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        await ws.close()


async def test_legacy_graphql_ws_is_off_by_default(live, accounts):
    alice = await accounts("alice@example.com")
    try:
        ws = await GraphQLWS.open(live.ws_url, protocol=LEGACY_WS)
    except InvalidHandshake:
        return  # refused at the handshake: fine too
    try:
        with pytest.raises(Closed) as closed:
            await ws.init(bearer(alice.token))
        assert closed.value.code == 4406  # "Subprotocol not acceptable"
    finally:
        await ws.close()


_Q = {"query": "{ viewer { id } }"}


@pytest.mark.parametrize(
    "message",
    [
        "null",
        "[1, 2]",
        "5",
        '{"type": 5}',
        "[" * 100_000,  # deeper than the JSON parser goes
        *(
            json.dumps(m)
            for m in (
                {"id": "1", "type": "subscribe", "payload": None},
                {"id": "1", "type": "subscribe", "payload": "x"},
                {"id": "1", "type": "subscribe", "payload": {"query": 5}},
                {"id": 1, "type": "subscribe", "payload": {"query": FEED}},
                {"id": "1", "type": "subscribe", "payload": {**_Q, "variables": [1]}},
                {"id": "1", "type": "subscribe", "payload": {**_Q, "extensions": [1]}},
                {"id": "1", "type": "subscribe", "payload": {**_Q, "operationName": 5}},
                {"id": 5, "type": "complete"},
            )
        ),
    ],
)
@pytest.mark.sqlite_only  # the message checks come before any database or bus work
@pytest.mark.parametrize("bus_kind", ["memory"])
async def test_a_malformed_message_closes_4400_with_a_reason(live, accounts, message: str):
    """The protocol's answer to an invalid message; they used to drop the socket without a
    close code, or leave the operation unanswered."""
    alice = await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        await ws.ws.send(message)
        await asyncio.wait_for(ws.ws.wait_closed(), 5)
        assert ws.ws.close_code == 4400, (message, ws.ws.close_code, ws.ws.close_reason)
        assert ws.ws.close_reason
    finally:
        await ws.close()
