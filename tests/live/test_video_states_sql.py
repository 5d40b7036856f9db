"""The video states' own SQL builds what the ORM builds.

``load_states`` reads the rows with its own statements and builds the model instances from
the raw rows (``db.row_builder``). Every object of a state must equal, attribute by
attribute and type by type, what the ORM's queries give for the same videos: the video,
its owner, theme, project and story (or None), its tags in their order (and
``video.tags`` fetched), its history up to the row's version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from tortoise.fields.relational import ManyToManyRelation
from tortoise.models import Model
from tortoise.query_utils import Prefetch

from tests.live.conftest import make_video
from vidgen import models
from vidgen.events.video_states import VideoState, VideoStates, load_state, load_states
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus


async def orm_states(video_ids: list[int]) -> dict[int, VideoState]:
    """The states as the ORM's own queries give them (the reference)."""
    rows = (
        await models.Video.filter(id__in=video_ids)
        .select_related("owner", "theme", "project", "story")
        .prefetch_related(Prefetch("tags", queryset=models.Tag.all().order_by("name_key", "id")))
    )
    history: dict[int, list[models.VideoStatusEvent]] = {row.id: [] for row in rows}
    for event in await models.VideoStatusEvent.filter(video_id__in=list(history)).order_by("id"):
        history[event.video_id].append(event)  # type: ignore[attr-defined]
    return {
        row.id: VideoState(
            video=row,
            owner=row.owner,
            theme=row.theme,
            project=row.project,
            story=row.story,
            tags=list(row.tags),
            history=[h for h in history[row.id] if h.version <= row.version],
        )
        for row in rows
    }


def assert_same(mine: Any, orm: Any, path: str = "state") -> None:
    """Equal values of the same types, models compared attribute by attribute (``==`` on
    models compares their keys only)."""
    assert type(mine) is type(orm), (path, type(mine), type(orm))
    if isinstance(orm, Model):
        assert set(vars(mine)) == set(vars(orm)), (path, set(vars(mine)) ^ set(vars(orm)))
        for key, value in vars(orm).items():
            assert_same(vars(mine)[key], value, f"{path}.{key}")
    elif isinstance(orm, ManyToManyRelation):
        assert set(vars(mine)) == set(vars(orm)), path
        for key, value in vars(orm).items():
            if key == "instance":  # the video it belongs to (compared itself)
                assert type(mine.instance) is type(value) and mine.instance.pk == value.pk
            elif key == "related_objects":
                assert_same(mine.related_objects, value, f"{path}.related_objects")
            else:
                assert vars(mine)[key] is value or vars(mine)[key] == value, (path, key)
        assert mine._fetched, path
    elif isinstance(orm, list | tuple):
        assert len(mine) == len(orm), (path, len(mine), len(orm))
        for n, (a, b) in enumerate(zip(mine, orm, strict=True)):
            assert_same(a, b, f"{path}[{n}]")
    elif isinstance(orm, dict):
        assert list(mine) == list(orm), path
        for key, value in orm.items():
            assert_same(mine[key], value, f"{path}[{key!r}]")
    elif isinstance(orm, dt.datetime):
        assert mine == orm and mine.tzinfo == orm.tzinfo, (path, mine, orm)
        assert mine.utcoffset() == orm.utcoffset(), path
    else:
        assert mine == orm, (path, mine, orm)


def assert_states_same(mine: VideoState, orm: VideoState) -> None:
    for name in ("video", "owner", "theme", "project", "story", "tags", "history"):
        assert_same(getattr(mine, name), getattr(orm, name), name)
    assert mine.version == orm.version


