"""``videoUpdated`` served by the process's fan-out (graphql/live_fanout.py) instead of an
operation task per subscription: which documents it takes, separate payloads per viewer,
client ``complete``, and a socket that stops reading dropped alone, on both buses."""

from __future__ import annotations

import asyncio

from tests.live.conftest import gid, make_video
from tests.live.wsclient import GraphQLWS, expect_error
from vidgen import models
from vidgen.graphql import live_fanout
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus
from vidgen.web import ws_direct

WATCH = "subscription W($id: ID!) { videoUpdated(id: $id) { id status version progress } }"
# owner { email } needs a statement: no compiled event plan, so Strawberry serves it.
WATCH_OWNER = "subscription W($id: ID!) { videoUpdated(id: $id) { version owner { email } } }"


def fanout_of(live) -> live_fanout.FanOut:
    (found,) = live_fanout._fanouts[live.runtime.bus].values()
    return found


async def until(predicate, within: float = 15.0) -> None:
    """Until ``predicate()`` holds (the server runs in this loop; fails after ``within``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def opened(live, token: str) -> GraphQLWS:
    ws = await GraphQLWS.open(live.ws_url)
    await ws.init({"Authorization": f"Bearer {token}"})
    return ws


async def test_owner_and_admin_get_their_own_payloads_in_order(live, accounts):
    alice = await accounts("alice@example.com")
    admin = await accounts("admin@example.com")
    await models.User.filter(id=admin.user.id).update(is_admin=True)
    video = await make_video(alice.user)
    sockets = [await opened(live, alice.token), await opened(live, admin.token)]
    try:
        ops = []
        for ws in sockets:
            ops.append(
                [await ws.subscribe(WATCH, {"id": gid("Video", video.id)}) for _ in range(3)]
            )
        for ws, mine in zip(sockets, ops, strict=True):
            for op in mine:
                assert (await ws.next_data(op, "videoUpdated"))["version"] == 1
        fanout = fanout_of(live)
        assert fanout.joined == 6 and fanout.handed_off == 0
        before = fanout.encodings
        bus = live.runtime.bus
        await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t", bus=bus)
        await lifecycle.touch(video.id, fields={"progress": 0.5}, bus=bus)
        for ws, mine in zip(sockets, ops, strict=True):
            for op in mine:
                seen = [await ws.next_data(op, "videoUpdated") for _ in range(2)]
                assert [(s["version"], s["progress"]) for s in seen] == [(2, 0.0), (3, 0.5)]
        assert fanout.encodings - before == 4  # two versions, two scopes (owner, admin)
        # The admin's re-check and the owner's are each their own: revoking one token ends
        # only that socket's subscriptions.
    finally:
        for ws in sockets:
            await ws.close()


async def test_other_documents_and_errors_go_to_strawberry(live, accounts):
    alice = await accounts("alice@example.com")
    bob = await accounts("bob@example.com")
    video = await make_video(alice.user)
    ws = await opened(live, bob.token)
    try:
        op = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        error = await expect_error(ws, op)  # bob may not see it: Strawberry's NOT_FOUND
        assert error["extensions"]["code"] == "NOT_FOUND"
        fanout = fanout_of(live)
        assert (fanout.joined, fanout.handed_off) == (1, 1)
        ws2 = await opened(live, alice.token)
        try:
            op = await ws2.subscribe(WATCH_OWNER, {"id": gid("Video", video.id)})
            first = await ws2.next_data(op, "videoUpdated")
            assert first["owner"] == {"email": "alice@example.com"}
            assert fanout.joined == 1  # not taken by the fan-out
        finally:
            await ws2.close()
    finally:
        await ws.close()


async def test_complete_stops_one_subscription(live, accounts):
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    ws = await opened(live, alice.token)
    try:
        kept = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        stopped = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        for op in (kept, stopped):
            assert (await ws.next_data(op, "videoUpdated"))["version"] == 1
        await ws.stop(stopped)
        # The server has taken the stop once the video's channel keeps one record.
        await until(lambda: len(fanout_of(live).channels[video.id].records) == 1)
        bus = live.runtime.bus
        await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t", bus=bus)
        assert (await ws.next_data(kept, "videoUpdated"))["version"] == 2
        try:
            message = await ws.receive(stopped, within=0.3)
        except TimeoutError:
            message = None
        assert message is None
        await lifecycle.transition(video.id, VideoStatus.COMPLETED, actor="t", bus=bus)
        assert (await ws.next_data(kept, "videoUpdated"))["status"] == "COMPLETED"
        assert (await ws.receive(kept))["type"] == "complete"
        await until(lambda: not fanout_of(live).channels)  # nothing left: the task ended
    finally:
        await ws.close()


async def test_a_socket_that_stops_reading_is_dropped_alone(live, accounts, monkeypatch):
    monkeypatch.setattr(live.runtime.settings, "ws_subscription_queue", 3)
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    slow, fast = await opened(live, alice.token), await opened(live, alice.token)
    try:
        slow_op = await slow.subscribe(WATCH, {"id": gid("Video", video.id)})
        fast_op = await fast.subscribe(WATCH, {"id": gid("Video", video.id)})
        for ws, op in ((slow, slow_op), (fast, fast_op)):
            assert (await ws.next_data(op, "videoUpdated"))["version"] == 1
        fanout = fanout_of(live)
        (channel,) = fanout.channels.values()
        blocked = asyncio.Event()
        (conn,) = (r.conn for r in channel.records.values() if r.id == slow_op)
        scope = conn.handler.websocket.ws.scope
        original = scope["vidgen.ws_send"]  # the server's send, which the writer uses

        async def stuck(message: dict) -> None:
            await blocked.wait()
            await original(message)

        monkeypatch.setitem(scope, "vidgen.ws_send", stuck)
        bus = live.runtime.bus
        for n in range(1, 9):  # the other socket gets each change while this one is stuck
            await lifecycle.touch(video.id, fields={"progress": n / 10}, bus=bus)
            seen = await fast.next_data(fast_op, "videoUpdated", within=5)
            assert seen["version"] == n + 1
        assert fanout.dropped == 1
        blocked.set()
        messages = [await slow.receive(slow_op)]
        while not messages[-1]["payload"].get("errors"):  # what was queued, then the error
            messages.append(await slow.receive(slow_op))
        assert len(messages) <= 4  # the 3 queued (one of them being written), the error
        (error,) = messages[-1]["payload"]["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert "fell behind" in error["message"]
        assert (await slow.receive(slow_op))["type"] == "complete"
    finally:
        for ws in (slow, fast):
            await ws.close()


async def test_a_paused_socket_waits_and_is_dropped_alone(live, accounts, monkeypatch):
    """The pre-framed writes (web/ws_direct.py) keep uvicorn's flow control: while a
    socket's transport is paused (its buffer over the high-water mark: paused here by hand,
    as the transport does), its messages wait, counted, and past ``ws_subscription_queue``
    the subscription is dropped; the other socket gets every change meanwhile."""
    monkeypatch.setattr(live.runtime.settings, "ws_subscription_queue", 3)
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    slow, fast = await opened(live, alice.token), await opened(live, alice.token)
    try:
        slow_op = await slow.subscribe(WATCH, {"id": gid("Video", video.id)})
        fast_op = await fast.subscribe(WATCH, {"id": gid("Video", video.id)})
        for ws, op in ((slow, slow_op), (fast, fast_op)):
            assert (await ws.next_data(op, "videoUpdated"))["version"] == 1
        fanout = fanout_of(live)
        (channel,) = fanout.channels.values()
        (conn,) = (r.conn for r in channel.records.values() if r.id == slow_op)
        send = conn.handler.websocket.ws.scope["vidgen.ws_send"]
        assert ws_direct.direct_socket(send) is not None  # uvicorn's own send: direct writes
        protocol = send.__self__
        protocol.pause_writing()
        bus = live.runtime.bus
        for n in range(1, 9):
            await lifecycle.touch(video.id, fields={"progress": n / 10}, bus=bus)
            seen = await fast.next_data(fast_op, "videoUpdated", within=5)
            assert seen["version"] == n + 1
        assert fanout.dropped == 1
        protocol.resume_writing()
        messages = [await slow.receive(slow_op) for _ in range(4)]  # the 3 queued, the error
        assert [m["payload"]["data"]["videoUpdated"]["version"] for m in messages[:3]] == [2, 3, 4]
        (error,) = messages[-1]["payload"]["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert (await slow.receive(slow_op))["type"] == "complete"
    finally:
        for ws in (slow, fast):
            await ws.close()
