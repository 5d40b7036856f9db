from tortoise import migrations
from tortoise.migrations import operations as ops

# Two more indexes that every row version of a running job paid for, and that serve few rows.
# After 0004, a job with no project, story or idempotency key added 16 index entries over its
# three row changes on PostgreSQL (5 at the claim, 6 at the prediction id's write, 5 at the
# end); after this one, 7 (4, none: that write changes no indexed column, so it is a HOT
# update whenever the row's page has room for the new version, 3).
#
# - The webhook lookup by (provider, prediction_id) now goes through the attempt rows: the
#   same fenced statement that keeps a job's prediction id on its video keeps it on the
#   attempt row, whose index moves instead of the video's (an attempt row is small and
#   has two other indexes, a video row six). The webhook lookup (vidgen.jobs.webhooks) joins
#   back to the video and checks that the video still holds that prediction.
# - PostgreSQL: the unique (owner_id, idempotency_key) constraint becomes a partial unique
#   index over the videos that have a key. The same rule (NULLs never conflicted), without an
#   entry for each version of every video created without one. SQLite keeps its constraint:
#   it is part of the table's definition there, and SQLite has no HOT updates to win.
#
# bench/engine_bench.py measures the engine with these indexes (bench/README.md, "The engine's
# rows" and "What the code does for speed").
ATTEMPT_PREDICTION_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_attempts_prediction ON video_attempts (prediction_id)"
    " WHERE prediction_id IS NOT NULL"
)
# Every video holding a prediction has it on its current attempt row already (the claim
# copies it, store_prediction writes both in one statement): this only repairs rows that code
# before that left behind (NULL, or an older id after a resubmission), so that webhooks for
# the id the video holds keep finding it.
BACKFILL = (
    "UPDATE video_attempts SET prediction_id = ("
    "SELECT v.prediction_id FROM videos AS v WHERE v.id = video_attempts.video_id)"
    " WHERE EXISTS (SELECT 1 FROM videos AS v WHERE v.id = video_attempts.video_id"
    " AND v.attempt = video_attempts.attempt AND v.prediction_id IS NOT NULL"
    " AND (video_attempts.prediction_id IS NULL"
    " OR video_attempts.prediction_id <> v.prediction_id))"
)
VIDEO_PREDICTION_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_prediction ON videos (provider, prediction_id)"
    " WHERE prediction_id IS NOT NULL"
)
IDEMPOTENCY_INDEX = "uid_videos_idempotency"


async def _unique_constraints(client) -> list[str]:
    """The names of videos' unique constraints on exactly (owner_id, idempotency_key)."""
    rows = await client.execute_query_dict(
        "SELECT c.conname AS name FROM pg_constraint AS c"
        " WHERE c.conrelid = 'videos'::regclass AND c.contype = 'u'"
        " AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute AS a"
        " WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey))"
        " = ARRAY['idempotency_key', 'owner_id']"
    )
    return [row["name"] for row in rows]


async def _create_partial_idempotency(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {IDEMPOTENCY_INDEX} ON videos"
            " (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
        )


async def _drop_partial_idempotency(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(f"DROP INDEX IF EXISTS {IDEMPOTENCY_INDEX}")


async def _drop_full_idempotency(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        for name in await _unique_constraints(client):
            await client.execute_script(f'ALTER TABLE videos DROP CONSTRAINT "{name}"')


async def _restore_full_idempotency(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres" and not await _unique_constraints(client):
        await client.execute_script(
            "ALTER TABLE videos ADD CONSTRAINT uid_videos_owner_i_e423ec"
            " UNIQUE (owner_id, idempotency_key)"
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0004_partial_video_indexes")]

    initial = False

    # One transaction. The new indexes and the backfill first (building the unique index
    # blocks writes to videos, not reads; there is no moment without either lookup path or the
    # rule); the two drops last, because each takes an exclusive lock on videos (reads wait
    # too) that is held until the migration commits. Reversed in the opposite order.
    operations = [
        ops.RunSQL(
            [ATTEMPT_PREDICTION_INDEX, BACKFILL],
            reverse_sql=["DROP INDEX IF EXISTS idx_attempts_prediction"],
        ),
        ops.RunPython(_create_partial_idempotency, _drop_partial_idempotency),
        ops.RunSQL(["DROP INDEX IF EXISTS idx_videos_prediction"], reverse_sql=[VIDEO_PREDICTION_INDEX]),
        ops.RunPython(_drop_full_idempotency, _restore_full_idempotency),
    ]
