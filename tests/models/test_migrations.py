"""The committed migrations build the schema the models describe, on both backends."""

from __future__ import annotations

import pytest
from tortoise.context import TortoiseContext
from tortoise.exceptions import IntegrityError
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from vidgen import db as vdb
from vidgen.jobs import leases, lifecycle
from vidgen.jobs.lifecycle import now
from vidgen.jobs.webhooks import prediction_lookup
from vidgen.models import User, Video, VideoAttempt, VideoStatus


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


async def _packed_table_with_running_jobs(every: int = 10) -> dict[int, int]:
    """2,000 videos with long prompts, every ``every``-th running (attempt 1): id → attempt."""
    owner = await User.create(email="hot@example.com", password_hash="x")
    prompt = "a lighthouse on a cliff at dusk, waves below, slow dolly in " * 2
    # Every tenth job is running from the start: an UPDATE making them so would fill the
    # pages' spare room with row versions that only pruning frees, and pruning waits for
    # every older snapshot in the cluster (a CREATE DATABASE elsewhere made this flaky).
    await Video.bulk_create(
        [
            Video(
                owner=owner,
                prompt=prompt,
                provider="test",
                resolution="64x64",
                **({"status": VideoStatus.PROCESSING, "attempt": 1} if n % every == 0 else {}),
            )
            for n in range(2000)
        ],
        batch_size=500,
    )
    running = dict.fromkeys(
        await Video.filter(status=VideoStatus.PROCESSING).values_list("id", flat=True), 1
    )
    assert len(running) == 2000 // every
    return running


# This backend's counts not yet reported (no report happens inside a transaction): read them
# around the updates in one transaction.
_UPDATE_COUNTS = (
    "SELECT pg_stat_get_xact_tuples_updated('videos'::regclass) AS updated,"
    " pg_stat_get_xact_tuples_hot_updated('videos'::regclass) AS hot,"
    " (SELECT reloptions FROM pg_class WHERE relname = 'videos') AS options"
)


@pytest.mark.postgres_only
async def test_lease_heartbeats_on_a_packed_videos_table_are_hot_updates(db) -> None:
    # Heartbeats change no indexed column; with room left on each page (migration 0003) they
    # are HOT updates: no new entry in each of the table's indexes. With PostgreSQL's default
    # fillfactor, pages packed by inserts made only about 13% of these updates HOT.
    running = await _packed_table_with_running_jobs()
    async with in_transaction() as conn:
        before = (await conn.execute_query_dict(_UPDATE_COUNTS))[0]
        report = await leases.extend_leases(running, lease_seconds=60)
        after = (await conn.execute_query_dict(_UPDATE_COUNTS))[0]
    assert report.lost == set()
    updated, hot = after["updated"] - before["updated"], after["hot"] - before["hot"]
    assert updated == len(running)
    assert hot >= 0.9 * updated, (updated, hot)
    assert after["options"] == ["fillfactor=90"]


@pytest.mark.postgres_only
async def test_storing_prediction_ids_is_a_hot_update(db) -> None:
    # Migration 0005: no index of videos holds the prediction id (the webhook lookup goes
    # through the attempt rows), so the write that stores it, once per job, changes no
    # indexed column of the video: a HOT update wherever the page has room for the longer
    # row (fillfactor 90). Before, each one added an entry to six indexes. Ids as long as a
    # UUID, one or two running jobs per page of about 29 rows.
    running = await _packed_table_with_running_jobs(every=20)
    async with in_transaction() as conn:
        before = (await conn.execute_query_dict(_UPDATE_COUNTS))[0]
        for video_id, attempt in running.items():
            await lifecycle.store_prediction(
                video_id, attempt, _uuid_like(video_id), runner=_on(conn)
            )
        after = (await conn.execute_query_dict(_UPDATE_COUNTS))[0]
    updated, hot = after["updated"] - before["updated"], after["hot"] - before["hot"]
    assert updated == len(running)
    assert hot >= 0.9 * updated, (updated, hot)
    # And the webhook still finds each of them.
    for video_id in list(running)[:5]:
        sql, params = prediction_lookup("test", _uuid_like(video_id))
        assert await Video._meta.db.execute_query_dict(sql, params) == []  # no attempt rows
    await VideoAttempt.bulk_create(
        [
            VideoAttempt(video_id=video_id, attempt=1, worker="w", provider="test")
            for video_id in running
        ]
    )
    for video_id, attempt in running.items():
        await lifecycle.store_prediction(video_id, attempt, _uuid_like(video_id))
    for video_id in list(running)[:5]:
        sql, params = prediction_lookup("test", _uuid_like(video_id))
        rows = await Video._meta.db.execute_query_dict(sql, params)
        assert [row["id"] for row in rows] == [video_id]
        sql, params = prediction_lookup("other", _uuid_like(video_id))
        assert await Video._meta.db.execute_query_dict(sql, params) == []


