"""A film is live like any job, over a real WebSocket on both buses: videoUpdated on the
film follows it from queued to completed, and videoUpdates on its story sees every clip
complete before the film does."""

from __future__ import annotations

import asyncio

from tests.live.conftest import gid
from tests.live.wsclient import GraphQLWS
from vidgen.graphql import subscriptions
from vidgen.jobs.worker import start_embedded
from vidgen.services import catalog, films

WATCH = """
subscription Watch($id: ID!) {
  videoUpdated(id: $id) { id kind status version videoUrl }
}
"""

STORY_FEED = """
subscription Feed($story: ID!) {
  videoUpdates(storyId: $story) { id kind status paragraphIndex }
}
"""


async def test_film_and_clips_are_live_on_the_subscriptions(live, accounts) -> None:
    alice = await accounts("alice@example.com")
    story = await catalog.create_story(
        viewer=alice.user, title="Fox", paragraphs=["succeed one", "succeed two"]
    )
    ws = await GraphQLWS.open(live.ws_url)
    worker = None
    try:
        await ws.init({"Authorization": f"Bearer {alice.token}"})
        feed = await ws.subscribe(STORY_FEED, {"story": gid("Story", story.id)})
        # The feed replays nothing (no cursor): wait until it listens before anything runs.
        active = subscriptions.shared_for(live.runtime.bus).active
        for _ in range(200):
            if len(active):
                break
            await asyncio.sleep(0.05)
        film = await films.render_story(
            runtime=live.runtime,
            viewer=alice.user,
            story_id=story.id,
            provider="test",
            resolution="64x64",
        )
        watch = await ws.subscribe(WATCH, {"id": gid("Video", film.id)})
        first = await ws.next_data(watch, "videoUpdated")
        assert (first["kind"], first["status"]) == ("FILM", "QUEUED")
        worker = await start_embedded(live.runtime, concurrency=2)
        statuses = [first["status"]]
        while statuses[-1] != "COMPLETED":
            statuses.append((await ws.next_data(watch, "videoUpdated", within=30))["status"])
        assert statuses == ["QUEUED", "PROCESSING", "COMPLETED"]

        seen = []
        while not seen or seen[-1] != ("FILM", "COMPLETED"):
            update = await ws.next_data(feed, "videoUpdates", within=30)
            seen.append((update["kind"], update["status"]))
        film_done = len(seen) - 1
        clip_done = [
            i for i, (kind, status) in enumerate(seen) if kind == "CLIP" and status == "COMPLETED"
        ]
        assert len(clip_done) == 2 and max(clip_done) < film_done
    finally:
        if worker is not None:
            await worker.stop()
        await ws.close()
