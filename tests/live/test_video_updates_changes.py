"""videoUpdates(after:) replays updateVideo, deleteVideo and restoreVideo like status changes:
each has its own eventCursor, is replayed in commit order with the video as it was then, and
statusHistory still lists status changes only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.live.conftest import gid, make_video
from tests.live.wsclient import GraphQLWS
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus

S = VideoStatus

FIELDS = "id status version eventCursor caption deletedAt statusHistory { status }"

FEED = f"""
subscription Feed($after: String) {{
  videoUpdates(after: $after) {{ {FIELDS} }}
}}
"""

HISTORY = ["QUEUED", "PROCESSING", "COMPLETED"]


async def gql(live, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = await live.client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def update(live, token: str, video_id: str, caption: str) -> dict[str, Any]:
    query = (
        "mutation($id: ID!, $c: String) "
        f"{{ updateVideo(id: $id, input: {{caption: $c}}) {{ {FIELDS} }} }}"
    )
    return (await gql(live, token, query, id=video_id, c=caption))["updateVideo"]


async def delete(live, token: str, video_id: str) -> dict[str, Any]:
    query = f"mutation($id: ID!) {{ deleteVideo(id: $id) {{ {FIELDS} }} }}"
    return (await gql(live, token, query, id=video_id))["deleteVideo"]


async def restore(live, token: str, video_id: str) -> dict[str, Any]:
    query = f"mutation($id: ID!) {{ restoreVideo(id: $id) {{ {FIELDS} }} }}"
    return (await gql(live, token, query, id=video_id))["restoreVideo"]


async def current(live, token: str, video_id: str) -> dict[str, Any]:
    query = f"query($id: ID!) {{ video(id: $id) {{ {FIELDS} }} }}"
    return (await gql(live, token, query, id=video_id))["video"]


async def open_feed(live, token: str, after: str | None) -> tuple[GraphQLWS, str]:
    ws = await GraphQLWS.open(live.ws_url)
    await ws.init({"Authorization": f"Bearer {token}"})
    op = await ws.subscribe(FEED, {"after": after})
    return ws, op


async def quiet(ws: GraphQLWS, op: str, within: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await ws.receive(op, within=within)


async def completed_video(live, account) -> tuple[str, dict[str, Any]]:
    """A completed video (so deleting it cancels nothing) and its state as a client saw it."""
    video = await make_video(account.user, "lighthouse", caption="old")
    await lifecycle.transition(video.id, S.PROCESSING, actor="t", bus=live.runtime.bus)
    await lifecycle.transition(video.id, S.COMPLETED, actor="t", bus=live.runtime.bus)
    node_id = gid("Video", video.id)
    seen = await current(live, account.token, node_id)
    assert seen["statusHistory"] == [{"status": s} for s in HISTORY]
    return node_id, seen


async def test_resume_replays_missed_updates_deletes_and_restores(live, accounts):
    alice = await accounts("alice@example.com")
    node_id, seen = await completed_video(live, alice)

    # Missed while away: two caption changes, a delete and a restore.
    await update(live, alice.token, node_id, "one")
    await update(live, alice.token, node_id, "two")
    deleted = await delete(live, alice.token, node_id)
    restored = await restore(live, alice.token, node_id)
    assert deleted["deletedAt"] is not None and restored["deletedAt"] is None

    ws, op = await open_feed(live, alice.token, after=seen["eventCursor"])
    try:
        replayed = [await ws.next_data(op, "videoUpdates") for _ in range(4)]
        await quiet(ws, op)
    finally:
        await ws.close()

    # In commit order, each as the video was at that change.
    assert [(r["id"], r["status"], r["caption"]) for r in replayed] == [
        (node_id, "COMPLETED", "one"),
        (node_id, "COMPLETED", "two"),
        (node_id, "COMPLETED", "two"),
        (node_id, "COMPLETED", "two"),
    ]
    assert [r["deletedAt"] is not None for r in replayed] == [False, False, True, False]
    assert replayed[2]["deletedAt"] == deleted["deletedAt"]
    versions = [r["version"] for r in replayed]
    assert versions == list(range(seen["version"] + 1, seen["version"] + 5))
    cursors = [int(r["eventCursor"]) for r in replayed]
    assert [int(seen["eventCursor"]), *cursors] == sorted({int(seen["eventCursor"]), *cursors})
    # The mutations' own results carry the same cursors the replay gives.
    assert deleted["eventCursor"] == replayed[2]["eventCursor"]
    assert restored["eventCursor"] == replayed[3]["eventCursor"]
    # statusHistory is still the status changes only, replayed and queried.
    for r in [*replayed, deleted, restored]:
        assert r["statusHistory"] == [{"status": s} for s in HISTORY]
    now = await current(live, alice.token, node_id)
    assert (now["caption"], now["deletedAt"], now["eventCursor"]) == ("two", None, str(cursors[-1]))
    assert now["statusHistory"] == [{"status": s} for s in HISTORY]


async def test_live_changes_advance_the_cursor_and_resume_from_them(live, accounts):
    alice = await accounts("alice@example.com")
    node_id, seen = await completed_video(live, alice)

    ws, op = await open_feed(live, alice.token, after=seen["eventCursor"])
    try:
        await quiet(ws, op)  # nothing missed
        await update(live, alice.token, node_id, "live caption")
        got = await ws.next_data(op, "videoUpdates")
        assert (got["caption"], got["version"]) == ("live caption", seen["version"] + 1)
        assert int(got["eventCursor"]) > int(seen["eventCursor"])
        await quiet(ws, op)  # once: no duplicate at the seam
    finally:
        await ws.close()

    # Away: deleted. Resuming from the cursor of the update gets the delete, and only it.
    deleted = await delete(live, alice.token, node_id)
    ws, op = await open_feed(live, alice.token, after=got["eventCursor"])
    try:
        missed = await ws.next_data(op, "videoUpdates")
        assert (missed["id"], missed["caption"], missed["deletedAt"]) == (
            node_id,
            "live caption",
            deleted["deletedAt"],
        )
        assert missed["deletedAt"] is not None
        assert int(missed["eventCursor"]) > int(got["eventCursor"])
        assert missed["statusHistory"] == [{"status": s} for s in HISTORY]
        await quiet(ws, op)

        # Live again: the restore arrives once, with the next cursor.
        await asyncio.sleep(0.05)
        await restore(live, alice.token, node_id)
        back = await ws.next_data(op, "videoUpdates")
        assert back["deletedAt"] is None
        assert int(back["eventCursor"]) > int(missed["eventCursor"])
        await quiet(ws, op)
    finally:
        await ws.close()


async def test_resume_after_a_delete_that_cancels_a_queued_job(live, accounts):
    """Deleting a queued video is two changes: the delete, then the cancel it causes."""
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user, "queued one")
    node_id = gid("Video", video.id)
    seen = await current(live, alice.token, node_id)

    await delete(live, alice.token, node_id)

    ws, op = await open_feed(live, alice.token, after=seen["eventCursor"])
    try:
        replayed = [await ws.next_data(op, "videoUpdates") for _ in range(2)]
        await quiet(ws, op)
    finally:
        await ws.close()
    assert [(r["status"], r["deletedAt"] is not None) for r in replayed] == [
        ("QUEUED", True),
        ("CANCELED", True),
    ]
    assert replayed[0]["statusHistory"] == [{"status": "QUEUED"}]
    assert replayed[1]["statusHistory"] == [{"status": "QUEUED"}, {"status": "CANCELED"}]