def _uuid_like(video_id: int) -> str:
    return f"{video_id:08x}-0000-4000-8000-000000000000"


def _on(conn):
    async def run(sql, params, *, key):
        return await conn.execute_query_dict(sql, params)

    return run


def _engine_lookups() -> dict[str, QuerySet]:
    """The engine's lookups (the same filters and order as in jobs/queue.py and
    jobs/leases.py), by the partial index (migration 0004) that must serve each."""
    stamp = now()
    return {
        # leases.sweep
        "idx_videos_running": Video.filter(
            status=VideoStatus.PROCESSING, lease_expires_at__lt=stamp
        )
        .order_by("lease_expires_at")
        .limit(100)
        .values("id", "attempt"),
        # queue.next_due_at
        "idx_videos_scheduled": Video.filter(
            status=VideoStatus.QUEUED, deleted_at=None, scheduled_at__gt=stamp
        )
        .order_by("scheduled_at")
        .limit(1)
        .values_list("scheduled_at", flat=True),
        "idx_videos_project": Video.filter(project_id=7).values_list("id", flat=True),
        "idx_videos_story": Video.filter(story_id__in=[7, 8]).values_list("id", flat=True),
    }


async def test_partial_video_indexes_serve_their_lookups(database_url: str, db) -> None:
    conn = Video._meta.db
    dialect = conn.capabilities.dialect
    if dialect == "postgres":
        rows = await conn.execute_query_dict(
            "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'videos'"
        )
    else:
        rows = await conn.execute_query_dict(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'videos'"
        )
    names = {row["name"] for row in rows}
    fair = {"idx_videos_fair_claim", "idx_videos_owner_queue", "idx_videos_worker"}
    assert set(_engine_lookups()) | fair <= names
    assert "idx_videos_claim" not in names  # replaced by idx_videos_fair_claim (0009)
    # The full indexes they replaced are gone (each added an entry per job row change).
    assert not [n for n in names if n.startswith(("idx_videos_status_", "idx_videos_provide_"))]
    # Nor does any index of videos hold the prediction id (migration 0005).
    assert "idx_videos_prediction" not in names
    async with in_transaction() as tx:
        if dialect == "postgres":
            # An empty table: without this the planner reads it whole, whatever the indexes.
            await tx.execute_query("SET LOCAL enable_seqscan = off")
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        for index, query in _engine_lookups().items():
            plan = await tx.execute_query_dict(explain + query.sql(params_inline=True))
            text = " ".join(str(value) for row in plan for value in row.values())
            # Running jobs have two partial indexes (by provider; by worker, migration 0009):
            # on an empty table the planner may read either for the sweep.
            usable = {index} | ({"idx_videos_worker"} if index == "idx_videos_running" else set())
            assert any(name in text for name in usable), (index, text)
        # jobs.webhooks: a webhook's prediction, through the attempt rows (migration 0005).
        sql, params = prediction_lookup("replicate", "abc")
        plan = await tx.execute_query_dict(explain + sql, params)
        text = " ".join(str(value) for row in plan for value in row.values())
        assert "idx_attempts_prediction" in text, text


@pytest.mark.postgres_only
async def test_idempotency_keys_stay_unique_through_a_partial_index(db) -> None:
    # Migration 0005: the unique (owner_id, idempotency_key) rule is a partial index over the
    # videos that have a key (videos without one no longer add an entry per row version).
    conn = Video._meta.db
    rows = await conn.execute_query_dict(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'videos' AND indexdef LIKE"
        " '%UNIQUE%idempotency_key%'"
    )
    assert len(rows) == 1 and "WHERE (idempotency_key IS NOT NULL)" in rows[0]["indexdef"]
    unique = await conn.execute_query_dict(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'videos'::regclass"
        " AND contype = 'u' AND pg_get_constraintdef(oid) LIKE '%idempotency_key%'"
    )
    assert unique == [], unique
    owner = await User.create(email="keys@example.com", password_hash="x")
    other = await User.create(email="keys2@example.com", password_hash="x")
    made = {"owner": owner, "prompt": "a fox", "provider": "test", "resolution": "64x64"}
    await Video.create(**made, idempotency_key="k1")
    await Video.create(**made)
    await Video.create(**made)  # no key: never a conflict
    await Video.create(**{**made, "owner": other}, idempotency_key="k1")  # another owner's
    with pytest.raises(IntegrityError):
        await Video.create(**made, idempotency_key="k1")
    assert await Video.filter(owner=owner).count() == 3
    # The lookup by key (services.videos) reads that index.
    async with in_transaction() as tx:
        await tx.execute_query("SET LOCAL enable_seqscan = off")
        query = Video.filter(owner_id=owner.id, idempotency_key="k1").values_list("id")
        plan = await tx.execute_query_dict("EXPLAIN " + query.sql(params_inline=True))
    assert "uid_videos_idempotency" in " ".join(str(v) for r in plan for v in r.values())
