"""The lane of hot GraphQL requests (``RequestMiddleware`` in web/app.py): a JSON POST to
``/graphql`` with a declared length is answered from its document's plan straight from the
outermost layer. These tests send the same requests through the lane and around it (a
chunked body has no declared length, so it goes through the whole app) and compare."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.conftest import Account, LiveServer, StatementCounter
from tests.api.test_db_outage import database_outage
from vidgen.settings import Settings

VIEWER = "{ viewer { id email } }"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    # An async iterator body: httpx sends it chunked, without Content-Length.
    yield data[:5]
    yield data[5:]


async def _both(
    live_server: LiveServer, body: dict[str, object], token: str | None
) -> tuple[httpx.Response, httpx.Response]:
    """The request through the lane and the same request around it (chunked)."""
    data = json.dumps(body).encode()
    headers = {**live_server.headers(token), "content-type": "application/json"}
    lane = await live_server.client.post("/graphql", content=data, headers=headers)
    around = await live_server.client.post("/graphql", content=_chunks(data), headers=headers)
    assert "content-length" in lane.request.headers
    assert "content-length" not in around.request.headers
    return lane, around


def _token_checks(counter: StatementCounter) -> int:
    return sum(
        "api_tokens" in s and s.lstrip().upper().startswith("SELECT") for s in counter.statements
    )


async def test_the_lane_answers_what_the_whole_app_answers(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter
) -> None:
    plans = live_server.app.state.graphql_view.compiled
    for token in (alice.token, None, "vg_not-a-token"):
        before = plans.compiled
        with count_statements.counting() as counter:
            counter.reset()
            lane, around = await _both(live_server, {"query": VIEWER}, token)
        assert lane.status_code == around.status_code == 200
        assert lane.content == around.content, (lane.text, around.text)
        assert lane.headers["content-type"] == around.headers["content-type"]
        assert int(lane.headers["content-length"]) == len(lane.content)
        assert re.fullmatch(r"[0-9a-f]{32}", lane.headers["x-request-id"])
        # Both were answered from the plan, each with one token check at most.
        assert plans.compiled == before + 2
        assert _token_checks(counter) == (2 if token else 0)
    assert json.loads(lane.content)["data"]["viewer"] is None
    mine = await live_server.client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={**live_server.headers(alice.token), "X-Request-ID": "lane-1"},
    )
    assert mine.headers["x-request-id"] == "lane-1"
    assert mine.json()["data"]["viewer"]["email"] == alice.email


@pytest.mark.parametrize(
    ("query", "code"),
    [
        # No plan: introspection with a directive the plans do not cover.
        ("query Q($t: Boolean!) { viewer { id email @include(if: $t) } }", None),
        # A plan, which hands the request to Strawberry: a bad page size.
        ("{ videos(first: -1) { edges { node { id } } } }", "BAD_USER_INPUT"),
        # Not a document at all.
        ("{ viewer { id ", "BAD_USER_INPUT"),
    ],
)
async def test_what_the_lane_cannot_answer_the_whole_app_does_with_one_token_check(
    live_server: LiveServer,
    alice: Account,
    count_statements: StatementCounter,
    query: str,
    code: str | None,
) -> None:
    body = {"query": query, "variables": {"t": True}}
    with count_statements.counting() as counter:
        counter.reset()
        lane, around = await _both(live_server, body, alice.token)
    assert lane.status_code == around.status_code
    assert json.loads(lane.content) == json.loads(around.content)
    assert lane.headers["x-request-id"] and around.headers["x-request-id"]
    assert _token_checks(counter) == 2, counter.statements  # one per request
    answer = json.loads(lane.content)
    if code is None:
        assert answer["data"]["viewer"]["email"] == alice.email
    else:
        assert answer["errors"][0]["extensions"]["code"] == code, answer


async def test_a_body_over_the_limit_is_refused_before_the_lane_reads_it(
    live_server: LiveServer, alice: Account
) -> None:
    limit = live_server.settings.max_request_bytes
    query = json.dumps({"query": VIEWER, "pad": "x" * limit}).encode()
    headers = {**live_server.headers(alice.token), "content-type": "application/json"}
    response = await live_server.client.post("/graphql", content=query, headers=headers)
    assert response.status_code == 413 and response.headers["x-request-id"]


async def test_an_outage_in_the_lane_answers_503_with_the_request_id(
    live_server: LiveServer, alice: Account, db: Settings
) -> None:
    async with database_outage(db):
        response = await live_server.client.post(
            "/graphql",
            json={"query": VIEWER},
            headers={**live_server.headers(alice.token), "X-Request-ID": "outage-1"},
        )
    assert response.status_code == 503, response.text
    assert response.headers["x-request-id"] == "outage-1"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL"


async def test_a_request_answered_from_a_plan_leaves_no_garbage_cycle(
    live_server: LiveServer, alice: Account
) -> None:
    """Its context and request are freed when it ends, not by the garbage collector (a
    cycle per request made the collector run every few hundred requests at full load)."""
    from starlette.requests import Request

    from vidgen.graphql.context import Context

    generate = 'mutation { generateVideo(input: {prompt: "no cycles"}) { id status } }'
    documents = (VIEWER, "{ videos(first: 5) { edges { cursor node { id owner { id } } } } }")
    for query in (*documents, generate):
        body = await live_server.gql(query, token=alice.token)
        assert "errors" not in body, body
    gc.collect()
    flags = gc.get_debug()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        for query in (*documents, generate):
            for _ in range(5):
                await live_server.gql(query, token=alice.token)
        gc.collect()
        cycles = [o for o in gc.garbage if isinstance(o, Context | Request)]
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
        gc.enable()
    assert cycles == []
