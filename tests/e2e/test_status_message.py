"""What a provider says while a job runs (fal's queue position, a log line) reaches the API."""

from __future__ import annotations

from tests.api.conftest import LiveServer
from tests.e2e.conftest import (
    Sims,
    generate_for,
    one_backend,
    running_worker,
    wait_for_status,
    wait_until,
)
from vidgen.models import Video
from vidgen.runtime import Runtime

STATUS = """
query($id: ID!) { video(id: $id) { status statusMessage progress } }
"""


@one_backend
async def test_fal_queue_position_shows_as_status_message(
    server: LiveServer, runtime: Runtime, sims: Sims, token: str
) -> None:
    sim = sims["fal"]
    sim.scenario.queued_polls = 1_000_000  # stays in the queue until we have looked
    video_id, gid = await generate_for(server, token, "fal")
    async with running_worker(runtime, concurrency=1):

        async def queued_message() -> dict | None:
            body = await server.gql(STATUS, {"id": gid}, token=token)
            video = body["data"]["video"]
            return video if video["statusMessage"] else None

        seen = await wait_until(queued_message, seconds=15)
        assert seen["status"] == "PROCESSING"
        assert seen["statusMessage"].startswith("queue position")
        sim.scenario.queued_polls = 0
        sim.scenario.running_polls = 0
        done = await wait_for_status(video_id, seconds=20)
    assert done.status == "completed"
    # Kept on the row for the record, but only shown while the video is processing.
    assert (await Video.get(id=video_id)).status_message
    body = await server.gql(STATUS, {"id": gid}, token=token)
    assert body["data"]["video"]["statusMessage"] is None
