"""The PostgreSQL pool returns connections without asyncpg's per-release reset round trip,
and that is safe because vidgen leaves no session state behind (see ``db._release_as_is``)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from vidgen import db as vdb
from vidgen.models import User
from vidgen.settings import Settings

pytestmark = pytest.mark.postgres_only


async def _pool():
    conn = get_connection("default")
    await conn.execute_query("SELECT 1")  # the pool is made on first use
    return conn._pool


async def test_pool_uses_the_no_op_reset(db: Settings) -> None:
    assert (await _pool())._reset is vdb._release_as_is


async def test_release_sends_no_reset_query(db: Settings) -> None:
    # A connection's last statement shows in pg_stat_activity.query: with asyncpg's default
    # reset it would be the reset query sent at each release, not the INSERT.
    pool = await _pool()
    watcher = await pool.acquire()  # held, so the creates below use another connection
    try:
        for i in range(3):
            await User.create(email=f"pool{i}@example.com", password_hash="x")
        rows = await watcher.fetch(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    finally:
        await pool.release(watcher)
    last = [row["query"] for row in rows]
    assert any("INSERT" in q for q in last), last
    assert not any("RESET ALL" in q or "UNLISTEN" in q for q in last), last


async def test_a_failed_transaction_leaves_a_clean_connection(db: Settings) -> None:
    pool = await _pool()
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await User.create(email="rolled-back@example.com", password_hash="x")
            raise RuntimeError("boom")
    assert not await User.filter(email="rolled-back@example.com").exists()
    # Every connection the pool hands out afterwards is outside any transaction.
    held = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        for connection in held:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        for connection in held:
            await pool.release(connection)


async def test_connections_give_up_on_a_silent_peer(db: Settings) -> None:
    # Both limits of db._add_timeouts, at their default (30 s): client and server side.
    pool = await _pool()
    async with pool.acquire() as connection:
        assert connection._config.command_timeout == 30.0
        assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") == "30s"


async def test_a_transaction_left_idle_is_ended_by_the_server(settings: Settings) -> None:
    # What frees the row locks of a transaction whose client vanished without a word. The
    # setting is also each statement's own limit here (the watcher's too): 1 s, not less,
    # so a statement a loaded machine answers late does not fail the test.
    await vdb.init(settings.model_copy(update={"db_command_timeout_seconds": 1.0}))
    try:
        pool = await _pool()
        idle = await pool.acquire()
        await idle.execute("BEGIN")
        await idle.execute("SELECT 1")
        pid = idle.get_server_pid()
        async with pool.acquire() as watcher:
            for _ in range(200):
                alive = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
                )
                if not alive:
                    break
                await asyncio.sleep(0.05)
        assert not alive
        with contextlib.suppress(asyncpg.exceptions.InterfaceError):
            await pool.release(idle)
    finally:
        await vdb.close()


async def test_zero_turns_the_timeouts_off(settings: Settings) -> None:
    await vdb.init(settings.model_copy(update={"db_command_timeout_seconds": 0}))
    try:
        async with (await _pool()).acquire() as connection:
            assert connection._config.command_timeout is None
            assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") == "0"
    finally:
        await vdb.close()


def test_migrations_run_without_the_timeouts(settings: Settings) -> None:
    url = str(settings.database_url)
    migrating = vdb.tortoise_config(url, settings)["connections"]["default"]["credentials"]
    serving = vdb.tortoise_config(url, settings, timeouts=True)["connections"]["default"]
    assert "command_timeout" not in migrating and "server_settings" not in migrating
    assert serving["credentials"]["command_timeout"] == 30.0


async def test_one_connection_serves_a_scope_and_goes_back(db: Settings) -> None:
    pool = await _pool()
    idle = pool.get_idle_size()
    conn = get_connection("default")
    assert await vdb.pooled(pool) is pool  # outside a scope: the pool itself
    async with vdb.one_connection():
        first = await vdb.pooled(pool)
        assert first is not pool and await vdb.pooled(pool) is first
        rows = await vdb.fetch(conn, "SELECT pg_backend_pid() AS pid", [])
        again = await vdb.fetch(conn, "SELECT pg_backend_pid() AS pid", [])
        assert rows[0]["pid"] == again[0]["pid"] == await first.fetchval("SELECT pg_backend_pid()")
        # Given back early: later statements take pool connections one by one again.
        await vdb.release_held()
        assert await vdb.pooled(pool) is pool
    assert pool.get_idle_size() >= idle


async def test_a_scope_never_waits_for_the_pool_holding_a_connection(db: Settings) -> None:
    # More scopes than the pool has connections, each holding one and then doing an ORM
    # query after release_held (as generate_video does): every scope finishes.
    pool = await _pool()
    size = pool.get_max_size()
    conn = get_connection("default")

    async def scope(i: int) -> None:
        async with vdb.one_connection():
            await vdb.fetch(conn, "SELECT 1 AS one", [])
            await asyncio.sleep(0.01)  # every scope holds its connection at once
            await vdb.release_held()
            await User.filter(id=-i).exists()

    async with asyncio.timeout(30):
        await asyncio.gather(*(scope(i) for i in range(size * 3)))


async def test_an_error_inside_a_scope_gives_the_connection_back(db: Settings) -> None:
    pool = await _pool()
    conn = get_connection("default")
    with contextlib.suppress(vdb.OperationalError):
        async with vdb.one_connection():
            await vdb.fetch(conn, "SELECT no_such_column FROM users", [])
    async with asyncio.timeout(10):
        for _ in range(pool.get_max_size() + 1):  # all of them can be taken again
            async with vdb.one_connection():
                await vdb.fetch(conn, "SELECT 1 AS one", [])
