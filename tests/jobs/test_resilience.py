"""Database blinks: workers back off and resume; no job fails or runs twice because of them."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError

from tests.conftest import PG_ADMIN_URL
from tests.jobs.conftest import make_video, wait_until
from tests.tcp_proxy import FreezableProxy
from vidgen import backoff
from vidgen import db as vdb
from vidgen.events.memory import MemoryBus
from vidgen.jobs import queue, transient
from vidgen.jobs.lifecycle import StaleAttempt
from vidgen.jobs.worker import Worker, start_embedded
from vidgen.models import (
    AttemptOutcome,
    User,
    Video,
    VideoAttempt,
    VideoStatus,
    VideoStatusEvent,
)
from vidgen.runtime import Runtime

S = VideoStatus


def _wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        DBConnectionError("pool closed"),
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(),
        OSError("network unreachable"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation"),
        _wrapped(OperationalError("x"), asyncpg.exceptions.ConnectionDoesNotExistError("gone")),
        _wrapped(RuntimeError("while saving"), ConnectionResetError()),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=repr,
)
def test_connection_errors_are_transient(exc: BaseException) -> None:
    assert transient.is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("syntax error at or near SELEKT"),
        IntegrityError("duplicate key"),
        sqlite3.OperationalError("no such table: videos"),
        StaleAttempt("attempt 1 is stale"),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_real_errors_are_not_transient(exc: BaseException) -> None:
    assert not transient.is_transient(exc)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    # One backoff for the database (the worker's loops, transient.retrying) and Redis (the
    # bus's reconnects): half of each delay fixed, half random.
    for attempt in range(12):
        full = min(2.0, 0.1 * 2**attempt)
        delays = [backoff.delay(attempt, base=0.1, cap=2.0) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert backoff.delay(50, base=0.1, cap=2.0) <= 2.0
    assert backoff.delay(10_000) <= backoff.CAP_SECONDS


async def test_retrying_waits_out_transient_errors_and_passes_real_ones() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("blink")
        return "done"

    assert await transient.retrying(flaky, what="test", cap=0.01) == "done"
    assert calls == 3

    async def broken() -> None:
        raise StaleAttempt("stale")

    with pytest.raises(StaleAttempt):
        await transient.retrying(broken, what="test", cap=0.01)


async def _terminate_backends(database: str) -> int:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        return await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()


async def _completed(ids: list[int]) -> int:
    try:
        return await Video.filter(id__in=ids, status=S.COMPLETED).count()
    except Exception as exc:  # our own pool is being cut too
        if transient.is_transient(exc):
            return -1
        raise


@pytest.mark.postgres_only
async def test_jobs_complete_while_backends_are_terminated(runtime, user, provider) -> None:
    """Kill every connection of the worker's database again and again mid-run: the claim loop,
    heartbeat, sweeper and pipeline back off and resume; every job completes exactly once."""
    runtime.settings.worker_poll_seconds = 0.2
    database = str(runtime.settings.database_url).rsplit("/", 1)[1]
    ids = [
        (await make_video(user, f"sleep:{0.1 + (i % 4) * 0.1:.1f} job {i}")).id for i in range(24)
    ]
    worker = await start_embedded(runtime, concurrency=4)
    killed = 0
    try:
        for _ in range(12):
            await asyncio.sleep(0.15)
            killed += await _terminate_backends(database)
        for _ in range(300):
            if await _completed(ids) == len(ids):
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop(grace_seconds=5)
    assert killed > 0, "the test must really cut connections"
    assert worker._task is not None and worker._task.exception() is None
    statuses = Counter(await Video.filter(id__in=ids).values_list("status", flat=True))
    assert statuses == {S.COMPLETED: len(ids)}, statuses
    terminal = Counter(
        await VideoStatusEvent.filter(video_id__in=ids, to_status="completed").values_list(
            "video_id", flat=True
        )
    )
    assert all(terminal[i] == 1 for i in ids)
    outcomes = await VideoAttempt.filter(video_id__in=ids).values_list("outcome", flat=True)
    assert AttemptOutcome.FAILED not in outcomes  # a blink never fails a job
    assert all(provider.submissions[f"video-{i}"] == 1 for i in ids)  # nor pays twice


async def test_worker_adopts_jobs_claimed_when_the_reply_was_lost(runtime, user) -> None:
    """A claim that committed while its connection died leaves jobs processing under the
    worker's id; after the failed claim the worker runs them instead of waiting for a rescue."""
    runtime.settings.worker_poll_seconds = 0.1
    video = await make_video(user)
    worker = Worker(runtime, concurrency=2, worker_id="host:1:adopt")
    [orphan] = await queue.claim(worker_id=worker.worker_id, limit=1, lease_seconds=30)
    worker._adopt = True  # what a claim failing with a connection error leaves behind
    worker.start()
    try:
        await wait_until(lambda: Video.filter(id=video.id, status=S.COMPLETED).exists())
    finally:
        await worker.stop()
    done = await Video.get(id=video.id)
    assert (done.attempt, done.rescue_count, done.retry_count) == (orphan.attempt, 0, 0)
    [attempt] = await VideoAttempt.filter(video_id=video.id)
    assert attempt.outcome == AttemptOutcome.SUCCEEDED


