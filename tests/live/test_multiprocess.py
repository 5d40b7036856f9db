"""Two API processes on one Redis both deliver what a worker in a third process did."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.live.processes import ApiProcess, Process, WorkerProcess, process_env
from tests.live.redis_server import RedisServer, free_port
from tests.live.wsclient import GraphQLWS
from vidgen.services import users
from vidgen.settings import Settings

GENERATE = """
mutation G($input: GenerateVideoInput!) { generateVideo(input: $input) { id status version } }
"""
WATCH = """
subscription W($id: ID!) { videoUpdated(id: $id) { id status version progress videoUrl } }
"""

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


async def subscriber_connections(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return sum(1 for c in await client.client_list() if c.get("name") == "vidgen:sub")
    finally:
        await client.aclose()


async def test_two_api_processes_deliver_a_third_process_change(
    db: Settings, redis_server: RedisServer, tmp_path: Path
):
    user = await users.create_user(email="alice@example.com", password="password123")
    token, _ = await users.issue_token(user=user, name="test")
    env = process_env(
        database_url=db.resolved_database_url, redis_url=redis_server.url, data_dir=tmp_path
    )
    apis = [ApiProcess(env, tmp_path, f"api{i}") for i in (1, 2)]
    worker = None
    sockets: list[GraphQLWS] = []
    try:
        for api in apis:
            await asyncio.to_thread(api.wait_ready)
        async with httpx.AsyncClient(base_url=apis[0].url, timeout=30) as http:
            response = await http.post(
                "/graphql",
                json={
                    "query": GENERATE,
                    "variables": {
                        "input": {"prompt": "sleep:1 progress succeed", "provider": "test"}
                    },
                },
                headers={"Authorization": f"Bearer {token}"},
            )
        body = response.json()
        assert "errors" not in body, body
        video_id = body["data"]["generateVideo"]["id"]

        ops = []
        for api in apis:
            ws = await GraphQLWS.open(api.ws_url)
            sockets.append(ws)
            await ws.init({"Authorization": f"Bearer {token}"})
            op = await ws.subscribe(WATCH, {"id": video_id})
            assert (await ws.next_data(op, "videoUpdated"))["status"] == "QUEUED"
            ops.append((ws, op))

        worker = WorkerProcess(env, tmp_path)  # the third process does the work
        for ws, op in ops:
            statuses, versions = [], []
            while True:
                got = await ws.next_data(op, "videoUpdated", within=30)
                statuses.append(got["status"])
                versions.append(got["version"])
                if got["status"] == "COMPLETED":
                    break
            assert statuses[0] == "PROCESSING" and statuses[-1] == "COMPLETED"
            assert set(statuses) == {"PROCESSING", "COMPLETED"}
            assert versions == sorted(versions) and len(set(versions)) == len(versions)
            assert got["videoUrl"] and got["progress"] == 1.0
            assert (await ws.receive(op))["type"] == "complete"
        # One pub/sub connection per process, however many subscribers it serves.
        assert await subscriber_connections(redis_server.url) == 3
    except BaseException:
        for process in [*apis, *([worker] if worker else [])]:
            print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        raise
    finally:
        for ws in sockets:
            await ws.close()
        for process in [*apis, *([worker] if worker else [])]:
            await asyncio.to_thread(process.stop)


class TwoProcessApi(ApiProcess):
    """``vidgen serve --workers 2``: two API processes on one port."""

    def __init__(self, env: dict, workdir: Path) -> None:  # noqa: D107
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        env = {**env, "VIDGEN_PORT": str(self.port), "VIDGEN_PUBLIC_URL": self.url}
        args = [sys.executable, "-m", "vidgen.cli", "serve", "--no-worker", "--workers", "2"]
        Process.__init__(self, args, env, workdir / "api-workers.log")


async def test_serve_with_two_workers_runs_two_processes_one_subscription_each(
    db: Settings, redis_server: RedisServer, tmp_path: Path
):
    user = await users.create_user(email="bob@example.com", password="password123")
    token, _ = await users.issue_token(user=user, name="test")
    env = process_env(
        database_url=db.resolved_database_url, redis_url=redis_server.url, data_dir=tmp_path
    )
    api = TwoProcessApi(env, tmp_path)
    worker = None
    sockets: list[GraphQLWS] = []
    try:
        await asyncio.to_thread(api.wait_ready)
        # Both processes up (one pattern subscription each): the one /readyz reached is up,
        # the other may still be starting on a loaded machine.
        for _ in range(600):
            if await subscriber_connections(redis_server.url) == 2:
                break
            await asyncio.sleep(0.1)
        assert await subscriber_connections(redis_server.url) == 2
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            response = await http.post(
                "/graphql",
                json={
                    "query": GENERATE,
                    "variables": {
                        "input": {"prompt": "sleep:1 progress succeed", "provider": "test"}
                    },
                },
                headers={"Authorization": f"Bearer {token}"},
            )
        video_id = response.json()["data"]["generateVideo"]["id"]
        ops = []
        for _ in range(20):  # accepted by either process
            ws = await GraphQLWS.open(api.ws_url)
            sockets.append(ws)
            await ws.init({"Authorization": f"Bearer {token}"})
            op = await ws.subscribe(WATCH, {"id": video_id})
            assert (await ws.next_data(op, "videoUpdated"))["status"] == "QUEUED"
            ops.append((ws, op))
        worker = WorkerProcess(env, tmp_path)
        seen = []
        for ws, op in ops:
            versions = [1]
            while True:
                got = await ws.next_data(op, "videoUpdated", within=30)
                versions.append(got["version"])
                if got["status"] == "COMPLETED":
                    break
            seen.append(versions)
        # Every socket, whichever process holds it, got every version in order.
        assert all(v == list(range(1, v[-1] + 1)) for v in seen), seen
        assert len({tuple(v) for v in seen}) == 1
        assert await subscriber_connections(redis_server.url) == 3  # 2 API + the worker
    except BaseException:
        for process in [api, *([worker] if worker else [])]:
            print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        raise
    finally:
        for ws in sockets:
            await ws.close()
        for process in [api, *([worker] if worker else [])]:
            await asyncio.to_thread(process.stop)
