"""Tags, themes, projects and stories under concurrent requests, and label names that only
look short: every client mistake or lost race is answered as BAD_USER_INPUT or NOT_FOUND
(never INTERNAL), and what is stored stays consistent.

The races run many rounds through the service layer with ``asyncio.gather`` (on PostgreSQL
the requests really overlap, each on its own connection); the tests assert the invariant
each round, not any timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from tests.api.conftest import Account, LiveServer, StatementCounter, row_counts
from vidgen import dialect, errors
from vidgen.models import Project, Story, Tag, Theme, Video
from vidgen.runtime import Runtime
from vidgen.services import catalog, videos
from vidgen.settings import Settings

ROUNDS = 12


@pytest_asyncio.fixture
async def runtime(db: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(db)
    try:
        yield runtime
    finally:
        await runtime.close()


async def _generate(runtime: Runtime, account: Account, **request: Any) -> Video:
    request.setdefault("prompt", "a cat")
    return await videos.generate_video(runtime=runtime, viewer=account.user, **request)


async def _tag_names(video: Video) -> set[str]:
    return {tag.name for tag in await Tag.filter(videos__id=video.id)}


async def _outcomes(*calls: Awaitable[Any]) -> list[Any]:
    """Each call's result, or the exception it raised."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


# --- 1. new tags created in different orders ---------------------------------------------


async def test_new_tags_in_opposite_orders_do_not_deadlock(
    runtime: Runtime, alice: Account
) -> None:
    for r in range(ROUNDS):
        names = [f"n{r}-{i}" for i in range(1, 4)]
        made = await _outcomes(
            _generate(runtime, alice, tags=names),
            _generate(runtime, alice, tags=names[::-1]),
            _generate(runtime, alice, tags=[names[1], names[2], names[0]]),
        )
        assert all(isinstance(v, Video) for v in made), made
        for video in made:
            assert await _tag_names(video) == set(names)
        assert await Tag.filter(name_key__in=names).count() == 3


async def test_update_video_with_new_tags_in_opposite_orders_does_not_deadlock(
    runtime: Runtime, alice: Account
) -> None:
    first, second = await _generate(runtime, alice), await _generate(runtime, alice)
    for r in range(ROUNDS):
        names = [f"s{r}-{i}" for i in range(1, 5)]
        done = await _outcomes(
            videos.update_video(runtime=runtime, viewer=alice.user, video_id=first.id, tags=names),
            videos.update_video(
                runtime=runtime, viewer=alice.user, video_id=second.id, tags=names[::-1]
            ),
        )
        assert all(isinstance(v, Video) for v in done), done
        assert await _tag_names(first) == await _tag_names(second) == set(names)
        assert await Tag.filter(name_key__in=names).count() == 4


async def test_ensure_tags_keeps_the_order_and_creates_each_tag_once(
    db: Settings, alice: Account
) -> None:
    owner_id = alice.user.id
    await catalog.ensure_tags(owner_id=owner_id, names=["b"])
    got = await catalog.ensure_tags(owner_id=owner_id, names=["c", "B", "a", "C"])
    assert [t.name_key for t in got] == ["c", "b", "a"]
    again = await catalog.ensure_tags(owner_id=owner_id, names=["A", "b", "c"])
    assert [t.id for t in again] == [got[2].id, got[1].id, got[0].id]
    assert await Tag.filter(owner_id=owner_id).count() == 3


async def test_generate_video_with_new_tags_runs_few_statements(
    runtime: Runtime, alice: Account, count_statements: StatementCounter
) -> None:
    """New tags cost two statements together (insert them, read them back), not several
    per tag; on PostgreSQL also the insert of the video by itself, since the statement that
    inserts a video and finds the tags it names (one in all without new tags) wrote nothing
    when it found some missing."""
    await _generate(runtime, alice, tags=["old"])  # the viewer's first writes are done
    with count_statements.counting() as counter:
        counter.reset()
        await _generate(runtime, alice, tags=["old", "one"])
        with_one_new = counter.count
        counter.reset()
        await _generate(runtime, alice, tags=["old", *(f"new{i}" for i in range(8))])
        with_new = counter.count
        counter.reset()
        await _generate(runtime, alice, tags=["old", *(f"new{i}" for i in range(8))])
        without_new = counter.count
    assert with_new == with_one_new, count_statements.statements
    extra = 3 if dialect.is_postgres() else 2
    assert with_new <= without_new + extra, count_statements.statements


# --- 2. concurrent tag changes on one video -----------------------------------------------


