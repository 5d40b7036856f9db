"""The committed migrations build the schema the models describe, on both backends."""

from __future__ import annotations

from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector

from vidgen import db as vdb


async def test_migrated_schema_matches_models(database_url: str) -> None:
    # database_url is already migrated from the template; migrating again is a no-op.
    await vdb.migrate_database(database_url)
    config = vdb.tortoise_config(database_url)
    ctx = TortoiseContext()
    with ctx:
        await ctx.init(config=config)
        try:
            detector = MigrationAutodetector(ctx.apps, config["apps"])
            writers = await detector.changes()
            pending = [op for w in writers for op in w.operations]
            assert pending == [], f"models changed without a migration: {pending}"
            conn = ctx.db("default")
            _, rows = await conn.execute_query("SELECT COUNT(*) AS n FROM videos")
            assert rows[0]["n"] == 0 if isinstance(rows[0], dict) else rows[0][0] == 0
        finally:
            await ctx.close_connections()


async def test_migrate_an_empty_database_from_scratch(tmp_path) -> None:
    url = f"sqlite://{tmp_path / 'fresh.sqlite3'}"
    await vdb.migrate_database(url)
    await vdb.migrate_database(url)  # idempotent
    assert (tmp_path / "fresh.sqlite3").stat().st_size > 0
