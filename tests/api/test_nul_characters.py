"""NUL characters in any text input are BAD_USER_INPUT on both backends (PostgreSQL text
cannot hold them) and nothing is written."""

from __future__ import annotations

import pytest

from tests.api.conftest import row_counts

CASES = [
    ('mutation { generateVideo(input: {prompt: "a\\u0000b"}) { id } }', None, "input.prompt"),
    (
        "mutation($i: GenerateVideoInput!) { generateVideo(input: $i) { id } }",
        {"i": {"prompt": "ok", "tags": ["x\x00"]}},
        "i.tags",
    ),
    ('mutation { createProject(input: {name: "a\\u0000"}) { id } }', None, "input.name"),
    ('{ videos(filter: {search: "a\\u0000"}) { totalCount } }', None, "filter.search"),
    ('{ video(id: "\\u0000") { id } }', None, "id"),
]


@pytest.mark.parametrize(("query", "variables", "field"), CASES)
async def test_nul_in_any_input_is_bad_user_input(
    live_server, alice, query: str, variables, field: str
) -> None:
    before = await row_counts()
    body = await live_server.gql(query, variables, token=alice.token)
    error = body["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert await row_counts() == before


async def test_nul_in_login_is_bad_user_input_too(live_server) -> None:
    body = await live_server.gql(
        'mutation { login(input: {email: "a\\u0000@x.io", password: "pw"}) { token } }'
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
