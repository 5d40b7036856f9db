"""The list page's shortcuts give exactly what Tortoise gives, on both backends.

- ``vidgen.db.row_builder(Model)(row)`` must equal ``Model._init_from_db(**row)``: the same
  attributes in the same order, with values of the same types and representations
  (time zones included), for every model the API reads and rows full of NULLs or not.
- the compiled plans' page statement (``vidgen.graphql.compiled.statements``: the list's
  filters written as SQL) must return the rows, order and ``hasNextPage`` of
  ``pagination.fetch_page`` over ``list_videos``'s QuerySet, for every filter,
  combinations of them, cursors, page sizes, admins and other users' videos; and its
  count must be the number of matches.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from typing import Any

from tortoise.models import Model

from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen import db as vdb
from vidgen.graphql import pagination
from vidgen.graphql.compiled import statements
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
    listed = videos.video_list(viewer=viewer, **filters)
    cursor = pagination.decode_cursor(after) if after else None
    where = statements.video_filters(listed)
    rows = await statements.page('v."id"', "", where, cursor, first + 1, with_count=True)
    slow = await pagination.fetch_page(
        videos.list_videos(viewer=viewer, **filters), first=first, after=after
    )
    context = (filters, first, after)
    assert [row[0] for row in rows[:first]] == [v.id for v in slow.rows], context
    assert (len(rows) > first) == slow.has_next_page, context
    count = rows[0][1] if rows else await statements.count(where)
    assert count == await slow.count_query.count(), context
    return slow


async def test_compiled_page_statements_give_tortoises_pages(
    db: Settings, alice: Account, bob: Account, user_factory: Any
) -> None:
    runtime = Runtime.create(db)
    made = await _library(runtime, alice.user, seed=3)
    await _library(runtime, bob.user, seed=4)
    admin = (await user_factory("root@example.com", admin=True)).user
    for viewer, filters in itertools.product((alice.user, bob.user, admin), _filters(alice, made)):
        for first in (0, 1, 4, 100):
            page = await _pages_agree(viewer, filters, first, None)
            # Walk on through the pages with cursors (a few steps).
            steps = 0
            while page.has_next_page and page.rows and steps < 3:
                after = pagination.encode_cursor(page.rows[-1])
                page = await _pages_agree(viewer, filters, first, after)
                steps += 1
    # A user only ever sees their own videos; an admin everyone's.
    everything = {"include_deleted": True}
    for viewer in (alice.user, bob.user):
        page = await _pages_agree(viewer, everything, 100, None)
        assert page.rows and {v.owner_id for v in page.rows} == {viewer.id}
    page = await _pages_agree(admin, everything, 100, None)
    assert {v.owner_id for v in page.rows} == {alice.user.id, bob.user.id}


async def test_a_cursor_in_another_time_zone(db: Settings, alice: Account) -> None:
    """A cursor naming its instant with another UTC offset pages the same way."""
    import base64

    runtime = Runtime.create(db)
    made = await _library(runtime, alice.user, seed=6)
    first_page = await _pages_agree(alice.user, {}, 3, None)
    await _pages_agree(alice.user, {}, 3, pagination.encode_cursor(first_page.rows[-1]))
    row = sorted(made, key=lambda v: v.id)[10]
    shifted = row.created_at.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    raw = f"c1:{shifted.isoformat()}|{row.id}"
    cursor = base64.urlsafe_b64encode(raw.encode()).decode()
    await _pages_agree(alice.user, {}, 5, cursor)
    await _pages_agree(alice.user, {"include_deleted": True}, 5, cursor)


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
    live_server: LiveServer, alice: Account, count_statements: StatementCounter, backend: str
) -> None:
    """Token, the page with its owners, projects, stories and themes (and on PostgreSQL its
    tags): two statements; SQLite reads the tags in a third."""
    made = await _library(live_server.runtime, alice.user, seed=8)
    await live_server.gql(LIST, {"first": 50}, token=alice.token)
    with count_statements.counting() as counter:
        counter.reset()
        body = await live_server.gql(LIST, {"first": 50}, token=alice.token)
    assert "errors" not in body and len(body["data"]["videos"]["edges"]) == len(made) - 4
    assert counter.count == (2 if backend == "postgres" else 3), count_statements.statements
