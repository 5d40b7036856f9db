"""generateVideo writes exactly the queued video, its first history row and its tag links,
after one lookup of everything the request names; a repeated idempotency key wins over
any other error in the request; a failed insert leaves no new tag or theme behind."""

from __future__ import annotations

import asyncio

import pytest

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, row_counts
from vidgen.events.channels import WAKEUP_CHANNEL, owner_channel
from vidgen.jobs import lifecycle
from vidgen.models import Tag, Theme, Video, VideoStatus, VideoStatusEvent
from vidgen.services import catalog, videos

GENERATE_SMALL = """
mutation GenerateVideo($input: GenerateVideoInput!) {
  generateVideo(input: $input) {
    id status version prompt paragraphIndex project { id } story { id } theme { name }
    tags { name } statusHistory { status message }
  }
}
"""


def gid(type_name: str, node_id: int) -> str:
    from strawberry.relay import to_base64

    return to_base64(type_name, node_id)


async def generate(server: LiveServer, token: str, **input_: object) -> dict:
    body = await server.gql(GENERATE_SMALL, {"input": {"prompt": "a cat", **input_}}, token=token)
    assert "errors" not in body, body
    return body["data"]["generateVideo"]


async def test_writes_the_video_its_history_row_and_tag_links(
    live_server: LiveServer, alice: Account
) -> None:
    viewer = alice.user
    project = await catalog.create_project(viewer=viewer, name="P")
    story = await catalog.create_story(
        viewer=viewer, title="S", project_id=project.id, paragraphs=["a", "b", "c"]
    )
    await catalog.ensure_tags(owner_id=viewer.id, names=["Fox"])
    await catalog.ensure_theme(owner_id=viewer.id, name="Dusk")

    bus = live_server.runtime.bus
    async with (
        bus.subscribe(owner_channel(viewer.id)) as sub,
        bus.subscribe(WAKEUP_CHANNEL) as wakeups,
    ):
        node = await generate(
            live_server,
            alice.token,
            storyId=gid("Story", story.id),  # the story's project is the video's
            paragraphIndex=2,
            theme=" dusk ",
            tags=["fox", "  New   Tag ", "FOX"],
            idempotencyKey="key-1",
            priority=3,
        )
        message = await asyncio.wait_for(sub.get(), 5)
        wakeup = await asyncio.wait_for(wakeups.get(), 5)

    assert node["status"] == "QUEUED" and node["version"] == 1
    assert node["project"] == {"id": gid("Project", project.id)}
    assert node["story"] == {"id": gid("Story", story.id)} and node["paragraphIndex"] == 2
    assert node["theme"] == {"name": "Dusk"}  # reused, not a second theme
    assert sorted(t["name"] for t in node["tags"]) == ["Fox", "New Tag"]
    assert node["statusHistory"] == [{"status": "QUEUED", "message": "queued"}]

    video = await Video.get(prompt="a cat")
    assert (video.owner_id, video.created_by_id, video.project_id, video.story_id) == (
        viewer.id,
        viewer.id,
        project.id,
        story.id,
    )
    assert video.status == VideoStatus.QUEUED and video.version == 1 and video.attempt == 0
    assert video.idempotency_key == "key-1" and video.priority == 3
    assert (video.provider, video.resolution, video.duration_seconds) == ("local", "1024x1024", 5.0)
    assert video.max_retries == live_server.settings.max_retries
    assert video.created_at is not None and video.updated_at is not None
    assert await Tag.filter(owner_id=viewer.id).count() == 2
    assert await Theme.filter(owner_id=viewer.id).count() == 1

    (event,) = await VideoStatusEvent.filter(video_id=video.id)
    assert (event.owner_id, event.from_status, event.to_status, event.version) == (
        viewer.id,
        None,
        "queued",
        1,
    )
    assert (event.message, event.actor) == ("queued", f"user:{viewer.id}")
    # Published after the commit, with the history row's id as the cursor.
    assert message["video_id"] == video.id and message["event_id"] == event.id
    assert message["version"] == 1 and message["status"] == "queued"
    assert message["project_id"] == project.id and message["story_id"] == story.id
    assert wakeup == {"type": "wakeup"}  # idle workers look for due jobs