async def test_sql_states_equal_the_orms(db) -> None:
    owner = await models.User.create(email="sql@example.com", password_hash="!", is_admin=True)
    other = await models.User.create(
        email="other@example.com", password_hash="!", max_active_jobs=3, daily_video_seconds=1.5
    )
    project = await models.Project.create(owner=owner, name="P", description="about")
    bare_project = await models.Project.create(owner=other, name="Q")  # description None
    story = await models.Story.create(
        owner=owner, project=project, title="S", paragraphs=["one", {"two": [2, 2.5]}]
    )
    theme = await models.Theme.create(owner=owner, name="Noir", name_key="noir")
    full = await make_video(
        owner,
        prompt="full",
        theme=theme,
        project=project,
        story=story,
        paragraph_index=1,
        seed=2**40,
        caption="c",
        duration_seconds=4.0,
        created_by_id=other.id,
    )
    bare = await make_video(other, prompt="bare")  # no theme, project, story, tags
    grouped = await make_video(other, prompt="grouped", project=bare_project)
    names = ["zebra", "Äpfel", "apple", "a-b", "ab", "b", "Z", "émile", "10", "9"]
    tags = [await models.Tag.create(owner=owner, name=n, name_key=n.lower()) for n in names]
    await full.tags.add(*tags)
    await grouped.tags.add(tags[2], tags[5])  # shared with ``full``
    await lifecycle.transition(full.id, VideoStatus.PROCESSING, actor="t")
    await lifecycle.touch(full.id, fields={"progress": 0.5, "status_message": "half"})
    await lifecycle.transition(full.id, VideoStatus.COMPLETED, actor="t")
    # History newer than the row (a change committed after the row was read): cut off.
    row = await models.Video.get(id=grouped.id)
    await models.VideoStatusEvent.create(
        video_id=grouped.id,
        owner_id=other.id,
        from_status="queued",
        to_status="processing",
        version=row.version + 1,
        actor=None,
        message='{"x": 1}',
    )
    ids = [full.id, bare.id, grouped.id, 10**9]

    mine, orm = await load_states(ids), await orm_states(ids)
    assert sorted(mine) == sorted(orm) == sorted(ids[:3])
    for video_id in orm:
        assert_states_same(mine[video_id], orm[video_id])
    assert mine[bare.id].theme is None and mine[bare.id].story is None
    assert mine[grouped.id].project is not None and mine[grouped.id].theme is None
    assert [t.name for t in mine[full.id].tags] == [
        t.name for t in sorted(tags, key=lambda t: (t.name_key, t.id))
    ]
    assert len(mine[grouped.id].history) == 1  # the newer row is not in it
    assert mine[full.id].video.status is VideoStatus.COMPLETED
    assert list(mine[full.id].video.tags) == mine[full.id].tags  # fetched, no query

    for video_id in ids[:3]:  # one video at a time: the same
        one = await load_state(video_id)
        assert one is not None
        assert_states_same(one, orm[video_id])
    assert await load_state(10**9) is None
    assert await load_states([]) == {}


async def test_loads_asked_for_during_a_read_are_read_together(db, monkeypatch) -> None:
    """One read in flight at a time: the loads asked for while it runs, in any number of
    loop passes, make ONE next read; each still gets its own video, as of after it was
    asked for."""
    from vidgen.events import video_states

    owner = await models.User.create(email="reads@example.com", password_hash="!")
    videos = [await make_video(owner) for _ in range(4)]
    gate = asyncio.Event()
    real = video_states.load_states
    reads: list[list[int]] = []

    async def gated(video_ids: list[int]) -> dict[int, VideoState]:
        reads.append(sorted(video_ids))
        if len(reads) == 1:
            await gate.wait()  # the first read stays in flight
        return await real(video_ids)

    monkeypatch.setattr(video_states, "load_states", gated)
    states = VideoStates()
    first = asyncio.create_task(states.at_least(videos[0].id, 1))
    await asyncio.sleep(0.01)
    assert reads == [[videos[0].id]]
    waiting = []
    for video in videos[1:]:  # each in its own loop passes, while the first read runs
        await lifecycle.touch(video.id, fields={"progress": 0.5})  # version 2
        waiting.append(asyncio.create_task(states.at_least(video.id, 2)))
        await asyncio.sleep(0.01)
    assert len(reads) == 1 and not any(task.done() for task in waiting)
    gate.set()
    found = await asyncio.gather(first, *waiting)
    assert [s.video.id for s in found] == [v.id for v in videos]
    assert [s.version for s in found] == [1, 2, 2, 2]
    assert reads == [[videos[0].id], sorted(v.id for v in videos[1:])]
    assert states.reads == 2 and states.loads == 4

    await states.at_least(videos[0].id, 5)  # idle: read at once, alone
    assert states.reads == 3 and len(reads) == 3
