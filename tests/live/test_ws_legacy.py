"""With VIDGEN_LEGACY_GRAPHQL_WS=true the legacy ``graphql-ws`` protocol is served, and the
same authentication rules hold (its pre-0.312.3 bypass, start before init, stays closed)."""

from __future__ import annotations

import asyncio

import pytest

from tests.live.conftest import gid, make_video
from tests.live.wsclient import LEGACY_WS, Closed, GraphQLWS, expect_error
from vidgen.jobs import lifecycle
from vidgen.models import Project, VideoStatus
from vidgen.services import users
from vidgen.settings import Settings

WATCH = "subscription W($id: ID!) { videoUpdated(id: $id) { id status version } }"


# The protocol, not the database, is under test here: one backend is enough.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def live_settings(live_settings: Settings) -> Settings:
    return live_settings.model_copy(update={"legacy_graphql_ws": True})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(url: str, payload: dict | None) -> tuple[str, int | None]:
    """connection_error's message and the close code."""
    ws = await GraphQLWS.open(url, protocol=LEGACY_WS)
    try:
        with pytest.raises(Closed) as closed:
            await ws.init(payload)
        await asyncio.wait_for(ws.ws.wait_closed(), 5)
        return closed.value.reason, ws.ws.close_code
    finally:
        await ws.close()


async def test_legacy_refuses_missing_bad_and_revoked_tokens(live, accounts):
    alice = await accounts("alice@example.com")
    for payload in (None, {"Authorization": ""}, bearer("vg_nope"), {"authorization": "x"}):
        reason, code = await refused(live.ws_url, payload)
        assert "UNAUTHENTICATED" in reason and code == 1011  # the legacy protocol's refusal
    await users.revoke_token(token=alice.token)
    reason, code = await refused(live.ws_url, bearer(alice.token))
    assert "UNAUTHENTICATED" in reason


async def test_legacy_start_before_init_is_closed_4401(live, accounts):
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    ws = await GraphQLWS.open(live.ws_url, protocol=LEGACY_WS)
    try:
        await ws.subscribe(WATCH, {"id": gid("Video", video.id)}, op_id="sneaky")
        await asyncio.wait_for(ws.ws.wait_closed(), 5)
        assert ws.ws.close_code == 4401
        assert ws.queues["sneaky"].empty()
    finally:
        await ws.close()


async def test_legacy_serves_the_owner_and_hides_others_videos(live, accounts):
    alice = await accounts("alice@example.com")
    bob = await accounts("bob@example.com")
    video = await make_video(alice.user)

    ws = await GraphQLWS.open(live.ws_url, protocol=LEGACY_WS)
    try:
        await ws.init(bearer(bob.token))
        error = await expect_error(ws, await ws.subscribe(WATCH, {"id": gid("Video", video.id)}))
        assert error["extensions"]["code"] == "NOT_FOUND"
    finally:
        await ws.close()

    ws = await GraphQLWS.open(live.ws_url, protocol=LEGACY_WS)
    try:
        await ws.init({"authorization": f"Bearer {alice.token}"})
        op = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        assert (await ws.next_data(op, "videoUpdated"))["status"] == "QUEUED"
        bus = live.runtime.bus
        await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t", bus=bus)
        assert (await ws.next_data(op, "videoUpdated"))["status"] == "PROCESSING"
    finally:
        await ws.close()


async def test_legacy_refuses_queries_and_mutations_as_bad_input(live, accounts):
    # Only subscriptions run over the legacy protocol here; a query or mutation used to be
    # answered INTERNAL (Strawberry's refusal was not recognised as the client's mistake).
    alice = await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url, protocol=LEGACY_WS)
    try:
        await ws.init(bearer(alice.token))
        for document in (
            "{ viewer { email } }",
            'mutation { createProject(input: {name: "x"}) { name } }',
        ):
            message = await ws.receive(await ws.subscribe(document), 10)
            assert message["type"] == "error", message
            error = message["payload"]  # one error object in the legacy protocol
            assert error["extensions"]["code"] == "BAD_USER_INPUT", error
            assert "graphql-transport-ws" in error["message"]
    finally:
        await ws.close()
    assert not await Project.filter(owner_id=alice.user.id).exists()
