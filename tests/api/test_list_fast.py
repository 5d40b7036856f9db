"""The list page's shortcuts give exactly what Tortoise gives, on both backends.

- ``vidgen.db.row_builder(Model)(row)`` must equal ``Model._init_from_db(**row)``: the same
  attributes in the same order, with values of the same types and representations
  (time zones included), for every model the API reads and rows full of NULLs or not.
- ``page_sql.fetch_list_page`` (the page statement's SQL kept per shape of filters) must
  return the rows, order and ``hasNextPage`` of ``pagination.fetch_page`` over
  ``list_videos``'s QuerySet (Tortoise building the query every time), for every filter,
  combinations of them, cursors, page sizes, admins and other users' videos; and the
  number of matches must be the same. With the to-one relations joined, the same page,
  and for each relation exactly the rows its by-id loader reads.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from dataclasses import replace
from typing import Any

import pytest
from tortoise.expressions import RawSQL
from tortoise.models import Model

from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen import db as vdb
from vidgen.graphql import dataloaders, pagination
from vidgen.graphql.fastpath import page_sql
from vidgen.models import (
    Project,
    Story,
    Tag,
    Theme,
    User,
    Video,
    VideoStatus,
    VideoStatusEvent,
)
from vidgen.runtime import Runtime
from vidgen.services import catalog, videos
from vidgen.settings import Settings


def _described(instance: Model) -> list[tuple[str, str, str]]:
    """Every attribute of an instance, in order, as (name, type, repr)."""
    return [(name, type(value).__name__, repr(value)) for name, value in vars(instance).items()]


async def _library(runtime: Runtime, owner: User, *, seed: int) -> list[Video]:
    """Videos with every filter's values spread over them (and some NULL-heavy rows)."""
    rng = random.Random(seed)
    projects = [
        await catalog.create_project(viewer=owner, name=f"P{i}", description=None) for i in range(2)
    ]
    stories = [
        await catalog.create_story(
            viewer=owner, title=f"S{i}", project_id=projects[i].id, paragraphs=["a", f"b{i}"]
        )
        for i in range(2)
    ]
    made = []
    for i in range(26):
        project = rng.choice([None, *projects])
        story = rng.choice([None, *stories]) if project is not None else None
        if story is not None:
            project = next(p for p in projects if p.id == story.project_id)
        made.append(
            await videos.generate_video(
                runtime=runtime,
                viewer=owner,
                prompt=rng.choice(["A cat_ on 100% mars", "a CAT in snow", "dog\\walk", "ocean"])
                + f" {i}",
                provider=rng.choice(["local", None]),
                project_id=None if project is None else project.id,
                story_id=None if story is None else story.id,
                theme=rng.choice([None, "Noir", "noir ", "Anime"]),
                tags=rng.sample(["city", "night", "Ocean"], rng.randint(0, 3)),
                caption=rng.choice([None, "Cat caption", "50% off_"]),
                scheduled_at=rng.choice([None, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)]),
            )
        )
    statuses = list(VideoStatus)
    for video in made:
        status = rng.choice(statuses)
        await Video.filter(id=video.id).update(
            status=status,
            completed_at=dt.datetime.now(dt.UTC) if status == VideoStatus.COMPLETED else None,
        )
    for video in rng.sample(made, 4):
        await videos.delete_video(runtime=runtime, viewer=owner, video_id=video.id)
    # Several videos share a created_at: the cursor's id tie-break matters.
    same = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    await Video.filter(id__in=[v.id for v in made[5:9]]).update(created_at=same)
    return made


async def test_row_builder_equals_init_from_db(db: Settings, alice: Account, bob: Account) -> None:
    runtime = Runtime.create(db)
    await _library(runtime, alice.user, seed=1)
    await _library(runtime, bob.user, seed=2)
    connection = Video._meta.db
    for model in (Video, Project, Story, Tag, Theme, User, VideoStatusEvent):
        query = model.all().order_by("id")
        _, rows = await connection.execute_query(query.sql(), [])
        assert rows, model
        build = vdb.row_builder(model)
        for row in rows:
            ours, theirs = build(row), model._init_from_db(**row)
            assert type(ours) is model
            assert _described(ours) == _described(theirs), model
            assert ours == theirs and not ours._partial
    # A row missing a column: Tortoise's partial instance, as _init_from_db makes it.
    _, rows = await connection.execute_query(Video.all().only("id", "prompt").sql(), [])
    partial = vdb.row_builder(Video)(rows[0])
    assert partial._partial and _described(partial) == _described(Video._init_from_db(**rows[0]))