async def test_concurrent_tag_updates_on_one_video_last_writer_wins(
    runtime: Runtime, alice: Account
) -> None:
    video = await _generate(runtime, alice, tags=["e1", "e2", "e3", "e4"])
    big_a = [f"a{i}" for i in range(catalog.MAX_TAGS)]
    big_b = [f"b{i}" for i in range(catalog.MAX_TAGS)]
    for names in (big_a, big_b):
        await catalog.ensure_tags(owner_id=alice.user.id, names=names)
    for r in range(ROUNDS):
        lists = (["e1", "e2"], ["e3", "e4"]) if r % 2 else (big_a, big_b)
        done = await _outcomes(
            *(
                videos.update_video(
                    runtime=runtime, viewer=alice.user, video_id=video.id, tags=names
                )
                for names in lists
            )
        )
        assert all(isinstance(v, Video) for v in done), done
        assert await _tag_names(video) in ({*lists[0]}, {*lists[1]}), r


async def test_concurrent_caption_and_tag_updates_keep_both(
    runtime: Runtime, alice: Account
) -> None:
    video = await _generate(runtime, alice, tags=["x"])
    for r in range(ROUNDS):
        done = await _outcomes(
            videos.update_video(
                runtime=runtime, viewer=alice.user, video_id=video.id, caption=f"c{r}"
            ),
            videos.update_video(
                runtime=runtime, viewer=alice.user, video_id=video.id, tags=[f"t{r}"]
            ),
        )
        assert all(isinstance(v, Video) for v in done), done
        await video.refresh_from_db()
        assert video.caption == f"c{r}" and await _tag_names(video) == {f"t{r}"}


@pytest.mark.postgres_only
async def test_update_and_restore_video_lock_the_row_even_for_tags_only(
    runtime: Runtime, alice: Account, count_statements: StatementCounter
) -> None:
    video = await _generate(runtime, alice, tags=["x"])
    for change in ({"tags": ["y"]}, {"caption": "hi"}, {"theme": "dusk", "tags": []}):
        with count_statements.counting() as counter:
            counter.reset()
            await videos.update_video(
                runtime=runtime, viewer=alice.user, video_id=video.id, **change
            )
        locks = [s for s in counter.statements if "FOR UPDATE" in s and '"videos"' in s]
        assert locks, (change, counter.statements)
    # restoreVideo reads deleted_at under the same lock.
    await videos.delete_video(runtime=runtime, viewer=alice.user, video_id=video.id)
    with count_statements.counting() as counter:
        counter.reset()
        await videos.restore_video(runtime=runtime, viewer=alice.user, video_id=video.id)
    assert any("FOR UPDATE" in s for s in counter.statements), counter.statements


# --- 3. names whose case-folded key is too long; canonical equivalence --------------------

LONG_KEYS = ["ß" * 51, "ﬃ" * 60, "İ" * 100]


@pytest.mark.parametrize("name", LONG_KEYS, ids=["sharp-s", "ffi", "dotted-I"])
async def test_a_label_whose_key_is_too_long_is_bad_input(
    runtime: Runtime, alice: Account, name: str
) -> None:
    video = await _generate(runtime, alice, tags=["ok"], theme="fine")
    before = await row_counts()
    requests: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("tags", lambda: _generate(runtime, alice, tags=["ok", name])),
        ("theme", lambda: _generate(runtime, alice, theme=name)),
        (
            "tags",
            lambda: videos.update_video(
                runtime=runtime, viewer=alice.user, video_id=video.id, tags=[name]
            ),
        ),
        (
            "theme",
            lambda: videos.update_video(
                runtime=runtime, viewer=alice.user, video_id=video.id, theme=name
            ),
        ),
        ("tags", lambda: catalog.ensure_tags(owner_id=alice.user.id, names=[name])),
        ("theme", lambda: catalog.ensure_theme(owner_id=alice.user.id, name=name)),
    ]
    for field, request in requests:
        with pytest.raises(errors.BadUserInput) as caught:
            await request()
        assert caught.value.field == field
    assert await row_counts() == before
    assert await _tag_names(video) == {"ok"}


async def test_a_label_whose_key_is_too_long_over_graphql(
    live_server: LiveServer, alice: Account
) -> None:
    mutation = "mutation($i: GenerateVideoInput!) { generateVideo(input: $i) { id } }"
    for extra, field in (({"tags": ["ß" * 51]}, "tags"), ({"theme": "ﬃ" * 60}, "theme")):
        body = await live_server.gql(
            mutation, {"i": {"prompt": "a cat", **extra}}, token=alice.token
        )
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == field, error
    assert await Video.all().count() == 0


async def test_canonically_equivalent_names_are_one_label(runtime: Runtime, alice: Account) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    video = await _generate(runtime, alice, tags=[composed, decomposed.upper()], theme=decomposed)
    assert await Tag.filter(owner_id=alice.user.id).count() == 1
    [tag] = await Tag.filter(owner_id=alice.user.id)
    assert tag.name == composed and tag.name_key == composed
    again = await catalog.ensure_tags(owner_id=alice.user.id, names=[decomposed])
    assert [t.id for t in again] == [tag.id]
    theme = await catalog.ensure_theme(owner_id=alice.user.id, name=composed.upper())
    assert theme.id == video.theme_id and theme.name == composed
    assert await Theme.filter(owner_id=alice.user.id).count() == 1
    listed = await videos.list_videos(viewer=alice.user, tag=decomposed)
    assert [v.id for v in listed] == [video.id]
    listed = await videos.list_videos(viewer=alice.user, theme=composed)
    assert [v.id for v in listed] == [video.id]


