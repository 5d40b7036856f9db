"""Fault suite: PostgreSQL and Redis restart in the middle of a run.

Worker and API processes run against PRIVATE servers that the test stops and restarts. In
each case every job reaches exactly one terminal state, no job runs twice at once, the
workers back off and resume without being restarted, and the API keeps answering (or says
it is not ready while the database is down).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from vidgen import db as vdb
from vidgen.models import User
from vidgen.services import users
from vidgen.settings import Settings

from .checks import assert_each_job_ran_exactly_once, count_terminal, submit_jobs
from .conftest import free_port, spawn, stop_all, vidgen_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WORKERS = 2


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return vidgen_env(
        VIDGEN_DATABASE_URL=database_url,
        VIDGEN_SECRET_KEY="fault-secret",
        VIDGEN_DATA_DIR=str(tmp_path / "data"),
        VIDGEN_MEDIA_ROOT=str(tmp_path / "media"),
        VIDGEN_ENABLE_TEST_PROVIDER="true",
        VIDGEN_EMBEDDED_WORKER="false",
        VIDGEN_LEASE_SECONDS="3",
        VIDGEN_HEARTBEAT_SECONDS="0.5",
        VIDGEN_WORKER_POLL_SECONDS="0.3",
        VIDGEN_RETRY_BASE_SECONDS="0.05",
        VIDGEN_RETRY_CAP_SECONDS="0.5",
        VIDGEN_MAX_RESCUES="5",
        VIDGEN_DB_POOL_MAX="8",
        VIDGEN_LOG_LEVEL="WARNING",
        VIDGEN_LOG_JSON="true",
        **extra,
    )


def _start(env: dict[str, str], tmp_path: Path, api_port: int):
    workers = [
        spawn(["-m", "vidgen.cli", "worker", "--concurrency", "6"], env, tmp_path / f"w{n}.log")
        for n in range(WORKERS)
    ]
    api = spawn(
        [
            "-m",
            "uvicorn",
            "--factory",
            "vidgen.web.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
        tmp_path / "api.log",
    )
    return workers, api


async def _status(http: httpx.AsyncClient, path: str) -> int:
    try:
        return (await http.get(path, timeout=5)).status_code
    except httpx.HTTPError:
        return 0


async def test_postgres_restart_mid_run(private_postgres, tmp_path: Path) -> None:
    name = f"faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(private_postgres.admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = private_postgres.url(name)
    await vdb.migrate_database(url)
    settings = Settings(
        _env_file=None,
        database_url=url,
        secret_key="k",
        data_dir=tmp_path / "data",
        db_pool_max=4,
    )
    await vdb.init(settings)
    env = _env(url, tmp_path)
    api_port = free_port()
    try:
        owner = await User.create(email="pg@example.com", password_hash="x")
        ids = await submit_jobs(owner, [f"sleep:0.3 job {i}" for i in range(60)])
        workers, api = _start(env, tmp_path, api_port)
        procs = [*workers, api]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
                await wait_for(lambda: _is(http, "/readyz", 200), 30, "the API to be ready")
                await wait_for(
                    lambda: _at_least(ids, 10), 60, "some jobs to finish before the outage"
                )

                private_postgres.stop()
                assert await _status(http, "/healthz") == 200, "liveness must not need the DB"
                await wait_for(lambda: _is(http, "/readyz", 503), 20, "/readyz to say not ready")
                await asyncio.sleep(2)
                assert await _status(http, "/healthz") == 200
                private_postgres.start()

                await wait_for(lambda: _is(http, "/readyz", 200), 30, "/readyz to recover")
                await wait_for(lambda: _at_least(ids, len(ids)), 120, "every job to finish")
            alive = [p.poll() is None for p in procs]
        finally:
            codes = stop_all(procs)
        assert all(alive), "workers and API must survive the outage without a restart"
        _assert_clean_exits(codes)
        videos = await assert_each_job_ran_exactly_once(ids)
        assert {v.status for v in videos.values()} == {"completed"}
    finally:
        await vdb.close()
        admin = await asyncpg.connect(private_postgres.admin_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def _assert_clean_exits(codes: list[int]) -> None:
    # Workers exit 0 on SIGTERM; uvicorn re-raises the signal after its graceful shutdown.
    *workers, api = codes
    assert workers == [0] * len(workers), f"workers exited with {workers}"
    assert api in (0, -15), f"the API exited with {api}"


async def _is(http: httpx.AsyncClient, path: str, code: int) -> bool:
    return await _status(http, path) == code


async def _at_least(ids: list[int], n: int) -> bool:
    return await count_terminal(ids) >= n


GENERATE = """
mutation($prompt: String!) {
  generateVideo(input: {prompt: $prompt, provider: "test", resolution: "64x64"}) { id status }
}
"""


@pytest.mark.postgres_only
async def test_redis_restart_mid_run(db, private_redis, tmp_path: Path) -> None:
    env = _env(str(db.database_url), tmp_path, VIDGEN_REDIS_URL=private_redis.url)
    owner = await users.create_user(email="redis@example.com", password="a long passphrase")
    token, _ = await users.issue_token(user=owner, name="fault")
    api_port = free_port()
    workers, api = _start(env, tmp_path, api_port)
    procs = [*workers, api]
    headers = {"Authorization": f"Bearer {token}"}
    submitted: list[int] = []
    failures: list[str] = []

    async def submit(http: httpx.AsyncClient, n: int) -> None:
        for _ in range(n):
            response = await http.post(
                "/graphql",
                json={"query": GENERATE, "variables": {"prompt": f"sleep:0.2 r{len(submitted)}"}},
                headers=headers,
                timeout=10,
            )
            body = response.json()
            if response.status_code != 200 or body.get("errors"):
                failures.append(f"{response.status_code}: {body}")
                continue
            submitted.append(await _video_id(body["data"]["generateVideo"]["id"]))

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
            await wait_for(lambda: _is(http, "/readyz", 200), 30, "the API to be ready")
            await submit(http, 20)
            await wait_for(lambda: _at_least(submitted, 5), 60, "work to start")

            private_redis.kill()
            await wait_for(lambda: _is(http, "/readyz", 503), 20, "/readyz to report the bus")
            assert await _status(http, "/healthz") == 200
            await submit(http, 10)  # the API keeps taking work while Redis is down
            await asyncio.sleep(1)
            private_redis.start()

            await wait_for(lambda: _is(http, "/readyz", 200), 30, "/readyz to recover")
            await submit(http, 10)
            await wait_for(lambda: _at_least(submitted, 40), 90, "every job to finish")
        alive = [p.poll() is None for p in procs]
    finally:
        codes = stop_all(procs)
    assert not failures, failures
    assert len(submitted) == 40
    assert all(alive), "processes must ride out the Redis restart"
    _assert_clean_exits(codes)
    videos = await assert_each_job_ran_exactly_once(submitted)
    assert {v.status for v in videos.values()} == {"completed"}


async def _video_id(global_id: str) -> int:
    import base64

    return int(base64.b64decode(global_id).decode().split(":", 1)[1])
