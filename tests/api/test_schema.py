"""The schema file, error codes and masking, query limits, GraphiQL and WebSocket auth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, start_live_server
from vidgen.graphql.schema import build_schema, schema, sdl
from vidgen.services import catalog

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_running_schema() -> None:
    assert SCHEMA_FILE.read_text() == sdl(schema), (
        "schema.graphql is stale: run `vidgen export-schema`"
    )


def test_contract_names_exist() -> None:
    """A few of the public names docs/contract.md promises, as the SDL prints them."""
    text = sdl(schema)
    for name in (
        "viewer: User",
        "node(id: ID!): Node",
        "video(id: ID!): Video",
        "videos(first: Int = null, after: String = null, filter: VideoFilter = null): "
        "VideoConnection!",
        "register(input: RegisterInput!): AuthPayload!",
        "generateVideo(input: GenerateVideoInput!): Video!",
        "restoreVideo(id: ID!): Video!",
        "providers: [ProviderInfo!]!",
        "enum VideoStatus",
        "enum OutputFormat",
    ):
        assert name in text, name


async def test_unexpected_errors_are_masked_and_logged(
    live_server: LiveServer,
    alice: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*, viewer):
        raise KeyError("password_hash column in /srv/vidgen/secret.py")

    monkeypatch.setattr(catalog, "list_tags", broken)
    with caplog.at_level(logging.ERROR, logger="vidgen.graphql.errors"):
        response = await live_server.post("query { tags { name } }", token=alice.token)
    assert response.status_code == 200
    body = response.json()
    error = d.only_error(body)
    assert error["message"] == "Internal server error."
    assert error["extensions"]["code"] == "INTERNAL"
    assert "password_hash" not in response.text and "KeyError" not in response.text
    records = [r for r in caplog.records if r.exc_info]
    assert records, "the trace must be logged"
    assert "password_hash" in str(records[0].exc_info[1])
    assert error["extensions"]["errorId"] in records[0].getMessage()


async def test_parse_and_validation_errors_carry_a_code(live_server: LiveServer) -> None:
    for query in (
        "query {",
        "query { noSuchField }",
        'query { videos(first: "x") { totalCount } }',
    ):
        body = await live_server.gql(query)
        assert d.error_codes(body) == ["BAD_USER_INPUT"], (query, body)


async def test_depth_alias_and_token_limits(db, alice: Account) -> None:
    async with start_live_server(
        db, max_query_depth=5, max_query_aliases=3, max_query_tokens=200
    ) as server:
        t = alice.token
        shallow = await server.gql("query { videos { edges { node { id } } } }", token=t)
        assert "errors" not in shallow, shallow

        deep = (
            "query { videos { edges { node { project { videos { edges { node { id } } } } } } } }"
        )
        body = await server.gql(deep, token=t)
        assert d.error_codes(body) == ["BAD_USER_INPUT"]
        assert "depth" in d.only_error(body)["message"]

        aliases = "query { " + " ".join(f"a{i}: viewer {{ id }}" for i in range(4)) + " }"
        body = await server.gql(aliases, token=t)
        assert d.error_codes(body) == ["BAD_USER_INPUT"]
        assert "aliases" in d.only_error(body)["message"]

        tokens = "query { " + " ".join("viewer { id }" for _ in range(60)) + " }"
        body = await server.gql(tokens, token=t)
        assert d.error_codes(body) == ["BAD_USER_INPUT"]
        assert "token" in d.only_error(body)["message"].lower()

        # Introspection (what GraphiQL sends) is not cut off by the depth limit.
        from graphql import get_introspection_query

        server.settings.max_query_tokens = 2000
        async with start_live_server(db, max_query_depth=5) as again:
            body = await again.gql(get_introspection_query())
            assert "errors" not in body and body["data"]["__schema"]


async def test_graphiql_follows_the_setting(db) -> None:
    async with start_live_server(db, graphiql=True) as server:
        page = await server.client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
    async with start_live_server(db, graphiql=False) as server:
        page = await server.client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code != 200 or "graphiql" not in page.text.lower()


async def _ws_init(server: LiveServer, payload: dict | None, subprotocol="graphql-transport-ws"):
    async with connect(server.ws_url, subprotocols=[subprotocol]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        try:
            return json.loads(await ws.recv())
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def test_websocket_authenticates_connection_init(
    live_server: LiveServer, alice: Account
) -> None:
    assert await _ws_init(live_server, {"Authorization": f"Bearer {alice.token}"}) == {
        "type": "connection_ack"
    }
    assert await _ws_init(live_server, {"authorization": f"Bearer {alice.token}"}) == {
        "type": "connection_ack"
    }
    assert await _ws_init(live_server, {}) == 4403
    assert await _ws_init(live_server, {"Authorization": "Bearer vg_wrong"}) == 4403
    # The legacy protocol is off unless the setting enables it.
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        async with connect(live_server.ws_url, subprotocols=["graphql-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.recv()


def test_schema_limits_come_from_settings() -> None:
    from vidgen.settings import Settings

    strict = build_schema(Settings(_env_file=None, max_query_depth=2))
    result = strict.execute_sync("query { videos { edges { node { id } } } }")
    assert result.errors and "depth" in result.errors[0].message
