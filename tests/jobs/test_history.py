"""The event log of changes that keep the status: what the lifecycle writes (edit, soft
delete, restore) is exactly what a past view takes back (one list: history.UNDOABLE)."""

from __future__ import annotations

import datetime as dt

import pytest
from tortoise.transactions import in_transaction

from tests.jobs.conftest import make_video
from vidgen.events import history
from vidgen.jobs import lifecycle
from vidgen.models import Theme, Video, VideoStatusEvent


async def _log(video_id: int) -> list[VideoStatusEvent]:
    return await VideoStatusEvent.filter(video_id=video_id).order_by("id")


async def test_each_change_is_undone_by_the_view_of_an_older_version(db, user) -> None:
    video = await make_video(user, caption="first", video_style="noir")
    theme = await Theme.create(owner=user, name="Sea", name_key="sea")
    async with in_transaction():
        row = await lifecycle.locked(video.id).first()
        assert row is not None
        await lifecycle.edit(
            row, {"caption": "second", "theme_id": theme.id}, actor="user:1"
        )  # version 2
    assert await lifecycle.soft_delete(video.id, actor="user:1") is not None  # version 3
    assert await lifecycle.soft_delete(video.id, actor="user:1") is None  # already: no-op
    deleted_at = (await Video.get(id=video.id)).deleted_at
    assert await lifecycle.restore(video.id, actor="user:1") is not None  # version 4
    assert await lifecycle.restore(video.id, actor="user:1") is None

    now = await Video.get(id=video.id)
    log = await _log(video.id)
    assert now.version == 4 and [r.version for r in log] == [1, 2, 3, 4]
    assert [r.is_status_change for r in log] == [True, False, False, False]
    for version, caption, theme_id, was_deleted in [
        (1, "first", None, None),
        (2, "second", theme.id, None),
        (3, "second", theme.id, deleted_at),
    ]:
        past = history.view_at(now, log, version)
        assert (past.version, past.caption, past.theme_id) == (version, caption, theme_id)
        assert past.deleted_at == was_deleted
        assert past.video_style == "noir"
    assert now.caption == "second" and now.deleted_at is None  # the loaded row is untouched


async def test_a_change_of_a_column_no_view_can_undo_writes_nothing(db, user) -> None:
    video = await make_video(user)
    with pytest.raises(ValueError, match="not undoable"):
        async with in_transaction():
            row = await lifecycle.locked(video.id).first()
            assert row is not None
            await lifecycle.edit(row, {"prompt": "rewritten"}, actor="user:1")
    with pytest.raises(ValueError, match="own columns"):
        async with in_transaction():
            row = await lifecycle.locked(video.id).first()
            assert row is not None
            await lifecycle.edit(row, {"status": "failed"}, actor="user:1")
    again = await Video.get(id=video.id)
    assert (again.version, again.prompt, again.status) == (1, video.prompt, video.status)
    assert len(await _log(video.id)) == 1


def test_a_note_keeps_datetimes_as_text_and_reads_them_back() -> None:
    stamp = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    note = history.change_note("restored", {"deleted_at": stamp})
    row = VideoStatusEvent(from_status="queued", to_status="queued", message=note)
    assert history.values_before(row) == {"deleted_at": stamp}
    status_change = VideoStatusEvent(from_status="queued", to_status="processing", message=note)
    assert history.values_before(status_change) == {}
