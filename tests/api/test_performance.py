"""No N+1: a page of videos selecting every relation runs the same, small number of SQL
statements whatever its size; generateVideo runs a fixed, small number."""

from __future__ import annotations

from strawberry.relay import GlobalID

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen.jobs import lifecycle
from vidgen.models import Video, VideoStatus, VideoStatusEvent
from vidgen.services import catalog, videos


async def test_videos_page_runs_a_constant_number_of_statements(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter
) -> None:
    runtime = live_server.runtime
    viewer = alice.user
    projects = [await catalog.create_project(viewer=viewer, name=f"P{i}") for i in range(3)]
    stories = [
        await catalog.create_story(
            viewer=viewer, title=f"S{i}", project_id=projects[i].id, paragraphs=["a", "b"]
        )
        for i in range(3)
    ]
    for i in range(100):
        video = await videos.generate_video(
            runtime=runtime,
            viewer=viewer,
            prompt=f"video {i}",
            project_id=projects[i % 3].id,
            story_id=stories[i % 3].id,
            paragraph_index=i % 2,
            theme=f"theme {i % 4}",
            tags=[f"tag{i % 5}", f"tag{i % 7}"],
        )
        if i % 10 == 0:  # some longer histories
            await lifecycle.transition(video.id, VideoStatus.CANCELED, actor="test")

    await live_server.gql(d.VIEWER, token=alice.token)  # token use recorded (throttled after)

    counts = {}
    for first in (10, 100):
        with count_statements.counting() as counter:
            counter.reset()
            body = await live_server.gql(d.VIDEOS, {"first": first}, token=alice.token)
        assert "errors" not in body, body
        page = body["data"]["videos"]
        assert len(page["edges"]) == first and page["totalCount"] == 100
        node = page["edges"][-1]["node"]
        assert node["owner"]["email"] == alice.email and node["tags"] and node["statusHistory"]
        counts[first] = counter.count

    # token + page with everything (compiled, PostgreSQL) up to token + count + page + owner,
    # project, story, theme, tags, history, latest event
    assert counts[10] == counts[100], count_statements.statements
    assert 2 <= counts[100] <= 10, count_statements.statements


GENERATE_SMALL = """
mutation GenerateVideo($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id status createdAt }
}
"""


async def test_generate_video_runs_three_statements_on_postgres(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter, backend: str
) -> None:
    """token + one lookup (project, story, theme, tags, idempotency key) + one statement that
    inserts the video, its history row and its tag links. SQLite sends the last three
    inserts separately (no data-modifying CTEs), in one transaction."""
    viewer = alice.user
    project = await catalog.create_project(viewer=viewer, name="P")
    story = await catalog.create_story(
        viewer=viewer, title="S", project_id=project.id, paragraphs=["a", "b"]
    )
    await catalog.ensure_tags(owner_id=viewer.id, names=["t1", "t2", "t3"])
    await catalog.ensure_theme(owner_id=viewer.id, name="dusk")
    await live_server.gql(d.VIEWER, token=alice.token)  # token use recorded (throttled after)

    def request(i: int) -> dict:
        return {
            "input": {
                "prompt": f"video {i}",
                "projectId": str(GlobalID("Project", str(project.id))),
                "storyId": str(GlobalID("Story", str(story.id))),
                "paragraphIndex": 1,
                "theme": "Dusk",
                "tags": ["t1", "T2", "t3"],
                "idempotencyKey": f"key-{i}",
            }
        }

    with count_statements.counting() as counter:
        counter.reset()
        body = await live_server.gql(GENERATE_SMALL, request(1), token=alice.token)
    assert "errors" not in body, body
    expected = 3 if backend == "postgres" else 5
    assert counter.count == expected, count_statements.statements
    video = await Video.get(idempotency_key="key-1")
    assert len(await video.tags.all()) == 3
    assert await VideoStatusEvent.filter(video_id=video.id).count() == 1