def _filters(alice: Account, made: list[Video]) -> list[dict[str, Any]]:
    project_ids = sorted({v.project_id for v in made if v.project_id is not None})
    story_ids = sorted({v.story_id for v in made if v.story_id is not None})
    options: dict[str, list[Any]] = {
        "status": [None, [VideoStatus.QUEUED], ["completed", "failed", "canceled"], []],
        "project_id": [None, project_ids[0], 10_000],
        "story_id": [None, story_ids[-1]],
        "tag": [None, "city", " OCEAN ", "nope"],
        "theme": [None, "noir", "Anime"],
        "provider": [None, " LOCAL ", "runway"],
        "search": [None, "cat", "100%", "_", "\\", "   ", "CAPTION"],
        "include_deleted": [False, True],
    }
    rng = random.Random(5)
    chosen = [{}]  # every option alone, then random combinations
    for name, values in options.items():
        chosen += [{name: value} for value in values[1:]]
    for _ in range(40):
        chosen.append({name: rng.choice(values) for name, values in options.items()})
    return chosen


async def _pages_agree(
    viewer: User, filters: dict[str, Any], first: int, after: str | None
) -> pagination.Page:
    fast = await page_sql.fetch_list_page(
        videos.video_list(viewer=viewer, **filters), first=first, after=after
    )
    slow = await pagination.fetch_page(
        videos.list_videos(viewer=viewer, **filters), first=first, after=after
    )
    context = (filters, first, after)
    assert [_described(v) for v in fast.rows] == [_described(v) for v in slow.rows], context
    assert fast.has_next_page == slow.has_next_page, context
    assert await fast.count_query.count() == await slow.count_query.count(), context
    # The same page with its to-one relations joined: the same rows, and for each relation
    # what its by-id loader reads for the page's keys.
    joined = await page_sql.fetch_list_page(
        videos.video_list(viewer=viewer, **filters), first=first, after=after, joins=_JOINS
    )
    assert [_described(v) for v in joined.rows] == [_described(v) for v in slow.rows], context
    assert joined.has_next_page == slow.has_next_page, context
    if first:
        assert joined.related is not None
        for join in _JOINS:
            keys = sorted({getattr(v, join.column) for v in slow.rows} - {None})
            loaded = await _LOADERS[join.model]().load_many(keys)
            found = joined.related[join.column]
            assert sorted(found) == keys, context
            assert [_described(found[k]) for k in keys] == [_described(r) for r in loaded]
    return fast


_JOINS = (
    page_sql.Join("project_id", Project),
    page_sql.Join("story_id", Story),
    page_sql.Join("theme_id", Theme),
)
_LOADERS = {
    Project: dataloaders.ProjectByIdLoader,
    Story: dataloaders.StoryByIdLoader,
    Theme: dataloaders.ThemeByIdLoader,
}


async def test_cached_page_statements_give_tortoises_pages(
    db: Settings, alice: Account, bob: Account, user_factory: Any
) -> None:
    runtime = Runtime.create(db)
    made = await _library(runtime, alice.user, seed=3)
    await _library(runtime, bob.user, seed=4)
    admin = (await user_factory("root@example.com", admin=True)).user
    page_sql._PAGE_SQL.clear()
    for viewer, filters in itertools.product((alice.user, bob.user, admin), _filters(alice, made)):
        for first in (0, 1, 4, 100):
            page = await _pages_agree(viewer, filters, first, None)
            # Walk on through the pages with cursors (a few steps).
            steps = 0
            while page.has_next_page and page.rows and steps < 3:
                after = pagination.encode_cursor(page.rows[-1])
                page = await _pages_agree(viewer, filters, first, after)
                steps += 1
    # The kept statements were used: every shape seen found its SQL reusable.
    assert page_sql._PAGE_SQL and all(sql is not None for sql in page_sql._PAGE_SQL.values())
    # A user only ever sees their own videos; an admin everyone's.
    everything = {"include_deleted": True}
    for viewer in (alice.user, bob.user):
        page = await page_sql.fetch_list_page(
            videos.video_list(viewer=viewer, **everything), first=100, after=None
        )
        assert page.rows and {v.owner_id for v in page.rows} == {viewer.id}
    page = await page_sql.fetch_list_page(
        videos.video_list(viewer=admin, **everything), first=100, after=None
    )
    assert {v.owner_id for v in page.rows} == {alice.user.id, bob.user.id}


async def test_a_cursor_in_another_time_zone(db: Settings, alice: Account) -> None:
    """A cursor naming its instant with another UTC offset pages the same way."""
    import base64

    runtime = Runtime.create(db)
    made = await _library(runtime, alice.user, seed=6)
    page_sql._PAGE_SQL.clear()
    first_page = await _pages_agree(alice.user, {}, 3, None)  # kept SQL for later pages
    await _pages_agree(alice.user, {}, 3, pagination.encode_cursor(first_page.rows[-1]))
    row = sorted(made, key=lambda v: v.id)[10]
    shifted = row.created_at.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    raw = f"c1:{shifted.isoformat()}|{row.id}"
    cursor = base64.urlsafe_b64encode(raw.encode()).decode()
    await _pages_agree(alice.user, {}, 5, cursor)
    await _pages_agree(alice.user, {"include_deleted": True}, 5, cursor)


