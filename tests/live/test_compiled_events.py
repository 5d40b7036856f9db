"""Subscription events answered from the compiled plans (vidgen.graphql.compiled), over real
WebSockets: a selection the plans cover is built from the shared row without graphql-core's
executor; one they do not cover (a relation) runs through Strawberry; both answer the same
values for the same fields."""

from __future__ import annotations

from graphql import GraphQLSchema
from starlette.routing import WebSocketRoute

from tests.api.conftest import LiveServer
from tests.live.conftest import gid, make_video
from tests.live.wsclient import GraphQLWS
from vidgen.graphql.compiled import CompiledPlans, plans_for
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus

COVERED = """
subscription Covered($id: ID!) {
  videoUpdated(id: $id) { __typename id version status statusMessage progress kind prompt }
}
"""

RELATION = """
subscription Relation($id: ID!) {
  videoUpdated(id: $id) {
    __typename id version status statusMessage progress kind prompt owner { email }
  }
}
"""


def _plans(live: LiveServer) -> CompiledPlans:
    for route in live.app.routes:
        if isinstance(route, WebSocketRoute) and route.path == "/graphql":
            schema: GraphQLSchema = route.endpoint.schema._schema  # type: ignore[attr-defined]
            return plans_for(schema, live.runtime.settings)
    raise AssertionError("no /graphql WebSocket route")


async def test_covered_events_come_from_plans_with_strawberrys_values(
    live: LiveServer, accounts
) -> None:
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    plans = _plans(live)
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init({"Authorization": f"Bearer {alice.token}"})
        covered = await ws.subscribe(COVERED, {"id": gid("Video", video.id)})
        relation = await ws.subscribe(RELATION, {"id": gid("Video", video.id)})
        first = [await ws.next_data(op, "videoUpdated") for op in (covered, relation)]
        before = plans.events
        bus = live.runtime.bus
        await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t", bus=bus)
        await lifecycle.touch(video.id, fields={"progress": 0.5}, bus=bus)
        got = {
            name: [await ws.next_data(op, "videoUpdated") for _ in range(2)]
            for name, op in (("covered", covered), ("relation", relation))
        }
    finally:
        await ws.close()
    for seen in got["relation"]:
        assert seen.pop("owner") == {"email": alice.email}
    assert got["covered"] == got["relation"]  # the same values for the same fields
    assert [(s["version"], s["status"], s["progress"], s["kind"]) for s in got["covered"]] == [
        (2, "PROCESSING", 0.0, "CLIP"),
        (3, "PROCESSING", 0.5, "CLIP"),
    ]
    assert first[0]["id"] == first[1]["id"] == gid("Video", video.id)
    # The covered document's two events came from its plan; the relation's did not.
    assert plans.events - before == 2
