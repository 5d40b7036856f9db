"""Nested connections without N+1: ``projects { videos }`` and ``stories { videos }`` cost
the same number of SQL statements whatever the number of parents, and give exactly the
pages the top-level ``videos(filter: {projectId|storyId})`` gives for each parent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen.models import Video
from vidgen.services import catalog, videos

VIDEO_PAGE = """
    totalCount
    edges { cursor node { id theme { name } tags { name } owner { email } } }
    pageInfo { hasNextPage endCursor }
"""

NESTED_PROJECTS = f"""
query NestedProjects($first: Int, $videos: Int, $after: String) {{
  projects(first: $first) {{
    edges {{ node {{ id videos(first: $videos, after: $after) {{ {VIDEO_PAGE} }} }} }}
  }}
}}
"""

NESTED_STORIES = f"""
query NestedStories($first: Int, $videos: Int, $after: String) {{
  stories(first: $first) {{
    edges {{ node {{ id videos(first: $videos, after: $after) {{ {VIDEO_PAGE} }} }} }}
  }}
}}
"""

TOP_LEVEL = f"""
query Page($first: Int, $after: String, $filter: VideoFilter) {{
  videos(first: $first, after: $after, filter: $filter) {{ {VIDEO_PAGE} }}
}}
"""

PARENTS = 20


@dataclass
class Catalog:
    projects: list[Any]
    stories: list[Any]


async def _make_catalog(live_server: LiveServer, owner: Account, *, parents: int) -> Catalog:
    """``parents`` projects (0 to 6 videos) and stories (0 to 4 videos) (some deleted, some
    sharing a creation time), so pages are full, partial, empty and tie-broken by id."""
    viewer = owner.user
    projects = [await catalog.create_project(viewer=viewer, name=f"P{i}") for i in range(parents)]
    stories = [
        await catalog.create_story(
            viewer=viewer, title=f"S{i}", project_id=projects[i].id, paragraphs=["a"]
        )
        for i in range(parents)
    ]
    made: list[Video] = []
    for i in range(parents):
        for j in range(i % 7):
            made.append(
                await videos.generate_video(
                    runtime=live_server.runtime,
                    viewer=viewer,
                    prompt=f"video {i}.{j}",
                    project_id=projects[i].id,
                    story_id=None if j % 3 == 2 else stories[i].id,
                    theme=f"theme {j % 3}",
                    tags=[f"tag{j % 4}", f"tag{(i + j) % 5}"],
                )
            )
    for video in made[::5]:  # deleted videos are left out of nested lists
        await videos.delete_video(runtime=live_server.runtime, viewer=viewer, video_id=video.id)
    same = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # ties: ordered by id, newest first
    await Video.filter(id__in=[v.id for v in made[1::4]]).update(created_at=same)
    return Catalog(projects=projects, stories=stories)


def _parents(body: dict[str, Any], field: str) -> list[dict[str, Any]]:
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"][field]["edges"]]


async def _count(
    live_server: LiveServer,
    counter: StatementCounter,
    query: str,
    variables: dict[str, Any],
    token: str,
) -> tuple[int, dict[str, Any]]:
    with counter.counting():
        counter.reset()
        body = await live_server.gql(query, variables, token=token)
        return counter.count, body


@pytest.mark.parametrize(
    ("query", "field"), [(NESTED_PROJECTS, "projects"), (NESTED_STORIES, "stories")]
)
async def test_nested_videos_run_a_constant_number_of_statements(
    live_server: LiveServer,
    alice: Account,
    count_statements: StatementCounter,
    query: str,
    field: str,
) -> None:
    await _make_catalog(live_server, alice, parents=PARENTS)
    await live_server.gql(d.VIEWER, token=alice.token)  # token use recorded (throttled after)

    counts = {}
    for first in (5, PARENTS):
        counts[first], body = await _count(
            live_server, count_statements, query, {"first": first, "videos": 3}, alice.token
        )
        nodes = _parents(body, field)
        assert len(nodes) == first
        assert any(node["videos"]["edges"] for node in nodes)
    # parents + video pages + counts + theme, tags, owner: never one per parent
    assert counts[5] == counts[PARENTS], count_statements.statements
    assert counts[PARENTS] <= 7, count_statements.statements

    # A cursor (one for every parent, as a variable gives) is batched as well.
    after = _cursor_in_the_middle(body, field)
    counts_after = {}
    for first in (5, PARENTS):
        counts_after[first], body = await _count(
            live_server,
            count_statements,
            query,
            {"first": first, "videos": 3, "after": after},
            alice.token,
        )
        _parents(body, field)
    # (fewer when no video of the first parents is older than the cursor: no relations)
    assert max(counts_after.values()) <= counts[PARENTS], count_statements.statements


def _cursor_in_the_middle(body: dict[str, Any], field: str) -> str:
    cursors = [edge["cursor"] for node in _parents(body, field) for edge in node["videos"]["edges"]]
    return sorted(cursors)[len(cursors) // 2]


@pytest.mark.parametrize(
    ("query", "field", "filter_key"),
    [(NESTED_PROJECTS, "projects", "projectId"), (NESTED_STORIES, "stories", "storyId")],
)
@pytest.mark.parametrize("page", [0, 1, 3, 100])
async def test_nested_pages_equal_the_top_level_pages(
    live_server: LiveServer,
    alice: Account,
    bob: Account,
    user_factory: Any,
    query: str,
    field: str,
    filter_key: str,
    page: int,
) -> None:
    await _make_catalog(live_server, alice, parents=10)
    await _make_catalog(live_server, bob, parents=3)  # other owners' videos stay out
    admin = await user_factory("root@example.com", admin=True)

    for account in (alice, admin):
        nested_body = await live_server.gql(
            query, {"first": 100, "videos": page}, token=account.token
        )
        parents = _parents(nested_body, field)
        assert len(parents) == (10 if account is alice else 13)
        afters = [None, _cursor_in_the_middle(nested_body, field)] if page else [None]
        for after in afters:
            if after is not None:
                nested_body = await live_server.gql(
                    query, {"first": 100, "videos": page, "after": after}, token=account.token
                )
                parents = _parents(nested_body, field)
            for parent in parents:
                top = await live_server.gql(
                    TOP_LEVEL,
                    {"first": page, "after": after, "filter": {filter_key: parent["id"]}},
                    token=account.token,
                )
                assert "errors" not in top, top
                assert parent["videos"] == top["data"]["videos"], (parent["id"], after)


async def test_nested_page_size_is_checked(live_server: LiveServer, alice: Account) -> None:
    await catalog.create_project(viewer=alice.user, name="P")
    body = await live_server.gql(NESTED_PROJECTS, {"videos": 101}, token=alice.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "first"
    body = await live_server.gql(NESTED_PROJECTS, {"videos": 3, "after": "nope"}, token=alice.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "after"