# --- 4. a story attached to a project being deleted ---------------------------------------


def _delete_after_check(monkeypatch: pytest.MonkeyPatch, project: Project) -> None:
    """Delete ``project`` once, right after catalog has checked it exists: the other request
    committing between the check and the write."""
    real = catalog.owned_project
    done = False

    async def owned_project(**kwargs: Any) -> Project:
        nonlocal done
        found = await real(**kwargs)
        if not done:
            done = True
            await Project.filter(id=project.id).delete()
        return found

    monkeypatch.setattr(catalog, "owned_project", owned_project)


async def test_create_story_in_a_project_deleted_meanwhile(
    db: Settings, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await catalog.create_project(viewer=alice.user, name="Gone")
    _delete_after_check(monkeypatch, project)
    with pytest.raises(errors.BadUserInput) as caught:
        await catalog.create_story(viewer=alice.user, title="T", project_id=project.id)
    assert caught.value.field == "projectId"
    assert await Story.all().count() == 0


@pytest.mark.parametrize("paragraphs", [False, True], ids=["title", "with-paragraphs"])
async def test_update_story_into_a_project_deleted_meanwhile(
    db: Settings, alice: Account, monkeypatch: pytest.MonkeyPatch, paragraphs: bool
) -> None:
    story = await catalog.create_story(viewer=alice.user, title="T", paragraphs=["a"])
    project = await catalog.create_project(viewer=alice.user, name="Gone")
    _delete_after_check(monkeypatch, project)
    extra = {"paragraphs": ["a", "b"]} if paragraphs else {}
    with pytest.raises(errors.BadUserInput) as caught:
        await catalog.update_story(
            viewer=alice.user, story_id=story.id, title="New", project_id=project.id, **extra
        )
    assert caught.value.field == "projectId"
    stored = await Story.get(id=story.id)
    assert (stored.title, stored.project_id, stored.paragraphs) == ("T", None, ["a"])


async def test_stories_racing_delete_project(db: Settings, alice: Account) -> None:
    story = await catalog.create_story(viewer=alice.user, title="T")
    for _ in range(ROUNDS):
        project = await catalog.create_project(viewer=alice.user, name="P")
        done = await _outcomes(
            catalog.create_story(viewer=alice.user, title="S", project_id=project.id),
            catalog.update_story(viewer=alice.user, story_id=story.id, project_id=project.id),
            catalog.delete_project(viewer=alice.user, project_id=project.id),
        )
        for outcome in done[:2]:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, errors.BadUserInput), outcome
                assert outcome.field == "projectId"
        assert done[2] is True
        assert not await Story.filter(project_id=project.id).exists()


# --- 5. deleting the same project or story at once ----------------------------------------


async def test_concurrent_deletes_of_one_project_delete_once(db: Settings, alice: Account) -> None:
    for _ in range(ROUNDS):
        project = await catalog.create_project(viewer=alice.user, name="P")
        done = await _outcomes(
            *(catalog.delete_project(viewer=alice.user, project_id=project.id) for _ in range(3))
        )
        assert done.count(True) == 1, done
        assert all(isinstance(o, errors.NotFound) for o in done if o is not True), done
    # A later one answers the same way.
    with pytest.raises(errors.NotFound):
        await catalog.delete_project(viewer=alice.user, project_id=project.id)


async def test_concurrent_deletes_of_one_story_delete_once(
    runtime: Runtime, alice: Account
) -> None:
    for _ in range(ROUNDS):
        story = await catalog.create_story(viewer=alice.user, title="S", paragraphs=["a"])
        video = await _generate(runtime, alice, story_id=story.id, paragraph_index=0)
        done = await _outcomes(
            *(catalog.delete_story(viewer=alice.user, story_id=story.id) for _ in range(3))
        )
        assert done.count(True) == 1, done
        assert all(isinstance(o, errors.NotFound) for o in done if o is not True), done
        await video.refresh_from_db()
        assert (video.story_id, video.paragraph_index) == (None, None)
    with pytest.raises(errors.NotFound):
        await catalog.delete_story(viewer=alice.user, story_id=story.id)


async def test_another_users_project_and_story_are_not_deleted(
    db: Settings, alice: Account, bob: Account
) -> None:
    project = await catalog.create_project(viewer=alice.user, name="P")
    story = await catalog.create_story(viewer=alice.user, title="S")
    with pytest.raises(errors.NotFound):
        await catalog.delete_project(viewer=bob.user, project_id=project.id)
    with pytest.raises(errors.NotFound):
        await catalog.delete_story(viewer=bob.user, story_id=story.id)
    assert await Project.exists(id=project.id) and await Story.exists(id=story.id)
