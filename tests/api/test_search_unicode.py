"""``videos(filter: {search})`` ignores case beyond ASCII on both backends (SQLite's LIKE
folds ASCII only), through the compiled plans' statements as through Tortoise's own query,
in the same number of statements; the text is matched literally."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen.graphql import pagination
from vidgen.graphql.compiled import statements
from vidgen.models import Video
from vidgen.runtime import Runtime
from vidgen.services import videos
from vidgen.settings import Settings

SEARCH = """
query Search($search: String) {
  videos(first: 10, filter: {search: $search}) { totalCount edges { node { prompt } } }
}
"""


@pytest_asyncio.fixture
async def made(db: Settings, alice: Account) -> AsyncIterator[dict[str, Video]]:
    runtime = Runtime.create(db)
    try:
        made = {}
        for prompt, caption in (
            ("ÉCOLE straße", None),
            ("a plain cat", "ΣΟΦΊΑ in Москва"),
            ("100% _under_ \\slash", "Ünïcödé"),
            ("naïve [a+b]*", "x"),
        ):
            made[prompt] = await videos.generate_video(
                runtime=runtime, viewer=alice.user, prompt=prompt, caption=caption
            )
        yield made
    finally:
        await runtime.close()


CASES = {
    "école": ["ÉCOLE straße"],
    "ÉCOLE": ["ÉCOLE straße"],
    "Straße": ["ÉCOLE straße"],
    "σοφία": ["a plain cat"],
    "москва": ["a plain cat"],
    "ünïcödé": ["100% _under_ \\slash"],
    "100%": ["100% _under_ \\slash"],
    "_UNDER_ \\": ["100% _under_ \\slash"],
    "%": ["100% _under_ \\slash"],
    "_": ["100% _under_ \\slash"],
    "ecole": [],
    "NAÏVE [A+B]*": ["naïve [a+b]*"],
    "ï.": [],
    "[a+b]*": ["naïve [a+b]*"],
    "cat": ["a plain cat"],
}


async def test_search_ignores_case_beyond_ascii(made: dict[str, Video], alice: Account) -> None:
    for text, expected in CASES.items():
        listed = videos.video_list(viewer=alice.user, search=text)
        slow = await pagination.fetch_page(listed.queryset(), first=10, after=None)
        where = statements.video_filters(listed)
        rows = await statements.page('v."prompt"', "", where, None, 11, with_count=True)
        assert sorted(row[0] for row in rows) == expected, text
        assert all(row[1] == len(expected) for row in rows), text
        assert sorted(v.prompt for v in slow.rows) == expected, text
        assert await listed.count() == len(expected), text


async def test_search_over_graphql_in_as_many_statements(
    made: dict[str, Video],
    live_server: LiveServer,
    alice: Account,
    count_statements: StatementCounter,
) -> None:
    await live_server.gql(SEARCH, {"search": None}, token=alice.token)  # token use recorded
    counts = {}
    for text in (None, "cat", "école"):
        with count_statements.counting() as counter:
            counter.reset()
            body = await live_server.gql(SEARCH, {"search": text}, token=alice.token)
        assert "errors" not in body, body
        counts[text] = counter.count
    assert body["data"]["videos"]["totalCount"] == 1
    assert [e["node"]["prompt"] for e in body["data"]["videos"]["edges"]] == ["ÉCOLE straße"]
    assert counts[None] == counts["cat"] == counts["école"], count_statements.statements
