"""A transaction whose BEGIN fails or is canceled leaves nothing behind (``vidgen.db``'s
guard around Tortoise's transaction entry): not the task's connection binding, not the pool
connection (PostgreSQL), not the connection's lock or an open transaction (SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tortoise.backends.asyncpg.client import TransactionWrapper
from tortoise.backends.sqlite.client import SqliteTransactionWrapper
from tortoise.connection import get_connection, get_connections
from tortoise.transactions import in_transaction

from vidgen import db as vdb
from vidgen.models import User
from vidgen.settings import Settings


@pytest.fixture
def patch_begin(db: Settings) -> Iterator[Callable[[Callable[[], Any] | None], None]]:
    """Replace BEGIN for this backend with: the real BEGIN, then ``after()`` (awaited);
    ``None`` puts the real one back."""
    wrapper = SqliteTransactionWrapper if db.is_sqlite else TransactionWrapper
    real = wrapper.begin

    def patch(after: Callable[[], Any] | None) -> None:
        if after is None:
            wrapper.begin = real  # type: ignore[method-assign]
            return

        async def begin(self: Any) -> None:
            await real(self)
            await after()

        wrapper.begin = begin  # type: ignore[method-assign]

    yield patch
    wrapper.begin = real  # type: ignore[method-assign]


async def _committed_elsewhere(settings: Settings, email: str) -> bool:
    """Is the row there for another connection (so committed, not in a dangling BEGIN)?"""
    if settings.is_sqlite:
        path = str(settings.database_url).removeprefix("sqlite://").split("?")[0]
        with sqlite3.connect(path) as conn:
            return (
                conn.execute("SELECT count(*) FROM users WHERE email = ?", (email,)).fetchone()[0]
                == 1
            )
    import asyncpg

    conn = await asyncpg.connect(str(settings.database_url))
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email))
    finally:
        await conn.close()


async def _pool_is_whole() -> None:
    """PostgreSQL: every connection of the pool can still be taken (none leaked)."""
    pool = getattr(get_connection("default"), "_pool", None)
    if pool is None:
        return
    held = [await asyncio.wait_for(pool.acquire(), 5) for _ in range(pool._maxsize)]
    for connection in held:
        await pool.release(connection)


async def _entering(inside: asyncio.Event) -> asyncio.Task[None]:
    """A task entering a transaction, once its patched BEGIN has set ``inside``."""

    async def enter() -> None:
        async with in_transaction():
            pass

    task = asyncio.create_task(enter())
    await asyncio.wait_for(inside.wait(), 5)
    return task


async def test_a_failed_begin_leaves_the_task_free_for_the_next_transaction(
    db: Settings, patch_begin
) -> None:
    async def fail() -> None:
        raise OSError("the connection broke during BEGIN")

    patch_begin(fail)
    with pytest.raises(OSError):
        async with in_transaction():
            pass
    patch_begin(None)  # BEGIN works again

    async def next_transaction() -> None:  # in the same task, as a worker's loop would
        async with in_transaction():
            await User.create(email="after-failure@example.com", password_hash="x")

    await asyncio.wait_for(next_transaction(), 5)
    assert await _committed_elsewhere(db, "after-failure@example.com")
    await _pool_is_whole()


@pytest.mark.parametrize("cancels", [1, 2], ids=["canceled", "canceled-twice"])
async def test_a_begin_canceled_midway_leaves_nothing_behind(
    db: Settings, patch_begin, cancels: int
) -> None:
    # Twice: the second cancel lands in the clean-up itself (as anyio's cancel scopes, or a
    # shutdown canceling its tasks again, do).
    inside = asyncio.Event()

    async def hang() -> None:  # BEGIN has run; the task is canceled before it returns
        inside.set()
        await asyncio.Event().wait()

    patch_begin(hang)
    task = await _entering(inside)
    task.cancel()
    for _ in range(cancels - 1):
        await asyncio.sleep(0)  # the task is in its clean-up now
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    patch_begin(None)
    # Outside any transaction: committed at once, unless a dangling BEGIN swallowed it.
    await asyncio.wait_for(User.create(email="outside@example.com", password_hash="x"), 5)
    assert await _committed_elsewhere(db, "outside@example.com")

    async def next_transaction() -> None:
        async with in_transaction():
            await User.create(email="after-cancel@example.com", password_hash="x")

    await asyncio.wait_for(asyncio.create_task(next_transaction()), 5)
    assert await _committed_elsewhere(db, "after-cancel@example.com")
    await _pool_is_whole()


@pytest.mark.postgres_only
@pytest.mark.parametrize("then", ["raise", "cancel"])
async def test_a_connection_lost_under_begin_reports_begins_own_error(
    db: Settings, patch_begin, then: str
) -> None:
    # The pool has already detached a lost connection: cleaning it up must not replace
    # the error (or swallow the cancellation) with its own.
    inside = asyncio.Event()

    async def lose_it() -> None:
        transaction = get_connections().get("default")
        transaction._connection.terminate()  # as asyncpg does when the connection is lost
        inside.set()
        if then == "raise":
            raise OSError("connection lost")
        await asyncio.Event().wait()

    patch_begin(lose_it)
    task = await _entering(inside)
    if then == "cancel":
        task.cancel()
    with pytest.raises(OSError if then == "raise" else asyncio.CancelledError):
        await task
    patch_begin(None)
    await asyncio.wait_for(User.create(email="after-loss@example.com", password_hash="x"), 5)
    await _pool_is_whole()


def test_the_guard_is_installed() -> None:
    # Tortoise's own __aenter__ replaced (a Tortoise upgrade must keep this true).
    from tortoise.backends.base.client import TransactionContextPooled
    from tortoise.backends.sqlite.client import SqliteTransactionContext

    assert TransactionContextPooled.__aenter__ is vdb._enter_pooled
    assert SqliteTransactionContext.__aenter__ is vdb._enter_sqlite
