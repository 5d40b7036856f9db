"""videoUpdates: the owner's feed, filters, and resume with ``after`` (no gap, no duplicate)."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.live.conftest import FeedStarts, gid, make_video
from tests.live.wsclient import GraphQLWS, expect_error
from vidgen import models
from vidgen.events import feed as feed_module
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus

S = VideoStatus

FEED = """
subscription Feed($after: String, $projectId: ID) {
  videoUpdates(after: $after, projectId: $projectId) {
    id status version progress eventCursor statusHistory { status }
  }
}
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_feed(live, token: str, **variables):
    ws = await GraphQLWS.open(live.ws_url)
    await ws.init(bearer(token))
    op = await ws.subscribe(FEED, variables)
    return ws, op


async def quiet(ws: GraphQLWS, op: str, within: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await ws.receive(op, within=within)


async def test_resume_replays_exactly_what_was_missed_then_tails(live, accounts, feed_starts):
    alice = await accounts("alice@example.com")
    a = await make_video(alice.user, "first")
    b = await make_video(alice.user, "second")
    bus = live.runtime.bus

    ws, op = await open_feed(live, alice.token)
    await feed_starts.wait(1)  # listening from here on
    await lifecycle.transition(a.id, S.PROCESSING, actor="t", bus=bus)
    seen = await ws.next_data(op, "videoUpdates")
    assert (seen["id"], seen["status"], seen["version"]) == (gid("Video", a.id), "PROCESSING", 2)
    cursor = seen["eventCursor"]
    await ws.close()

    # Missed while away: two status changes and a progress tick (not in the history).
    await lifecycle.transition(a.id, S.COMPLETED, actor="t", bus=bus)
    await lifecycle.transition(b.id, S.PROCESSING, actor="t", bus=bus)
    await lifecycle.touch(b.id, fields={"progress": 0.4}, bus=bus)

    ws, op = await open_feed(live, alice.token, after=cursor)
    try:
        replayed = [await ws.next_data(op, "videoUpdates") for _ in range(2)]
        assert [(r["id"], r["status"], r["version"]) for r in replayed] == [
            (gid("Video", a.id), "COMPLETED", 3),
            (gid("Video", b.id), "PROCESSING", 2),
        ]
        # Each replayed state carries its own cursor and the history up to it.
        assert int(replayed[0]["eventCursor"]) < int(replayed[1]["eventCursor"])
        assert [h["status"] for h in replayed[1]["statusHistory"]] == ["QUEUED", "PROCESSING"]
        await quiet(ws, op)

        await lifecycle.transition(b.id, S.COMPLETED, actor="t", bus=bus)
        live_one = await ws.next_data(op, "videoUpdates")
        assert (live_one["id"], live_one["status"], live_one["version"]) == (
            gid("Video", b.id),
            "COMPLETED",
            4,
        )
        await quiet(ws, op)
    finally:
        await ws.close()


async def test_no_gap_no_duplicate_at_the_seam_under_concurrent_changes(live, accounts):
    alice = await accounts("alice@example.com")
    bus = live.runtime.bus
    videos = [await make_video(alice.user, f"v{i}") for i in range(4)]
    start = await models.VideoStatusEvent.filter(owner_id=alice.user.id).order_by("-id").first()
    path = [S.PROCESSING, S.QUEUED, S.PROCESSING, S.COMPLETED]
    started = asyncio.Event()

    async def drive() -> None:
        rng = random.Random(5)
        steps = [(v.id, to) for to in path for v in videos]
        for n, (video_id, to) in enumerate(steps):
            if n == 6:
                started.set()
            await lifecycle.transition(video_id, to, actor="t", bus=bus)
            await asyncio.sleep(rng.uniform(0, 0.02))

    driver = asyncio.create_task(drive())
    await started.wait()  # resume while changes keep landing
    ws, op = await open_feed(live, alice.token, after=str(start.id))
    try:
        got = [await ws.next_data(op, "videoUpdates") for _ in range(len(videos) * len(path))]
        await driver
        await quiet(ws, op)
    finally:
        await ws.close()
    rows = await models.VideoStatusEvent.filter(owner_id=alice.user.id, id__gt=start.id)
    expected = {(gid("Video", r.video_id), r.version, r.to_status.upper()) for r in rows}
    received = [(g["id"], g["version"], g["status"]) for g in got]
    assert len(received) == len(set(received)) == len(expected)  # no duplicate
    assert set(received) == expected  # no gap
    for video in videos:  # per video, in version order
        versions = [v for i, v, _ in received if i == gid("Video", video.id)]
        assert versions == sorted(versions)


async def project_feed_delivers_only_its_videos(live, owner, viewer_token: str, starts: FeedStarts):
    """``owner``'s project with one video inside and one outside; a feed filtered by it
    (opened with ``viewer_token``) delivers the inside one's change only. Returns the
    project and the inside video."""
    project = await models.Project.create(owner_id=owner.id, name="film")
    inside = await make_video(owner, "inside", project_id=project.id)
    outside = await make_video(owner, "outside")
    bus = live.runtime.bus
    started = starts.count
    ws, op = await open_feed(live, viewer_token, projectId=gid("Project", project.id))
    try:
        await starts.wait(started + 1)
        await lifecycle.transition(outside.id, S.PROCESSING, actor="t", bus=bus)
        await lifecycle.transition(inside.id, S.PROCESSING, actor="t", bus=bus)
        got = await ws.next_data(op, "videoUpdates")
        assert (got["id"], got["status"]) == (gid("Video", inside.id), "PROCESSING")
        await quiet(ws, op)
    finally:
        await ws.close()
    return project, inside


async def test_filters_and_foreign_groups(live, accounts, feed_starts):
    alice = await accounts("alice@example.com")
    bob = await accounts("bob@example.com")
    project, _ = await project_feed_delivers_only_its_videos(
        live, alice.user, alice.token, feed_starts
    )

    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(bob.token))
        op = await ws.subscribe(FEED, {"projectId": gid("Project", project.id)})
        assert (await expect_error(ws, op))["extensions"]["code"] == "NOT_FOUND"
        op = await ws.subscribe("subscription A { videoUpdates { id } }", operation_name="Z")
        error = await expect_error(ws, op)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "operationName"}
        assert error["message"] == 'Unknown operation named "Z".'
        for bad in ("not-a-cursor", "-1", str(2**63)):  # the last beyond a 64-bit event id
            op = await ws.subscribe(FEED, {"after": bad})
            error = await expect_error(ws, op)
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, bad
    finally:
        await ws.close()


