"""Model constraints, on both backends."""

from __future__ import annotations

import pytest
from tortoise.exceptions import IntegrityError, ValidationError

from vidgen.models import (
    OutputFormat,
    Project,
    Story,
    Tag,
    Theme,
    User,
    Video,
    VideoStatus,
    normalize_name,
)


async def make_user(email: str = "a@example.com") -> User:
    return await User.create(email=email, password_hash="x")


async def make_video(owner: User, **kw) -> Video:
    values = dict(prompt="a red fox", provider="local", resolution="512x512")
    values.update(kw)
    return await Video.create(owner=owner, **values)


async def test_user_email_unique(db) -> None:
    await make_user()
    with pytest.raises(IntegrityError):
        await make_user()


async def test_tag_and_theme_unique_per_owner_by_normalised_name(db) -> None:
    alice, bob = await make_user("alice@x.io"), await make_user("bob@x.io")
    for model in (Tag, Theme):
        name, key = normalize_name("  Sunset   Glow ")
        assert (name, key) == ("Sunset Glow", "sunset glow")
        await model.create(owner=alice, name=name, name_key=key)
        await model.create(owner=bob, name=name, name_key=key)  # other owner: fine
        with pytest.raises(IntegrityError):
            await model.create(owner=alice, name="SUNSET GLOW", name_key="sunset glow")


async def test_video_defaults_and_m2m(db) -> None:
    user = await make_user()
    video = await make_video(user)
    assert video.status == VideoStatus.QUEUED
    assert video.version == 1 and video.attempt == 0 and video.progress == 0.0
    assert video.output_format == OutputFormat.MP4
    tag = await Tag.create(owner=user, name="fox", name_key="fox")
    await video.tags.add(tag)
    assert [t.name for t in await video.tags.all()] == ["fox"]


@pytest.mark.parametrize("bad", ["512", "512x", "x512", "0x512", "513x512", "512x99999", "aXb"])
async def test_resolution_is_validated(db, bad: str) -> None:
    user = await make_user()
    with pytest.raises(ValidationError, match="resolution"):
        await make_video(user, resolution=bad)
    assert await Video.all().count() == 0


async def test_output_format_is_validated(db) -> None:
    user = await make_user()
    with pytest.raises(ValueError):
        await make_video(user, output_format="gif")
    assert await Video.all().count() == 0


async def test_progress_bounds(db) -> None:
    user = await make_user()
    with pytest.raises(ValidationError):
        await make_video(user, progress=1.5)


async def test_paragraph_index_must_fall_inside_the_story(db) -> None:
    user = await make_user()
    story = await Story.create(owner=user, title="t", paragraphs=["one", "two"])
    ok = await make_video(user, story=story, paragraph_index=1)
    assert ok.paragraph_index == 1
    with pytest.raises(ValidationError, match="outside"):
        await make_video(user, story=story, paragraph_index=2)
    with pytest.raises(ValidationError):
        await make_video(user, story=story, paragraph_index=-1)
    with pytest.raises(ValidationError, match="needs a story"):
        await make_video(user, paragraph_index=0)
    assert await Video.all().count() == 1


async def test_idempotency_key_unique_per_owner(db) -> None:
    alice, bob = await make_user("alice@x.io"), await make_user("bob@x.io")
    await make_video(alice, idempotency_key="k1")
    await make_video(bob, idempotency_key="k1")
    await make_video(alice)  # NULL keys never collide
    await make_video(alice)
    with pytest.raises(IntegrityError):
        await make_video(alice, idempotency_key="k1")


async def test_deleting_project_or_story_sets_null(db) -> None:
    """SET NULL: the videos stay, they only leave the deleted project or story."""
    user = await make_user()
    project = await Project.create(owner=user, name="p")
    story = await Story.create(owner=user, title="s", project=project, paragraphs=["a"])
    theme = await Theme.create(owner=user, name="t", name_key="t")
    video = await make_video(user, project=project, story=story, theme=theme, paragraph_index=0)
    await project.delete()
    await video.refresh_from_db()
    await story.refresh_from_db()
    assert video.project_id is None and video.story_id == story.id
    assert story.project_id is None
    await story.delete()
    await theme.delete()
    await video.refresh_from_db()
    assert video.story_id is None and video.theme_id is None


async def test_deleting_user_cascades(db) -> None:
    user = await make_user()
    await make_video(user)
    await Project.create(owner=user, name="p")
    await user.delete()
    assert await Video.all().count() == 0 and await Project.all().count() == 0
