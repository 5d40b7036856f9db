"""Migration 0010 on a database that already has videos: they become clips, and an INSERT
written by hand that names no kind still works (the column has a database default)."""

from __future__ import annotations

from pathlib import Path

from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate

from vidgen import db as vdb


async def _rows(url: str, sql: str, params: list | None = None) -> list[dict]:
    ctx = TortoiseContext()
    with ctx:
        await ctx.init(config=vdb.tortoise_config(url))
        try:
            return await ctx.db("default").execute_query_dict(sql, params or [])
        finally:
            await ctx.close_connections()


async def _migrate(url: str, target: str | None = None) -> None:
    ctx = TortoiseContext()
    with ctx:
        try:
            await migrate(config=vdb.tortoise_config(url), target=target)
        finally:
            await ctx.close_connections()


async def test_existing_videos_become_clips(tmp_path: Path) -> None:
    # SQLite, in a file of its own migrated from scratch (refusing a NOT NULL column without
    # a default is SQLite's rule even for an empty table; PostgreSQL's for one with rows).
    url = f"sqlite://{tmp_path / 'old.sqlite3'}"
    await _migrate(url, target="models.0009_fair_claims")
    await _rows(
        url,
        "INSERT INTO users (email, password_hash, is_admin, created_at)"
        " VALUES ('a@x.io', 'x', 0, CURRENT_TIMESTAMP)",
    )
    insert = (
        "INSERT INTO videos (owner_id, prompt, provider, status, progress, resolution,"
        " output_format, retry_count, max_retries, rescue_count, priority, attempt,"
        " cancel_requested, version, created_at, updated_at, fair_rank)"
        " VALUES (1, 'p', 'test', 'queued', 0, '64x64', 'mp4', 0, 3, 0, 0, 0, 0, 1,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
    )
    await _rows(url, insert)
    await vdb.migrate_database(url)
    await _rows(url, insert)  # names no kind
    kinds = await _rows(url, "SELECT kind FROM videos ORDER BY id")
    assert [row["kind"] for row in kinds] == ["clip", "clip"]
