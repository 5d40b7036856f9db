"""Redis restarts, slow subscribers, one load per event, and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from websockets.asyncio.client import connect

from tests.api.conftest import StatementCounter
from tests.live.conftest import gid, make_video
from tests.live.wsclient import TRANSPORT_WS, GraphQLWS, expect_error
from vidgen.graphql import live_fanout, subscriptions
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus

S = VideoStatus

WATCH = """
subscription W($id: ID!) {
  videoUpdated(id: $id) {
    id status version progress eventCursor prompt caption videoUrl thumbnailUrl
    theme { name } tags { name } project { id } story { id } owner { id email }
    statusHistory { status at message }
  }
}
"""
FEED = "subscription { videoUpdates { id status version } }"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def until(predicate, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("bus_kind", ["redis"])
async def test_redis_restart_mid_subscription_is_survived(live, accounts, redis_server):
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    bus = live.runtime.bus
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        watch = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        feed = await ws.subscribe(FEED)
        assert (await ws.next_data(watch, "videoUpdated"))["status"] == "QUEUED"
        assert (await live.client.get("/readyz")).status_code == 200

        redis_server.stop()
        await until(lambda: not bus.connected)
        ready = await live.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["bus"] is False
        # A change while Redis is down: committed, its event lost (logged, not raised).
        await lifecycle.transition(video.id, S.PROCESSING, actor="t", bus=bus)

        redis_server.start()  # same port
        # After the reconnect both subscriptions re-read the database: nothing is lost.
        got = await ws.next_data(watch, "videoUpdated", within=15)
        assert (got["status"], got["version"]) == ("PROCESSING", 2)
        got = await ws.next_data(feed, "videoUpdates")
        assert (got["status"], got["version"]) == ("PROCESSING", 2)
        assert (await live.client.get("/readyz")).status_code == 200

        await lifecycle.transition(video.id, S.COMPLETED, actor="t", bus=bus)
        assert (await ws.next_data(watch, "videoUpdated"))["status"] == "COMPLETED"
        assert (await ws.receive(watch))["type"] == "complete"
        assert (await ws.next_data(feed, "videoUpdates"))["status"] == "COMPLETED"
        assert bus.stats.reconnects == 1
    finally:
        await ws.close()


async def test_one_load_per_event_for_many_subscribers(live, accounts):
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    shared = subscriptions.shared_for(live.runtime.bus)
    sockets = [await GraphQLWS.open(live.ws_url) for _ in range(4)]
    ops = []
    counter = StatementCounter()
    try:
        for ws in sockets:
            await ws.init(bearer(alice.token))
            for _ in range(25):
                op = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
                ops.append((ws, op))
        for ws, op in ops:
            assert (await ws.next_data(op, "videoUpdated"))["status"] == "QUEUED"

        with counter.counting():
            for to in (S.PROCESSING, S.COMPLETED):
                loads = shared.states.loads
                await lifecycle.transition(video.id, to, actor="t", bus=live.runtime.bus)
                counter.reset()  # from the commit on: what delivery costs
                got = await asyncio.gather(*(ws.next_data(op, "videoUpdated") for ws, op in ops))
                assert {g["status"] for g in got} == {to.name}
                assert len({id(g) for g in got}) == 100
                # One state load (three statements) for 100 subscribers, nested fields included.
                assert shared.states.loads - loads <= 1
                assert counter.count <= 3, counter.statements
    finally:
        for ws in sockets:
            await ws.close()


async def test_slow_subscriber_is_dropped_alone(live, accounts, monkeypatch):
    monkeypatch.setattr(live.runtime.settings, "ws_subscription_queue", 2)
    alice = await accounts("alice@example.com")
    big_prompt = os.urandom(40_000).hex()  # 80 kB per copy, incompressible enough
    video = await make_video(alice.user, big_prompt)
    heavy = (
        "subscription W($id: ID!) { videoUpdated(id: $id) { version "
        + " ".join(f"p{i}: prompt" for i in range(8))
        + " } }"
    )
    fast = await GraphQLWS.open(live.ws_url)
    # The slow client reads nothing and advertises a tiny window: the server's sends stall.
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
    slow_conn = await connect(
        live.ws_url, sock=raw, subprotocols=[TRANSPORT_WS], compression=None, max_queue=1
    )
    try:
        await fast.init(bearer(alice.token))
        fast_op = await fast.subscribe(heavy, {"id": gid("Video", video.id)})
        assert (await fast.next_data(fast_op, "videoUpdated"))["version"] == 1
        await slow_conn.send(
            json.dumps({"type": "connection_init", "payload": bearer(alice.token)})
        )
        assert json.loads(await slow_conn.recv())["type"] == "connection_ack"
        await slow_conn.send(
            json.dumps(
                {
                    "id": "slow",
                    "type": "subscribe",
                    "payload": {"query": heavy, "variables": {"id": gid("Video", video.id)}},
                }
            )
        )
        # ...and from now on it reads nothing: the socket's buffers fill up.
        bus = live.runtime.bus
        await lifecycle.transition(video.id, S.PROCESSING, actor="t", bus=bus)
        assert (await fast.next_data(fast_op, "videoUpdated"))["version"] == 2
        for n in range(30):
            await lifecycle.touch(video.id, fields={"progress": n / 100}, bus=bus)
            got = await fast.next_data(fast_op, "videoUpdated")  # the fast one keeps up
            assert got["version"] == n + 3
        await lifecycle.transition(video.id, S.COMPLETED, actor="t", bus=bus)
        assert (await fast.next_data(fast_op, "videoUpdated"))["version"] == 33
        assert (await fast.receive(fast_op))["type"] == "complete"

        # Cut off once: by the bus's log, or by the fan-out serving videoUpdated.
        fanouts = live_fanout._fanouts.get(bus, {}).values()
        assert bus._local.overflows + sum(f.dropped for f in fanouts) == 1
        # The slow one, reading again, finds what it had, then the reason it was dropped.
        versions = []
        while True:
            message = json.loads(await asyncio.wait_for(slow_conn.recv(), 10))
            assert message["id"] == "slow"
            if message["payload"].get("errors"):
                break
            versions.append(message["payload"]["data"]["videoUpdated"]["version"])
        assert versions == sorted(versions) and len(versions) < 10
        error = message["payload"]["errors"][0]
        assert error["extensions"] == {"code": "RATE_LIMITED", "reconnect": True}
        assert json.loads(await slow_conn.recv()) == {"id": "slow", "type": "complete"}
    finally:
        await fast.close()
        await slow_conn.close()


async def test_graceful_shutdown_completes_open_subscriptions(live, accounts):
    alice = await accounts("alice@example.com")
    video = await make_video(alice.user)
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        watch = await ws.subscribe(WATCH, {"id": gid("Video", video.id)})
        feed = await ws.subscribe(FEED)
        await ws.next_data(watch, "videoUpdated")
        shared = subscriptions.shared_for(live.runtime.bus)
        await until(lambda: len(shared.active) == 2)
        await live.app.state.close_subscriptions()
        assert (await ws.receive(watch))["type"] == "complete"
        assert (await ws.receive(feed))["type"] == "complete"
        assert len(shared.active) == 0
    finally:
        await ws.close()


async def test_malformed_id_is_bad_user_input(live, accounts):
    """Unknown ids and bad ids are errors that name the problem (no internals)."""
    alice = await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        error = await expect_error(ws, await ws.subscribe(WATCH, {"id": "%%%"}))
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
    finally:
        await ws.close()


LIGHT_WATCH = "subscription W($id: ID!) { videoUpdated(id: $id) { status version progress } }"


@pytest.mark.parametrize("bus_kind", ["redis"])
async def test_redis_restart_under_two_thousand_subscriptions_loses_no_version(
    live, accounts, redis_server
):
    """2,000 subscriptions (100 sockets x 20, 100 per video): changes made while Redis is
    down are lost on the bus; after the restart every subscriber re-reads from its last
    version: each gets every logged version, then the current state, in order, then the
    rest live."""
    alice = await accounts("alice@example.com")
    videos = [await make_video(alice.user, f"v{i}") for i in range(20)]
    bus = live.runtime.bus
    sockets = [await GraphQLWS.open(live.ws_url) for _ in range(100)]
    try:
        for ws in sockets:
            await ws.init(bearer(alice.token))
        ops = [
            (ws, await ws.subscribe(LIGHT_WATCH, {"id": gid("Video", video.id)}), video.id)
            for ws in sockets
            for video in videos
        ]
        got: dict[tuple[int, str], list[dict]] = {}

        async def read(ws: GraphQLWS, op: str, count: int) -> None:
            for _ in range(count):
                got.setdefault((id(ws), op), []).append(
                    await ws.next_data(op, "videoUpdated", within=60)
                )

        await asyncio.gather(*(read(ws, op, 1) for ws, op, _ in ops))
        for video in videos:
            await lifecycle.transition(video.id, S.PROCESSING, actor="t", bus=bus)
        await asyncio.gather(*(read(ws, op, 1) for ws, op, _ in ops))

        redis_server.stop()
        await until(lambda: not bus.connected)
        for video in videos:  # logged (v3, v4), then a progress tick (v5, no history row)
            await lifecycle.transition(video.id, S.QUEUED, actor="t", bus=bus)
            await lifecycle.transition(video.id, S.PROCESSING, actor="t", bus=bus)
            await lifecycle.touch(video.id, fields={"progress": 0.5}, bus=bus)
        redis_server.start()  # same port
        await asyncio.gather(*(read(ws, op, 3) for ws, op, _ in ops))
        for video in videos:
            await lifecycle.transition(video.id, S.COMPLETED, actor="t", bus=bus)
        await asyncio.gather(*(read(ws, op, 1) for ws, op, _ in ops))

        assert len(got) == 2000
        for payloads in got.values():
            assert [p["version"] for p in payloads] == [1, 2, 3, 4, 5, 6]
            assert [p["status"] for p in payloads] == [
                "QUEUED",
                "PROCESSING",
                "QUEUED",
                "PROCESSING",
                "PROCESSING",
                "COMPLETED",
            ]
            assert payloads[4]["progress"] == 0.5
        assert bus.stats.reconnects == 1 and bus.stats.overflows == 0
    finally:
        for ws in sockets:
            await ws.close()
