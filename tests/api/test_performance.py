"""No N+1: a page of videos selecting every relation runs the same, small number of SQL
statements whatever its size."""

from __future__ import annotations

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus
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

    # token + count + page + owner, project, story, theme, tags, history, latest event
    assert counts[10] == counts[100], count_statements.statements
    assert 3 <= counts[100] <= 10, count_statements.statements
