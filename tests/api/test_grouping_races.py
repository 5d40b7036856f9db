"""generateVideo against a concurrent deleteProject/deleteStory/updateStory: the request is
answered like one that named a missing project, story or paragraph (BAD_USER_INPUT on that
field, nothing written), never INTERNAL, and a story is never shortened under a video."""

from __future__ import annotations

import asyncio
import io

import asyncpg
import pytest

from tests.api.conftest import Account, LiveServer, row_counts
from vidgen import errors
from vidgen.models import Project, Story, Video
from vidgen.services import catalog, videos
from vidgen.services.videos import generation, named_rows


async def _never_folded(*args, **kwargs):
    return None


def _after_lookup(monkeypatch: pytest.MonkeyPatch, meanwhile) -> None:
    """Run ``meanwhile()`` once, right after generate_video's lookup: the other request
    committing between the checks and the insert. (On PostgreSQL the usual request has no
    lookup of its own: its insert finds the rows it names, in the same statement. Here it
    takes the way with the lookup, which a request naming a new tag takes, and which
    answers when that statement wrote nothing.)"""
    monkeypatch.setattr(generation, "_insert_folded", _never_folded)
    real = named_rows.find_named_rows
    done = False

    async def lookup(**kwargs):
        nonlocal done
        found = await real(**kwargs)
        if not done:
            done = True
            await meanwhile()
        return found

    monkeypatch.setattr(named_rows, "find_named_rows", lookup)


async def _refused_on(field: str, live_server: LiveServer, alice: Account, **request) -> None:
    with pytest.raises(errors.BadUserInput) as caught:
        await videos.generate_video(
            runtime=live_server.runtime, viewer=alice.user, prompt="a cat", **request
        )
    assert caught.value.field == field


async def test_a_project_deleted_meanwhile(live_server: LiveServer, alice: Account, monkeypatch):
    project = await catalog.create_project(viewer=alice.user, name="Gone")

    async def delete() -> None:
        await Project.filter(id=project.id).delete()

    before = await row_counts()
    _after_lookup(monkeypatch, delete)
    await _refused_on("projectId", live_server, alice, project_id=project.id)
    counts = await row_counts()
    assert counts.pop("projects") == before.pop("projects") - 1
    assert counts == before


async def test_a_story_deleted_meanwhile(live_server: LiveServer, alice: Account, monkeypatch):
    for paragraph in (None, 0):
        story = await catalog.create_story(viewer=alice.user, title="Gone", paragraphs=["a"])

        async def delete(story: Story = story) -> None:
            await Story.filter(id=story.id).delete()

        _after_lookup(monkeypatch, delete)
        await _refused_on(
            "storyId", live_server, alice, story_id=story.id, paragraph_index=paragraph
        )
        monkeypatch.undo()
    assert await Video.all().count() == 0


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("image", [False, True], ids=["text", "with-image"])
async def test_a_story_shortened_meanwhile(
    live_server: LiveServer, alice: Account, monkeypatch, image: bool
):
    # Without an image the insert statement re-checks the paragraph under its lock; with
    # one (the video is saved before its history row) the transaction checks it first.
    story = await catalog.create_story(viewer=alice.user, title="T", paragraphs=["a", "b", "c"])

    async def shorten() -> None:
        await catalog.update_story(viewer=alice.user, story_id=story.id, paragraphs=["a"])

    _after_lookup(monkeypatch, shorten)
    extra = {"input_image": _png(), "provider": "local"} if image else {}
    await _refused_on(
        "paragraphIndex", live_server, alice, story_id=story.id, paragraph_index=2, **extra
    )
    assert await Video.all().count() == 0


@pytest.mark.postgres_only
async def test_update_story_waits_for_a_video_being_added_to_its_last_paragraph(
    live_server: LiveServer, alice: Account
) -> None:
    # Another connection is adding a video to paragraph 2 (its transaction holds the story
    # share-locked, as generate_video's does) when updateStory tries to cut the story to one
    # paragraph: the update must wait for that commit, then see the video and refuse.
    story = await catalog.create_story(viewer=alice.user, title="T", paragraphs=["a", "b", "c"])
    conn = await asyncpg.connect(live_server.settings.database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM stories WHERE id = $1 FOR SHARE", story.id)
        await conn.execute(
            "INSERT INTO videos (owner_id, prompt, provider, status, progress, resolution,"
            " output_format, retry_count, max_retries, rescue_count, priority, attempt,"
            " cancel_requested, version, created_at, updated_at, story_id, paragraph_index)"
            " VALUES ($1, 'p', 'test', 'queued', 0, '64x64', 'mp4', 0, 3, 0, 0, 0, false, 1,"
            " now(), now(), $2, 2)",
            alice.user.id,
            story.id,
        )
        update = asyncio.create_task(
            catalog.update_story(viewer=alice.user, story_id=story.id, paragraphs=["a"])
        )
        await asyncio.sleep(0.3)
        assert not update.done(), "the update must wait for the adding transaction"
        await tx.commit()
        with pytest.raises(errors.BadUserInput) as caught:
            await update
        assert caught.value.field == "paragraphs"
    finally:
        await conn.close()
    assert len((await Story.get(id=story.id)).paragraphs) == 3