class _WrongParams(videos.VideoList):
    """Says its SQL takes params it does not: never trusted with a kept statement."""

    def params(self) -> list[Any]:
        return list(reversed(super().params()))


class _Inlined(videos.VideoList):
    """Writes its project id into the SQL text (not a parameter): the params check alone
    passes, the probe (another project id, another text) does not."""

    def _rest(self) -> videos.VideoList:
        return replace(videos.VideoList(**_fields(self)), project_id=None)

    def queryset(self) -> Any:
        query = self._rest().queryset()
        return query.filter(project_id=RawSQL(str(int(self.project_id or 0))))

    def params(self) -> list[Any]:
        return self._rest().params()


def _fields(listed: videos.VideoList) -> dict[str, Any]:
    return {name: getattr(listed, name) for name in listed.__dataclass_fields__}


@pytest.mark.parametrize("kind", [_WrongParams, _Inlined])
async def test_statements_that_cannot_be_shown_right_are_not_kept(
    db: Settings, alice: Account, kind: type[videos.VideoList]
) -> None:
    runtime = Runtime.create(db)
    made = await _library(runtime, alice.user, seed=7)
    page_sql._PAGE_SQL.clear()
    for project_id in sorted({v.project_id for v in made if v.project_id is not None}):
        listed = videos.video_list(viewer=alice.user, project_id=project_id, search="cat")
        odd = kind(**_fields(listed))
        expected = await pagination.fetch_page(listed.queryset(), first=3, after=None)
        for _ in range(2):
            page = await page_sql.fetch_list_page(odd, first=3, after=None)
            assert [v.id for v in page.rows] == [v.id for v in expected.rows]
    assert list(page_sql._PAGE_SQL.values()) == [None]


async def _outcome(make: Any) -> tuple[str, str, list[int]]:
    try:
        page = await make()
    except Exception as exc:  # noqa: BLE001 - compared, type and message
        return type(exc).__name__, str(exc), []
    return "", "", [v.id for v in page.rows]


@pytest.mark.parametrize(
    "filters",
    [
        {"provider": "x" * 40},
        {"provider": "y" * 5000, "search": "cat"},
        {"project_id": 2**40},
        {"story_id": -(2**40), "status": ["queued"]},
    ],
)
async def test_values_tortoise_refuses_fail_the_same_way(
    db: Settings, alice: Account, filters: dict[str, Any]
) -> None:
    """A filter value a field refuses (too long, out of range) fails as Tortoise fails it,
    also once the shape's SQL is kept; with first 0 nothing is sent, so nothing fails."""
    runtime = Runtime.create(db)
    await _library(runtime, alice.user, seed=9)
    page_sql._PAGE_SQL.clear()
    shape_ok = {key: (1 if key.endswith("_id") else "local") for key in filters}
    shape_ok |= {k: v for k, v in filters.items() if k in ("search", "status")}
    for values in (filters, shape_ok, filters):  # unknown shape, then kept, then again
        for first in (0, 3):
            fast = await _outcome(
                lambda values=values, first=first: page_sql.fetch_list_page(
                    videos.video_list(viewer=alice.user, **values), first=first, after=None
                )
            )
            slow = await _outcome(
                lambda values=values, first=first: pagination.fetch_page(
                    videos.list_videos(viewer=alice.user, **values), first=first, after=None
                )
            )
            assert fast == slow, (values, first)
            if values is filters and first and "provider" in filters:
                assert fast[0] == "BadUserInput"  # refused before any SQL is built


LIST = """
query List($first: Int!) {
  videos(first: $first) {
    edges { node {
      id prompt status createdAt
      owner { id email }
      project { id name }
      story { id title }
      theme { name }
      tags { name }
    } }
  }
}
"""


async def test_list_page_reads_its_relations_with_the_page(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter
) -> None:
    """Token, the page with its projects, stories and themes, the tags: three statements,
    from the second page of a shape on (the first one builds and checks the SQL)."""
    made = await _library(live_server.runtime, alice.user, seed=8)
    await live_server.gql(LIST, {"first": 50}, token=alice.token)
    with count_statements.counting() as counter:
        counter.reset()
        body = await live_server.gql(LIST, {"first": 50}, token=alice.token)
    assert "errors" not in body and len(body["data"]["videos"]["edges"]) == len(made) - 4
    assert counter.count == 3, count_statements.statements
