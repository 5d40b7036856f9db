"""A new video inserted by :func:`lifecycle.record_created` (one statement on PostgreSQL) is
checked and written exactly like :meth:`Video.save`, on both backends."""

from __future__ import annotations

import pytest
from tortoise.exceptions import IntegrityError, ValidationError

from tests.api.conftest import StatementCounter
from vidgen.jobs import lifecycle
from vidgen.models import Story, Tag, User, Video, VideoStatusEvent

# fair_rank: the insert computes the turn (save() writes the default, 0; the inserted
# video comes after the saved one of the same owner and priority: 1).
COMPARED_AWAY = {"id", "created_at", "updated_at", "idempotency_key", "fair_rank"}


async def make_user() -> User:
    return await User.create(email="a@example.com", password_hash="x")


def new_video(owner: User, **values: object) -> Video:
    fields: dict[str, object] = dict(
        owner_id=owner.id, created_by_id=owner.id, prompt="a fox", provider="local",
        resolution="512x512",
    )  # fmt: skip
    fields.update(values)
    return Video(**fields)


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
    with pytest.raises(ValidationError, match=match):
        await lifecycle.record_created(new_video(user, **values), actor="t", paragraph_count=count)
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