async def test_an_admin_follows_another_users_project(live, accounts, feed_starts):
    # Admins see everything: videoUpdates filtered by another user's project streams that
    # project's videos (live, and replayed from a cursor), not the admin's own (none).
    alice = await accounts("alice@example.com")
    admin = await accounts("admin@example.com")
    await models.User.filter(id=admin.user.id).update(is_admin=True)
    project, inside = await project_feed_delivers_only_its_videos(
        live, alice.user, admin.token, feed_starts
    )
    ws, op = await open_feed(live, admin.token, projectId=gid("Project", project.id), after="0")
    try:
        replayed = [await ws.next_data(op, "videoUpdates") for _ in range(2)]
        assert [(v["id"], v["status"]) for v in replayed] == [
            (gid("Video", inside.id), "QUEUED"),
            (gid("Video", inside.id), "PROCESSING"),
        ]
        await quiet(ws, op)
    finally:
        await ws.close()


async def test_a_change_whose_event_is_overtaken_is_still_delivered_in_order(
    live, accounts, feed_starts
):
    # Two processes publish after their commits: the event of v3 (completed) can arrive
    # before the event of v2 (processing). Both subscriptions still deliver v2, then v3,
    # from the history (the late v2 event is then a duplicate and dropped).
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user, "overtaken")
    seen_before = await make_video(alice.user, "seen before")
    bus = live.runtime.bus
    feed, feed_op = await open_feed(live, alice.token)
    one = await GraphQLWS.open(live.ws_url)
    try:
        await one.init(bearer(alice.token))
        one_op = await one.subscribe(
            "subscription($id: ID!) { videoUpdated(id: $id) { status version } }",
            {"id": gid("Video", video.id)},
        )
        assert await one.next_data(one_op, "videoUpdated") == {"status": "QUEUED", "version": 1}
        await feed_starts.wait(1)
        # A video the feed already delivered: its next change overtaken the same way.
        await lifecycle.transition(seen_before.id, S.PROCESSING, actor="t", bus=bus)
        first = await feed.next_data(feed_op, "videoUpdates")
        assert (first["status"], first["version"]) == ("PROCESSING", 2)
        for target in (video, seen_before):
            _, late = await lifecycle.transition(
                target.id,
                S.PROCESSING if target is video else S.FAILED,
                actor="t",
                bus=None,
            )
            await lifecycle.transition(
                target.id, S.COMPLETED if target is video else S.QUEUED, actor="t", bus=bus
            )
            await lifecycle.publish(bus, [late.event])  # arrives after the newer one
        got = [await feed.next_data(feed_op, "videoUpdates") for _ in range(4)]
        assert [(v["id"], v["status"], v["version"]) for v in got] == [
            (gid("Video", video.id), "PROCESSING", 2),
            (gid("Video", video.id), "COMPLETED", 3),
            (gid("Video", seen_before.id), "FAILED", 3),
            (gid("Video", seen_before.id), "QUEUED", 4),
        ]
        await quiet(feed, feed_op)
        assert [await one.next_data(one_op, "videoUpdated") for _ in range(2)] == [
            {"status": "PROCESSING", "version": 2},
            {"status": "COMPLETED", "version": 3},
        ]
    finally:
        await one.close()
        await feed.close()


async def test_a_video_the_feed_forgot_gets_no_change_again(
    live, accounts, monkeypatch, feed_starts
):
    # A feed keeps the last version of its latest REMEMBERED_VIDEOS videos only: the next
    # change of a forgotten video must not bring back the changes it already delivered.
    monkeypatch.setattr(feed_module, "REMEMBERED_VIDEOS", 2)
    alice = await accounts("alice@example.com")
    videos = [await make_video(alice.user, f"v{i}") for i in range(3)]
    bus = live.runtime.bus
    ws, op = await open_feed(live, alice.token)
    try:
        await feed_starts.wait(1)
        for video in videos:  # the third one makes the feed forget the first
            await lifecycle.transition(video.id, S.PROCESSING, actor="t", bus=bus)
            got = await ws.next_data(op, "videoUpdates")
            assert (got["id"], got["version"]) == (gid("Video", video.id), 2)
        await lifecycle.transition(videos[0].id, S.COMPLETED, actor="t", bus=bus)
        got = await ws.next_data(op, "videoUpdates")
        assert (got["id"], got["status"], got["version"]) == (
            gid("Video", videos[0].id),
            "COMPLETED",
            3,
        )
        await quiet(ws, op)
    finally:
        await ws.close()
