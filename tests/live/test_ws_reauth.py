"""Every operation started on an open WebSocket runs as the viewer its token names now: the
token is re-checked when the last check is older than ``ws_reauth_seconds``, so a query or a
mutation sent after ``logout`` is refused like one over HTTP with a revoked token (they
used to run as the signed-out user for as long as the socket stayed open)."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.conftest import StatementCounter
from tests.live.wsclient import GraphQLWS, expect_error
from vidgen import models
from vidgen.settings import Settings

VIEWER = "{ viewer { email } }"
PROJECTS = "{ projects { totalCount } }"
CREATE_PROJECT = "mutation P($name: String!) { createProject(input: {name: $name}) { name } }"
LOGOUT = "mutation { logout }"
FEED = "subscription { videoUpdates { id status } }"

# Longer than the interval and than a shared token check is reused (TOKEN_CHECK_TTL, 1 s).
PAST_THE_CHECK = 1.3


@pytest.fixture
def live_settings(live_settings: Settings) -> Settings:
    return live_settings.model_copy(update={"ws_reauth_seconds": 0.3})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def result(ws: GraphQLWS, query: str, variables: dict | None = None) -> dict:
    """The payload of a one-shot operation (query or mutation) on the socket."""
    op = await ws.subscribe(query, variables)
    message = await ws.receive(op, within=10)
    assert message["type"] in {"next", "data"}, message
    return message["payload"]


async def test_queries_and_mutations_on_an_open_socket_are_refused_after_logout(live, accounts):
    alice = await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        # Signed in: they run as alice, also after a re-check came due.
        for _ in range(2):
            assert (await result(ws, VIEWER))["data"]["viewer"]["email"] == alice.email
            created = await result(ws, CREATE_PROJECT, {"name": "before logout"})
            assert created["data"]["createProject"]["name"] == "before logout"
            await asyncio.sleep(PAST_THE_CHECK)

        response = await live.client.post(
            "/graphql", json={"query": LOGOUT}, headers={"Authorization": f"Bearer {alice.token}"}
        )
        assert response.json()["data"]["logout"] is True
        await asyncio.sleep(PAST_THE_CHECK)

        # As over HTTP with a revoked token: no viewer, protected fields UNAUTHENTICATED.
        assert (await result(ws, VIEWER))["data"]["viewer"] is None
        for query, variables in ((PROJECTS, None), (CREATE_PROJECT, {"name": "after logout"})):
            error = await expect_error(ws, await ws.subscribe(query, variables))
            assert error["extensions"]["code"] == "UNAUTHENTICATED", error
            assert "revoked" in error["message"]
        error = await expect_error(ws, await ws.subscribe(FEED))
        assert error["extensions"]["code"] == "UNAUTHENTICATED", error
        names = await models.Project.filter(owner_id=alice.user.id).values_list("name", flat=True)
        assert sorted(names) == ["before logout", "before logout"]  # nothing written after
    finally:
        await ws.close()


async def test_a_fresh_check_is_not_repeated_for_every_operation(live, accounts):
    alice = await accounts("alice@example.com")
    counter = StatementCounter()
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        with counter.counting():
            await asyncio.sleep(PAST_THE_CHECK)  # the connect-time check is stale now
            counter.reset()
            for _ in range(3):  # one after another: the first re-checks, the rest reuse it
                assert (await result(ws, VIEWER))["data"]["viewer"]["email"] == alice.email
            # Several at once share that check too.
            ops = [await ws.subscribe(VIEWER) for _ in range(5)]
            for op in ops:
                message = await ws.receive(op)
                assert message["payload"]["data"]["viewer"]["email"] == alice.email
        lookups = [s for s in counter.statements if "api_token" in s.lower()]
        # Exactly one token lookup (its once-a-minute last_used_at UPDATE aside).
        assert len([s for s in lookups if s.lstrip().upper().startswith("SELECT")]) == 1, lookups
        assert counter.count - len(lookups) == 0, counter.statements  # `viewer` needs no query
    finally:
        await ws.close()