@dataclass
class Proxied:
    runtime: Runtime
    proxy: FreezableProxy
    direct: asyncpg.Connection  # the test's own view of the database, not proxied
    user: User
    worker: Worker | None = None


@contextlib.asynccontextmanager
async def proxied_runtime(settings, provider, **overrides) -> AsyncIterator[Proxied]:
    """A runtime whose PostgreSQL connections go through a :class:`FreezableProxy`."""
    url = urlsplit(settings.database_url)
    proxy = FreezableProxy(url.port or 5432, url.hostname or "127.0.0.1")
    port = await proxy.start()
    userinfo = url.netloc.rpartition("@")[0]  # user (and password) kept as given
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    proxied = settings.model_copy(
        update={
            "database_url": urlunsplit(url._replace(netloc=netloc)),
            "worker_poll_seconds": 0.2,
            **overrides,
        }
    )
    direct = await asyncpg.connect(settings.database_url)
    try:
        await vdb.init(proxied)
        runtime = Runtime.create(proxied, bus=MemoryBus(), providers={"test": provider})
        await runtime.open()
        try:
            user = await User.create(email="owner@example.com", password_hash="x")
            setup = Proxied(runtime, proxy, direct, user)
            try:
                yield setup
            finally:
                proxy.cut_silent()  # a statement still stuck there (a failure) ends now
                if setup.worker is not None:
                    await asyncio.wait_for(setup.worker.stop(grace_seconds=5), 30)
        finally:
            await runtime.close()
            await vdb.close()
            await proxy.close()
    finally:
        await direct.close()


async def _completed_within(direct: asyncpg.Connection, ids: list[int], *, within: float) -> int:
    count = 0
    for _ in range(int(within / 0.1)):
        count = await direct.fetchval(
            "SELECT count(*) FROM videos WHERE id = any($1) AND status = 'completed'", ids
        )
        if count == len(ids):
            break
        await asyncio.sleep(0.1)
    return count


@pytest.mark.postgres_only
async def test_jobs_complete_when_connections_stop_answering(settings, provider) -> None:
    """Connections that go silent mid-run (no error, no reply; the server keeps them open,
    with whatever transaction they had) delay jobs by the command timeout, never strand them:
    without one, a statement waits forever while the heartbeat keeps its job's lease alive."""
    silenced = 0
    async with proxied_runtime(settings, provider, db_command_timeout_seconds=1.0) as setup:
        ids = [
            (await make_video(setup.user, f"sleep:{0.1 + (i % 3) * 0.1:.1f} job {i}")).id
            for i in range(16)
        ]
        setup.worker = await start_embedded(setup.runtime, concurrency=4)
        for _ in range(6):
            await asyncio.sleep(0.3)
            silenced += setup.proxy.freeze_open()
        # Each silenced statement costs its job about twice the timeout.
        assert await _completed_within(setup.direct, ids, within=60) == len(ids)
    assert silenced > 0, "the test must really silence connections"
    direct = await asyncpg.connect(settings.database_url)
    try:
        terminal = Counter(
            await direct.fetchval(
                "SELECT array_agg(video_id) FROM video_status_events"
                " WHERE video_id = any($1) AND to_status = 'completed'",
                ids,
            )
        )
        assert all(terminal[i] == 1 for i in ids), terminal
        outcomes = await direct.fetchval(
            "SELECT array_agg(outcome) FROM video_attempts WHERE video_id = any($1)", ids
        )
        assert AttemptOutcome.FAILED.value not in outcomes  # a silent peer never fails a job
        assert all(provider.submissions[f"video-{i}"] == 1 for i in ids)  # nor pays twice
    finally:
        await direct.close()


@pytest.mark.postgres_only
async def test_a_heartbeat_whose_connection_went_silent_keeps_its_leases(
    settings, provider
) -> None:
    """The heartbeat's next BEGIN times out on a silenced connection: the beat after it runs
    on a fresh connection, so the running job keeps its lease and is never rescued from
    under its live worker (Tortoise left the heartbeat's task bound to the dead transaction:
    every later beat failed)."""
    async with proxied_runtime(
        settings,
        provider,
        db_command_timeout_seconds=0.5,
        lease_seconds=4.0,  # a silenced beat costs about 1.5 s: ample margin, loaded or not
        heartbeat_seconds=0.3,
    ) as setup:
        video = await make_video(setup.user, "sleep:7 long job")
        setup.worker = await start_embedded(setup.runtime, concurrency=1)
        await wait_until(lambda: Video.filter(id=video.id, status=S.PROCESSING).exists())
        await asyncio.sleep(0.15)  # between two beats: the heartbeat's connection is idle
        assert setup.proxy.freeze_open() > 0
        assert await _completed_within(setup.direct, [video.id], within=30) == 1
        row = await setup.direct.fetchrow(
            "SELECT attempt, rescue_count FROM videos WHERE id = $1", video.id
        )
        assert (row["attempt"], row["rescue_count"]) == (1, 0)
