"""Live status under load, in the scaled layout (an API process, a worker process, PostgreSQL
and Redis): every watcher gets every version, each payload as committed at its version; a
Redis outage loses nothing the status history holds; a mass disconnect logs no error.

Truth comes from outside the API: the status history for changes with a row, and for
progress (no row) the events as Redis carried them, captured by a raw subscriber of this
test (each carries the row's values that its write returned).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.live.processes import ApiProcess, Process, process_env
from tests.live.redis_server import RedisServer
from tests.live.wsclient import GraphQLWS
from vidgen import models
from vidgen.services import users
from vidgen.settings import Settings

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

GENERATE = """
mutation G($input: GenerateVideoInput!) { generateVideo(input: $input) { id version } }
"""
WATCH = """
subscription W($id: ID!) {
  videoUpdated(id: $id) { id status version progress updatedAt statusMessage }
}
"""
TERMINAL = {"COMPLETED", "FAILED", "CANCELED"}


class Worker(Process):
    def __init__(self, env: dict, workdir: Path, concurrency: int) -> None:
        args = [sys.executable, "-m", "vidgen.cli", "worker", "--concurrency", str(concurrency)]
        super().__init__(args, env, workdir / "worker.log")


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def generate(url: str, token: str, prompts: list[str]) -> list[str]:
    ids = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for prompt in prompts:
            response = await http.post(
                "/graphql",
                json={
                    "query": GENERATE,
                    "variables": {"input": {"prompt": prompt, "provider": "test"}},
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            body = response.json()
            assert "errors" not in body, body
            ids.append(body["data"]["generateVideo"]["id"])
    return ids


class Capture:
    """A raw PSUBSCRIBE on the video channels: what Redis carried, per (video, version).
    Reconnects after a Redis restart (what is published meanwhile it cannot hear)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)

    async def _run(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.url)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.psubscribe("vidgen:video:*")
                self.ready.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "pmessage":
                        event = json.loads(message["data"])
                        self.events[(event["video_id"], event["version"])].append(event)
            except (OSError, aioredis.RedisError):
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def watch(ws: GraphQLWS, op: str, within: float) -> list[dict[str, Any]]:
    """Every payload of one subscription until its terminal one (then ``complete``)."""
    got: list[dict[str, Any]] = []
    while True:
        payload = await ws.next_data(op, "videoUpdated", within=within)
        got.append(payload)
        if payload["status"] in TERMINAL:
            assert (await ws.receive(op, within=within))["type"] == "complete"
            return got


async def history_of(video_ids: list[int]) -> dict[int, dict[int, models.VideoStatusEvent]]:
    rows = await models.VideoStatusEvent.filter(video_id__in=video_ids).order_by("id")
    found: dict[int, dict[int, models.VideoStatusEvent]] = defaultdict(dict)
    for row in rows:
        found[row.video_id][row.version] = row
    return found


def check_payload(
    payload: dict[str, Any],
    video_id: int,
    logged: dict[int, models.VideoStatusEvent],
    capture: Capture,
) -> str:
    """Assert one payload shows its version's values; returns what it was checked against."""
    version = payload["version"]
    row = logged.get(version)
    carried = capture.events.get((video_id, version))
    if row is not None:
        assert payload["status"] == row.to_status.upper(), (payload, row.to_status)
        assert when(payload["updatedAt"]) == row.at, (payload, row.at)
        if carried:
            assert payload["progress"] == carried[0]["progress"], (payload, carried)
        return "history"
    assert carried, f"video {video_id} v{version}: no history row and nothing published"
    event = carried[0]
    assert payload["status"] == event["status"].upper(), (payload, event)
    assert payload["progress"] == event["progress"], (payload, event)
    state = event.get("state") or {}
    assert when(payload["updatedAt"]) == when(state.get("updated_at", "1970-01-01")), (
        payload,
        event,
    )
    return "event"


async def open_watchers(
    api: ApiProcess, token: str, ids: list[str], per_video: int, per_socket: int
) -> tuple[list[GraphQLWS], list[tuple[GraphQLWS, str, str]]]:
    """``per_video`` subscriptions of each video, ``per_socket`` on each socket (different
    videos per socket). Returns the sockets and (socket, operation, video id) triples."""
    wanted = [video for _ in range(per_video) for video in ids]
    sockets: list[GraphQLWS] = []
    ops: list[tuple[GraphQLWS, str, str]] = []
    for start in range(0, len(wanted), per_socket):
        ws = await GraphQLWS.open(api.ws_url)
        sockets.append(ws)
        await ws.init({"Authorization": f"Bearer {token}"})
        for video in wanted[start : start + per_socket]:
            ops.append((ws, await ws.subscribe(WATCH, {"id": video}), video))
    return sockets, ops


