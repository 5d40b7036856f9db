"""A new video inserted by :func:`lifecycle.record_created` (one statement on PostgreSQL) is
checked and written exactly like :meth:`Video.save`, on both backends; :meth:`Video.new`
builds the very instance ``Video(...)`` builds, and its insert values are Tortoise's own
conversion of every field (``vidgen.db.NewRowBuilder``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError, ValidationError

from tests.api.conftest import StatementCounter
from vidgen.jobs import lifecycle
from vidgen.models import OutputFormat, Story, Tag, User, Video, VideoStatus, VideoStatusEvent

# fair_rank: the insert computes the turn (save() writes the default, 0; the inserted
# video comes after the saved one of the same owner and priority: 1).
COMPARED_AWAY = {"id", "created_at", "updated_at", "idempotency_key", "fair_rank"}


async def make_user() -> User:
    return await User.create(email="a@example.com", password_hash="x")


def new_video(owner: User, build: Any = Video, **values: object) -> Video:
    fields: dict[str, object] = dict(
        owner_id=owner.id, created_by_id=owner.id, prompt="a fox", provider="local",
        resolution="512x512",
    )  # fmt: skip
    fields.update(values)
    return build(**fields)  # type: ignore[no-any-return]


AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
KWARGS: list[dict[str, Any]] = [
    {},
    {"status": "queued", "output_format": "webm", "priority": 3, "max_retries": 5},
    {"status": VideoStatus.QUEUED, "output_format": OutputFormat.MP4, "scheduled_at": AT},
    {"scheduled_at": AT.replace(tzinfo=None), "requested_at": AT, "requested_seconds": 4.0},
    {"caption": None, "model": "m", "theme_id": None, "project_id": None, "progress": 0.0},
    {"webhook_url": "https://example.com/h", "idempotency_key": "k", "duration_seconds": 5},
    {"seed": 7, "kind": "film", "cancel_requested": False, "version": 1},
]


def _described(video: Video) -> dict[str, tuple[type, str]]:
    return {name: (type(value), repr(value)) for name, value in vars(video).items()}


@pytest.mark.parametrize("values", KWARGS)
async def test_new_builds_what_init_builds(db, values: dict[str, Any]) -> None:
    user = await make_user()
    ours, theirs = new_video(user, Video.new, **values), new_video(user, **values)
    assert type(ours) is Video and not ours._saved_in_db
    assert _described(ours) == _described(theirs)
    assert ours._await_when_save is not theirs._await_when_save
    # Every column as Tortoise converts it (the timestamps are stamped: compared apart).
    inserted = await ours.insert_values()
    expected = {
        column: Video._meta.fields_map[name].to_db_value(getattr(theirs, name), theirs)
        for name, column in Video._meta.fields_db_projection.items()
        if not Video._meta.fields_map[name].generated
    }
    assert inserted.keys() == expected.keys()
    for column, value in inserted.items():
        if column in ("created_at", "updated_at"):
            assert isinstance(value, dt.datetime) and value == getattr(ours, column)
        else:
            assert (type(value), value) == (type(expected[column]), expected[column]), column


async def test_new_refuses_and_falls_back_like_init(db) -> None:
    user = await make_user()
    with pytest.raises(ValueError, match="prompt is non nullable"):
        new_video(user, Video.new, prompt=None)
    with pytest.raises(ValueError, match="prompt is non nullable"):
        new_video(user, prompt=None)
    # A relation object, not its id: Tortoise's own __init__ builds it.
    ours = Video.new(owner=user, prompt="p", provider="local", resolution="512x512")
    theirs = Video(owner=user, prompt="p", provider="local", resolution="512x512")
    assert ours.owner_id == theirs.owner_id == user.id


async def test_the_row_is_the_one_save_writes(db) -> None:
    user = await make_user()
    story = await Story.create(owner=user, title="t", paragraphs=["a", "b"])
    values = dict(story_id=story.id, paragraph_index=1, caption="c", priority=4, seed=7)
    saved = new_video(user, idempotency_key="saved", **values)
    await saved.save()
    inserted = new_video(user, idempotency_key="inserted", **values)
    change = await lifecycle.record_created(inserted, actor="test", paragraph_count=2)

    assert inserted.id is not None and inserted.id != saved.id and inserted._saved_in_db
    a, b = await Video.get(id=saved.id), await Video.get(id=inserted.id)
    for field in Video._meta.fields_db_projection:
        if field not in COMPARED_AWAY:
            assert getattr(a, field) == getattr(b, field), field
    assert (a.fair_rank, b.fair_rank) == (0, 1)
    # The instance carries what its row says (timestamps and its turn included).
    for field in Video._meta.fields_db_projection:
        assert getattr(inserted, field) == getattr(b, field), field

    (event,) = await VideoStatusEvent.filter(video_id=inserted.id)
    assert change.event.event_id == event.id and change.version == 1
    assert (event.from_status, event.to_status, event.message) == (None, "queued", "queued")


async def test_tag_links_are_written_with_the_video(db) -> None:
    user = await make_user()
    tags = [await Tag.create(owner=user, name=n, name_key=n) for n in ("a", "b", "c")]
    video = new_video(user)
    await lifecycle.record_created(video, actor="test", tag_ids=[t.id for t in tags])
    assert sorted(t.name for t in await video.tags.all()) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("values", "count", "match"),
    [
        ({"resolution": "513x512"}, None, "resolution"),
        ({"progress": 1.5}, None, "progress"),
        ({"caption": "c" * 256}, None, "caption"),
        ({"paragraph_index": 0}, None, "needs a story"),
        ({"paragraph_index": 2, "with_story": True}, 2, "outside"),
        ({"paragraph_index": 2, "with_story": True}, None, "outside"),  # read from the story
        ({"paragraph_index": -1, "with_story": True}, 2, "outside"),
    ],
)
async def test_refused_like_save_and_nothing_written(
    db, values: dict, count: int | None, match: str
) -> None:
    user = await make_user()
    values = dict(values)
    if values.pop("with_story", False):
        values["story_id"] = (await Story.create(owner=user, title="t", paragraphs=["a", "b"])).id
    with pytest.raises(ValidationError, match=match):
        await new_video(user, **values).save()
    for build in (Video, Video.new):
        with pytest.raises(ValidationError, match=match):
            await lifecycle.record_created(
                new_video(user, build, **values), actor="t", paragraph_count=count
            )
    assert await Video.all().count() == 0 and await VideoStatusEvent.all().count() == 0


async def test_a_repeated_idempotency_key_writes_nothing(db) -> None:
    user = await make_user()
    tag = await Tag.create(owner=user, name="a", name_key="a")
    await lifecycle.record_created(new_video(user, idempotency_key="k"), actor="t")
    with pytest.raises(IntegrityError):
        await lifecycle.record_created(
            new_video(user, idempotency_key="k"), actor="t", tag_ids=[tag.id]
        )
    assert await Video.all().count() == 1 and await VideoStatusEvent.all().count() == 1
    assert not await tag.videos.all()  # no link of the refused video


async def test_a_known_paragraph_count_saves_reading_the_story(db) -> None:
    user = await make_user()
    story = await Story.create(owner=user, title="t", paragraphs=["a", "b"])
    counter = StatementCounter()
    with counter.counting():
        await new_video(user, story_id=story.id, paragraph_index=1).check_paragraph_index(
            paragraph_count=2
        )
        assert counter.count == 0
        await new_video(user, story_id=story.id, paragraph_index=1).check_paragraph_index()
        assert counter.count == 1
