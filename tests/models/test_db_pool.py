"""The PostgreSQL pool returns connections without asyncpg's per-release reset round trip,
and that is safe because vidgen leaves no session state behind (see ``db._release_as_is``)."""

from __future__ import annotations

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