async def test_100_jobs_at_once_10_watchers_each_every_version_as_committed(
    db: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    jobs, per_video = 100, 10
    user = await users.create_user(email="load@example.com", password="password123")
    token, _ = await users.issue_token(user=user, name="test")
    env = process_env(
        database_url=db.resolved_database_url, redis_url=redis_server.url, data_dir=tmp_path
    )
    api = ApiProcess(env, tmp_path, "api")
    worker: Worker | None = None
    capture = Capture(redis_server.url)
    sockets: list[GraphQLWS] = []
    try:
        await asyncio.to_thread(api.wait_ready)
        ids = await generate(api.url, token, ["sleep:4 progress succeed"] * jobs)
        sockets, ops = await open_watchers(api, token, ids, per_video, per_socket=10)
        await capture.start()
        # All 100 queued before the worker starts: it claims them together and their
        # publishes (claim, prediction id, progress every ~0.1 s) start together.
        worker = Worker(env, tmp_path, concurrency=jobs)
        results = await asyncio.gather(*(watch(ws, op, within=120) for ws, op, _ in ops))

        video_ids = [pk(video) for video in ids]
        logged = await history_of(video_ids)
        final = {v.id: v for v in await models.Video.filter(id__in=video_ids)}
        checked: dict[str, int] = defaultdict(int)
        for (_, _, video), payloads in zip(ops, results, strict=True):
            video_id = pk(video)
            versions = [p["version"] for p in payloads]
            # Every version from the first (the snapshot) to the terminal one, in order.
            assert versions == list(range(versions[0], versions[-1] + 1)), (video, versions)
            assert versions[0] == 1 and payloads[-1]["status"] == "COMPLETED"
            assert versions[-1] == final[video_id].version
            for payload in payloads[1:]:
                checked[check_payload(payload, video_id, logged[video_id], capture)] += 1
            last = payloads[-1]
            assert when(last["updatedAt"]) == final[video_id].updated_at
            assert last["progress"] == final[video_id].progress == 1.0
        # Each change was published exactly once, and progress made up most of them.
        for video_id in video_ids:
            published = sorted(v for (vid, v) in capture.events if vid == video_id)
            assert published == list(range(2, final[video_id].version + 1)), published
        assert all(len(events) == 1 for events in capture.events.values())
        deliveries = sum(len(r) for r in results)
        assert checked["event"] > checked["history"] > 0, checked
        assert deliveries >= jobs * per_video * 6, deliveries
        worker_log = worker.output()
        assert "publish failed" not in worker_log and "Too many connections" not in worker_log
    except BaseException:
        for process in [api, *([worker] if worker else [])]:
            print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        raise
    finally:
        await capture.stop()
        for ws in sockets:
            await ws.close()
        for process in [api, *([worker] if worker else [])]:
            await asyncio.to_thread(process.stop)


async def test_a_redis_outage_while_jobs_change_loses_no_logged_version(
    db: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    jobs, per_video = 20, 3
    user = await users.create_user(email="outage@example.com", password="password123")
    token, _ = await users.issue_token(user=user, name="test")
    env = process_env(
        database_url=db.resolved_database_url, redis_url=redis_server.url, data_dir=tmp_path
    )
    api = ApiProcess(env, tmp_path, "api")
    worker: Worker | None = None
    capture = Capture(redis_server.url)
    sockets: list[GraphQLWS] = []
    try:
        await asyncio.to_thread(api.wait_ready)
        ids = await generate(api.url, token, ["sleep:6 progress succeed"] * jobs)
        sockets, ops = await open_watchers(api, token, ids, per_video, per_socket=6)
        await capture.start()
        worker = Worker({**env, "VIDGEN_LOG_LEVEL": "INFO"}, tmp_path, concurrency=jobs)
        watching = asyncio.gather(*(watch(ws, op, within=120) for ws, op, _ in ops))
        # Wait until the jobs are well under way, then take Redis away for a few seconds.
        await _until_progress(capture, [pk(v) for v in ids], min_events=3 * jobs)
        redis_server.stop()
        await asyncio.sleep(3)
        redis_server.start()  # same port, nothing remembered
        results = await watching

        video_ids = [pk(video) for video in ids]
        logged = await history_of(video_ids)
        final = {v.id: v for v in await models.Video.filter(id__in=video_ids)}
        for (_, _, video), payloads in zip(ops, results, strict=True):
            video_id = pk(video)
            versions = [p["version"] for p in payloads]
            assert versions == sorted(set(versions)), (video, versions)  # in order, once
            assert payloads[-1]["status"] == "COMPLETED"
            assert versions[-1] == final[video_id].version
            # Nothing lost: every change the status history holds reached every watcher.
            assert set(logged[video_id]) <= set(versions), (video, versions)
            for payload in payloads[1:]:
                version = payload["version"]
                if version in logged[video_id] or capture.events.get((video_id, version)):
                    check_payload(payload, video_id, logged[video_id], capture)
                else:  # progress published while the capture was away: no truth to hold
                    assert payload["status"] == "PROCESSING", payload
        assert "publish failed" in worker.output()  # the outage did hit publishes
        assert "publishing again after an outage" in worker.output()
    except BaseException:
        for process in [api, *([worker] if worker else [])]:
            print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        raise
    finally:
        await capture.stop()
        for ws in sockets:
            await ws.close()
        for process in [api, *([worker] if worker else [])]:
            await asyncio.to_thread(process.stop)


async def _until_progress(capture: Capture, video_ids: list[int], min_events: int) -> None:
    wanted = set(video_ids)
    for _ in range(600):
        seen = sum(1 for (video_id, _) in capture.events if video_id in wanted)
        if seen >= min_events:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the jobs did not start")


async def test_a_thousand_sockets_closing_at_once_log_no_error(
    db: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    count = 1000
    user = await users.create_user(email="many@example.com", password="password123")
    token, _ = await users.issue_token(user=user, name="test")
    env = process_env(
        database_url=db.resolved_database_url,
        redis_url=redis_server.url,
        data_dir=tmp_path,
        VIDGEN_LOG_LEVEL="INFO",
    )
    api = ApiProcess(env, tmp_path, "api")
    worker: Worker | None = None
    sockets: list[GraphQLWS] = []
    try:
        await asyncio.to_thread(api.wait_ready)
        ids = await generate(api.url, token, ["sleep:60 progress succeed"])
        worker = Worker(env, tmp_path, concurrency=1)

        async def one(n: int) -> tuple[GraphQLWS, str]:
            # A busy machine (the suite runs beside other work) can take more than the
            # default 10 s to open fifty sockets at once: opening is not what is tested.
            ws = await GraphQLWS.open(api.ws_url, open_timeout=60)
            await ws.init({"Authorization": f"Bearer {token}"})
            op = await ws.subscribe(WATCH, {"id": ids[0]})
            await ws.subscribe(WATCH, {"id": ids[0]})  # more sends in flight per socket
            return ws, op

        ops: list[tuple[GraphQLWS, str]] = []
        for start in range(0, count, 50):
            ops += await asyncio.gather(*(one(n) for n in range(start, start + 50)))
        sockets = [ws for ws, _ in ops]
        # The client offered permessage-deflate; by default the server declines it.
        assert "Sec-WebSocket-Extensions" not in sockets[0].ws.response.headers
        # Everyone is being sent progress (several versions each) ...
        for ws, op in ops:
            for _ in range(2):
                await ws.next_data(op, "videoUpdated", within=60)
        before = len(api.output().splitlines())
        # ... when all of them go away at once, just as the server has begun sending the
        # next change to all of them: half with a closing handshake, half without one.
        await ops[0][0].next_data(ops[0][1], "videoUpdated", within=60)
        for ws in sockets[1::2]:
            ws.ws.transport.abort()
        await asyncio.gather(*(ws.ws.close() for ws in sockets[::2]))
        await asyncio.sleep(3)  # progress keeps coming: sends to the gone sockets
        lines = api.output().splitlines()[before:]
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert all("Traceback" not in line for line in lines), lines[:20]
        assert [r for r in records if r["level"] in {"ERROR", "CRITICAL"}] == []
        infos = [r for r in records if r["level"] == "INFO"]
        assert len(infos) <= count, len(infos)  # at most one INFO line per socket
        # The API is fine: it serves a new subscriber at once.
        ws = await GraphQLWS.open(api.ws_url)
        sockets.append(ws)
        await ws.init({"Authorization": f"Bearer {token}"})
        op = await ws.subscribe(WATCH, {"id": ids[0]})
        assert (await ws.next_data(op, "videoUpdated", within=30))["status"] == "PROCESSING"
    except BaseException:
        for process in [api, *([worker] if worker else [])]:
            print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        raise
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        for process in [api, *([worker] if worker else [])]:
            await asyncio.to_thread(process.stop)