async def test_a_new_theme_and_new_tags_are_created_once(
    live_server: LiveServer, alice: Account
) -> None:
    first = await generate(live_server, alice.token, theme="Brand New", tags=["one", "two"])
    second = await generate(live_server, alice.token, theme="brand  new", tags=["TWO", "three"])
    assert first["theme"] == second["theme"] == {"name": "Brand New"}
    assert sorted(t["name"] for t in second["tags"]) == ["three", "two"]
    assert await Theme.all().count() == 1
    assert sorted(t.name for t in await Tag.all()) == ["one", "three", "two"]


async def test_a_repeated_key_wins_over_any_error_and_writes_nothing(
    live_server: LiveServer, alice: Account, bob: Account
) -> None:
    """The first video of a key is the answer, whatever else a repeat says (as before the
    lookup was merged: errors count only when no video of that key exists)."""
    story = await catalog.create_story(viewer=alice.user, title="S", paragraphs=["a"])
    theirs = await catalog.create_project(viewer=bob.user, name="Bob's")
    first = await generate(live_server, alice.token, idempotencyKey="k")
    before = await row_counts()
    for repeat in (
        {"prompt": ""},  # refused before any lookup
        {"provider": "nope"},
        {"projectId": gid("Project", theirs.id)},  # refused by the lookup
        {"storyId": gid("Story", story.id), "paragraphIndex": 5},
        {"paragraphIndex": 0},
        {"tags": ["brand new"], "theme": "also new"},  # would create both
    ):
        body = await live_server.gql(
            GENERATE_SMALL,
            {"input": {"prompt": "x", **repeat, "idempotencyKey": " k "}},
            token=alice.token,
        )
        assert body.get("errors") is None, (repeat, body)
        assert body["data"]["generateVideo"]["id"] == first["id"], repeat
        assert await row_counts() == before, repeat
    # Without the key the same requests are refused.
    body = await live_server.gql(
        GENERATE_SMALL,
        {"input": {"prompt": "x", "projectId": gid("Project", theirs.id)}},
        token=alice.token,
    )
    assert d.only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "projectId"}


async def test_racing_repeats_with_new_tags_make_one_video_and_one_of_each_tag(
    live_server: LiveServer, alice: Account
) -> None:
    results = await asyncio.gather(
        *(
            generate(
                live_server, alice.token, idempotencyKey="race", tags=["a", "b"], theme="fresh"
            )
            for _ in range(5)
        )
    )
    assert len({r["id"] for r in results}) == 1
    assert await Video.all().count() == 1 and await VideoStatusEvent.all().count() == 1
    assert await Tag.all().count() == 2 and await Theme.all().count() == 1
    counts = await row_counts()
    assert counts["video_tags"] == 2


@pytest.mark.parametrize("new_labels", [True, False])
async def test_a_failed_insert_leaves_nothing_behind(
    live_server: LiveServer, alice: Account, monkeypatch: pytest.MonkeyPatch, new_labels: bool
) -> None:
    await generate(live_server, alice.token, tags=["old"], theme="old")
    before = await row_counts()

    async def broken(*args, **kwargs):
        raise RuntimeError("the insert failed")

    monkeypatch.setattr(lifecycle, "record_created", broken)
    labels = {"tags": ["old", "new"], "theme": "new"} if new_labels else {"tags": ["old"]}
    body = await live_server.gql(
        GENERATE_SMALL, {"input": {"prompt": "p", **labels}}, token=alice.token
    )
    assert d.only_error(body)["extensions"]["code"] == "INTERNAL"
    assert await row_counts() == before


async def test_the_service_returns_the_row_it_wrote(
    live_server: LiveServer, alice: Account
) -> None:
    """The returned Video carries what a fresh read of its row says."""
    video = await videos.generate_video(
        runtime=live_server.runtime, viewer=alice.user, prompt=" a dog ", caption=" c ", tags=["x"]
    )
    again = await Video.get(id=video.id)
    for field in Video._meta.fields_db_projection:
        assert getattr(video, field) == getattr(again, field), field
    assert [t.name for t in await again.tags.all()] == ["x"]
