"""renderStory over real HTTP: the film and its clips as clients see them, Story.film and
Story.clips once a worker has run, and bad requests answered with a code and nothing
written."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, row_counts
from vidgen.jobs.worker import Worker
from vidgen.services import catalog

RENDER = """
mutation Render($story: ID!, $input: RenderStoryInput) {
  renderStory(storyId: $story, input: $input) {
    id kind status paragraphIndex story { id } resolution durationSeconds
  }
}
"""

STORY = """
query Story($id: ID!) {
  story(id: $id) {
    film { id kind status durationSeconds width height videoUrl thumbnailUrl paragraphIndex }
    clips { kind status paragraphIndex prompt }
  }
}
"""


def gid(type_name: str, node_id: int) -> str:
    from strawberry.relay import to_base64

    return to_base64(type_name, node_id)


async def test_render_story_returns_a_queued_film_then_story_shows_it(
    live_server: LiveServer, alice: Account
) -> None:
    story = await catalog.create_story(
        viewer=alice.user, title="Fox", paragraphs=["succeed one", "succeed two"]
    )
    story_id = gid("Story", story.id)
    body = await live_server.gql(
        RENDER,
        {
            "story": story_id,
            "input": {
                "provider": "test",
                "resolution": "64x64",
                "durationSecondsPerParagraph": 2,
                "captions": True,
                "transition": "CROSSFADE",
            },
        },
        token=alice.token,
    )
    assert "errors" not in body, body
    film = body["data"]["renderStory"]
    assert film["kind"] == "FILM" and film["status"] == "QUEUED"
    assert film["paragraphIndex"] is None and film["story"] == {"id": story_id}
    assert film["durationSeconds"] == 4

    before = await live_server.gql(STORY, {"id": story_id}, token=alice.token)
    assert before["data"]["story"]["film"] is None
    assert [c["status"] for c in before["data"]["story"]["clips"]] == ["QUEUED", "QUEUED"]

    assert await Worker(live_server.runtime, concurrency=2).run_until_idle() == 3
    after = (await live_server.gql(STORY, {"id": story_id}, token=alice.token))["data"]["story"]
    assert after["film"]["id"] == film["id"]
    assert after["film"]["status"] == "COMPLETED" and after["film"]["kind"] == "FILM"
    assert (after["film"]["width"], after["film"]["height"]) == (64, 64)
    assert after["clips"] == [
        {"kind": "CLIP", "status": "COMPLETED", "paragraphIndex": 0, "prompt": "succeed one"},
        {"kind": "CLIP", "status": "COMPLETED", "paragraphIndex": 1, "prompt": "succeed two"},
    ]
    listed = await live_server.gql(
        "{ videos(first: 10) { edges { node { id kind paragraphIndex } } } }", token=alice.token
    )
    kinds = [e["node"]["kind"] for e in listed["data"]["videos"]["edges"]]
    assert sorted(kinds) == ["CLIP", "CLIP", "FILM"]
    # The film's media are served like any video's (signed, on the public URL).
    for name in ("videoUrl", "thumbnailUrl"):
        media = urlsplit(after["film"][name])
        got = await live_server.client.get(f"{media.path}?{media.query}")
        assert got.status_code == 200, name
    assert got.content[:2] == b"\xff\xd8"  # the thumbnail is a JPEG


async def test_bad_requests_are_refused_with_a_code_and_nothing_written(
    live_server: LiveServer, alice: Account, bob: Account
) -> None:
    empty = await catalog.create_story(viewer=alice.user, title="Empty", paragraphs=[])
    story = await catalog.create_story(viewer=alice.user, title="Fox", paragraphs=["succeed"])
    before = await row_counts()
    cases = [
        (alice, empty.id, {}, "BAD_USER_INPUT", "storyId"),
        (alice, story.id, {"provider": "nope"}, "BAD_USER_INPUT", "provider"),
        (alice, story.id, {"resolution": "3x3"}, "BAD_USER_INPUT", "resolution"),
        (
            alice,
            story.id,
            {"webhookUrl": "http://127.0.0.1:9/hook"},
            "BAD_USER_INPUT",
            "webhookUrl",
        ),
        (bob, story.id, {}, "NOT_FOUND", None),
    ]
    for account, story_id, options, code, field in cases:
        body = await live_server.gql(
            RENDER, {"story": gid("Story", story_id), "input": options}, token=account.token
        )
        error = d.only_error(body)
        assert error["extensions"]["code"] == code, body
        if field is not None:
            assert error["extensions"]["field"] == field, body
    body = await live_server.gql(RENDER, {"story": gid("Story", story.id)})
    assert d.only_error(body)["extensions"]["code"] == "UNAUTHENTICATED"
    assert await row_counts() == before


STORIES = """
{ stories(first: 10) { edges { node { title film { id kind } clips { paragraphIndex } } } } }
"""


async def test_story_films_and_clips_load_in_one_query_each_for_a_page(
    live_server: LiveServer, alice: Account, count_statements
) -> None:
    from vidgen.services import films

    async def counted() -> tuple[dict, int]:
        with count_statements.counting() as counter:
            counter.reset()
            body = await live_server.gql(STORIES, token=alice.token)
        assert "errors" not in body, body
        return body["data"]["stories"]["edges"], counter.count

    story = await catalog.create_story(viewer=alice.user, title="One", paragraphs=["succeed"])
    await films.render_story(
        runtime=live_server.runtime,
        viewer=alice.user,
        story_id=story.id,
        provider="test",
        resolution="64x64",
    )
    await Worker(live_server.runtime, concurrency=2).run_until_idle()
    await counted()  # the first request of a token also notes its use
    _, one = await counted()
    for title in ("Two", "Three"):
        await catalog.create_story(viewer=alice.user, title=title, paragraphs=["a", "b"])
    edges, three = await counted()
    assert three == one
    by_title = {e["node"]["title"]: e["node"] for e in edges}
    assert by_title["One"]["film"]["kind"] == "FILM"
    assert by_title["One"]["clips"] == [{"paragraphIndex": 0}]
    assert by_title["Two"] == {"title": "Two", "film": None, "clips": []}
