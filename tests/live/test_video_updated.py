"""videoUpdated over a real WebSocket (uvicorn, graphql-transport-ws) on both buses."""

from __future__ import annotations

from tests.live.conftest import gid, make_video
from tests.live.wsclient import GraphQLWS
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus

WATCH = """
subscription Watch($id: ID!) {
  videoUpdated(id: $id) {
    id status progress version eventCursor videoUrl
    owner { email } tags { name } statusHistory { status }
  }
}
"""


async def test_queued_processing_completed_in_order(live, accounts):
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init({"Authorization": f"Bearer {alice.token}"})
        op = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        first = await ws.next_data(op, "videoUpdated")
        assert (first["status"], first["version"]) == ("QUEUED", 1)
        assert first["owner"] == {"email": "alice@example.com"}
        assert first["statusHistory"] == [{"status": "QUEUED"}]

        bus = live.runtime.bus
        await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t", bus=bus)
        await lifecycle.touch(video.id, fields={"progress": 0.5}, bus=bus)
        await lifecycle.transition(video.id, VideoStatus.COMPLETED, actor="t", bus=bus)

        seen = [await ws.next_data(op, "videoUpdated") for _ in range(3)]
        assert [(s["status"], s["version"], s["progress"]) for s in seen] == [
            ("PROCESSING", 2, 0.0),
            ("PROCESSING", 3, 0.5),
            ("COMPLETED", 4, 1.0),
        ]
        assert seen[-1]["statusHistory"] == [
            {"status": "QUEUED"},
            {"status": "PROCESSING"},
            {"status": "COMPLETED"},
        ]
        assert int(seen[-1]["eventCursor"]) > int(first["eventCursor"])
        done = await ws.receive(op)
        assert done["type"] == "complete"
    finally:
        await ws.close()
