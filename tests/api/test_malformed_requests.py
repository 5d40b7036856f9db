"""Malformed requests a hostile or buggy client sends are the client's error, never a 500 or
INTERNAL, on both backends, and write nothing (found by an adversarial pass by hand)."""

from __future__ import annotations

import json

import pytest

from tests.api import documents as d
from tests.api.conftest import row_counts
from tests.api.test_uploads import png

GENERATE = "mutation($i: GenerateVideoInput!) { generateVideo(input: $i) { id } }"


def _raw(text: str) -> bytes:
    """A JSON body with escapes written by hand (a lone surrogate cannot be encoded)."""
    return text.encode()


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        (
            "mutation($s: String!) { createProject(input: {name: $s}) { id } }",
            '{"s": "\\ud800"}',
            "s",
        ),
        (GENERATE, '{"i": {"prompt": "a\\udfffb"}}', "i.prompt"),
        (GENERATE, '{"i": {"prompt": "ok", "tags": ["x", "\\ud83d"]}}', "i.tags"),
        (
            'mutation($p: [String!]!) { createStory(input: {title: "t", paragraphs: $p}) { id } }',
            '{"p": ["\\ud800"]}',
            "p",
        ),
        (
            "query($s: String) { videos(filter: {search: $s}) { totalCount } }",
            '{"s": "\\ud800"}',
            "s",
        ),
        (
            'mutation($e: String!) { login(input: {email: $e, password: "pw"}) { token } }',
            '{"e": "\\ud800@x.io"}',
            "e",
        ),
    ],
)
async def test_unpaired_surrogates_are_bad_user_input(
    live_server, alice, query: str, variables: str, field: str
) -> None:
    before = await row_counts()
    body = _raw(f'{{"query": {json.dumps(query)}, "variables": {variables}}}')
    response = await live_server.client.post(
        "/graphql",
        content=body,
        headers={**live_server.headers(alice.token), "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    error = d.only_error(response.json())
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error
    assert "surrogate" in error["message"]
    assert await row_counts() == before


async def test_paired_surrogates_are_ordinary_text(live_server, alice) -> None:
    body = _raw(
        '{"query": "mutation($s: String!) { createProject(input: {name: $s}) { name } }", '
        '"variables": {"s": "fox \\ud83e\\udd8a"}}'
    )
    response = await live_server.client.post(
        "/graphql",
        content=body,
        headers={**live_server.headers(alice.token), "content-type": "application/json"},
    )
    assert response.json() == {"data": {"createProject": {"name": "fox \U0001f98a"}}}


async def test_a_login_email_longer_than_any_account_is_just_wrong(live_server) -> None:
    body = await live_server.gql(
        'mutation($e: String!) { login(input: {email: $e, password: "pw"}) { token } }',
        {"e": "a" * 1000 + "@example.com"},
    )
    assert d.error_codes(body) == ["UNAUTHENTICATED"], body


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "9999-12-31T20:00:00-04:00"])
async def test_scheduled_at_beyond_year_9999_in_utc_is_bad_user_input(
    live_server, alice, when: str
) -> None:
    before = await row_counts()
    body = await live_server.gql(
        GENERATE, {"i": {"prompt": "x", "scheduledAt": when}}, token=alice.token
    )
    error = d.only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "scheduledAt"}, body
    assert await row_counts() == before


@pytest.mark.sqlite_only  # refused before any database work
@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"123",
        b"true",
        b'"s"',
        b"[1]",
        b'{"query": 5}',
        b"[[[" * 50_000,
        b'{"query": "{ viewer { id } }", "variables": {"s": "caf\xe9"}}',  # Latin-1, not UTF-8
        b'\xff\xfe{"query": 1}',
    ],
)
async def test_a_body_that_is_no_graphql_request_is_400(live_server, alice, body: bytes) -> None:
    response = await live_server.client.post(
        "/graphql",
        content=body,
        headers={**live_server.headers(alice.token), "content-type": "application/json"},
    )
    assert response.status_code == 400, (body[:20], response.status_code, response.text)
    # The connection stays usable.
    assert (await live_server.gql(d.VIEWER, token=alice.token))["data"]["viewer"]


@pytest.mark.sqlite_only  # refused before any database work
@pytest.mark.parametrize(
    ("operations", "file_map"),
    [
        (None, "[1]"),
        (None, '{"0": [1]}'),
        (None, '{"0": ["variables.f.0"]}'),
        ("null", '{"0": ["variables.f"]}'),
        ("1", '{"0": ["variables.f"]}'),
        ('{"query": "{ viewer { id } }", "variables": {"a": [1]}}', '{"0": ["variables.a.x"]}'),
    ],
)
async def test_malformed_multipart_parts_are_400(
    live_server, alice, operations: str | None, file_map: str
) -> None:
    before = await row_counts()
    if operations is None:
        operations = json.dumps(
            {
                "query": "mutation($f: Upload!) { generateVideo(input: "
                '{prompt: "p", inputImage: $f}) { id } }',
                "variables": {"f": None},
            }
        )
    response = await live_server.client.post(
        "/graphql",
        data={"operations": operations, "map": file_map},
        files={"0": ("x.png", png(), "image/png")},
        headers={**live_server.headers(alice.token), "Apollo-Require-Preflight": "true"},
    )
    assert response.status_code == 400, (operations, file_map, response.text)
    assert await row_counts() == before


@pytest.mark.sqlite_only  # refused before any database work
async def test_a_subscription_over_http_is_400_pointing_to_websocket(live_server, alice) -> None:
    for method in ("POST", "GET"):
        query = 'subscription { videoUpdated(id: "VmlkZW86MQ==") { id } }'
        if method == "POST":
            response = await live_server.post(query, token=alice.token)
        else:
            response = await live_server.client.get(
                "/graphql", params={"query": query}, headers=live_server.headers(alice.token)
            )
        assert response.status_code == 400, (method, response.text)
        assert "WebSocket" in response.text
    # A query that merely mentions the word, or names a non-subscription operation, runs.
    response = await live_server.client.post(
        "/graphql",
        json={
            "query": 'query Q { videos(filter: {search: "subscription"}) { totalCount } } '
            "subscription S { videoUpdates { id } }",
            "operationName": "Q",
        },
        headers=live_server.headers(alice.token),
    )
    assert response.json() == {"data": {"videos": {"totalCount": 0}}}, response.text


async def test_one_file_mapped_to_two_variables_serves_both(live_server, alice) -> None:
    """The multipart spec lets one file fill several variables; the second use used to read
    it empty, failing its mutation after the first one had written its video."""
    query = (
        "mutation($f: Upload!, $g: Upload!) {"
        ' a: generateVideo(input: {prompt: "a", inputImage: $f}) { id inputImageUrl }'
        ' b: generateVideo(input: {prompt: "b", inputImage: $g}) { id inputImageUrl } }'
    )
    response = await live_server.client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": query, "variables": {"f": None, "g": None}}),
            "map": json.dumps({"0": ["variables.f", "variables.g"]}),
        },
        files={"0": ("x.png", png(), "image/png")},
        headers={**live_server.headers(alice.token), "Apollo-Require-Preflight": "true"},
    )
    body = response.json()
    assert "errors" not in body, body
    a, b = body["data"]["a"], body["data"]["b"]
    assert a["id"] != b["id"] and a["inputImageUrl"] and b["inputImageUrl"]
