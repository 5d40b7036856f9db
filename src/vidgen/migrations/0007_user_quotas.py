from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# Per-user quotas (vidgen.services.quotas, docs/limits.md).
#
# - users: an admin's overrides of the quota settings (NULL follows the settings).
# - videos: the seconds a request asked for and when it last asked (created or retried):
#   probing replaces duration_seconds with the output's real length, and a retry asks again.
# - idx_videos_quota: a user's videos that count (active, or completed), by status and time,
#   with their seconds, so the active-jobs count and the rolling 24 hours' sum read the index
#   alone. Partial: a failed or canceled row version adds no entry. Queries repeat the
#   predicate word for word (SQLite uses a partial index only when the query's WHERE holds
#   its terms).
# - vidgen_quota_admits (PostgreSQL): the race-free check the insert of a new video (or a
#   retry's transition) runs in its own statement. It takes a transaction-scoped advisory
#   lock per user, then counts: a VOLATILE function's queries each take a fresh snapshot, so
#   the count sees every video a concurrent request committed before it released the lock
#   (a statement's own snapshot predates the wait and would miss it). SQLite serialises
#   writers, so there the condition is plain SQL in the inserting statement.
# - Backfill: videos of the last day count from their creation.
QUOTA_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_quota"
    " ON videos (owner_id, status, requested_at, requested_seconds)"
    " WHERE status IN ('queued', 'processing', 'completed')"
)
ADMITS_FUNCTION = """
CREATE OR REPLACE FUNCTION vidgen_quota_admits(
    p_owner integer, p_max_active integer, p_max_seconds double precision,
    p_seconds double precision, p_since timestamptz
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1986490741, p_owner);
    IF p_max_active IS NOT NULL AND (
        SELECT count(*) FROM videos WHERE owner_id = p_owner
        AND status IN ('queued', 'processing')
        AND status IN ('queued', 'processing', 'completed')
    ) >= p_max_active THEN
        RETURN false;
    END IF;
    IF p_max_seconds IS NOT NULL AND p_seconds + (
        SELECT coalesce(sum(requested_seconds), 0) FROM videos WHERE owner_id = p_owner
        AND status IN ('queued', 'processing', 'completed') AND requested_at > p_since
    ) > p_max_seconds + 1e-9 THEN
        RETURN false;
    END IF;
    RETURN true;
END
$$
"""
DROP_ADMITS_FUNCTION = (
    "DROP FUNCTION IF EXISTS vidgen_quota_admits"
    "(integer, integer, double precision, double precision, timestamptz)"
)
BACKFILL = {
    "postgres": (
        "UPDATE videos SET requested_seconds = duration_seconds, requested_at = created_at"
        " WHERE requested_at IS NULL AND created_at > now() - interval '1 day'"
    ),
    # Tortoise keeps SQLite times as text ('2025-01-31 12:00:00.000000+00:00', UTC), so
    # they compare as text.
    "sqlite": (
        "UPDATE videos SET requested_seconds = duration_seconds, requested_at = created_at"
        " WHERE requested_at IS NULL"
        " AND created_at > strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day')"
    ),
}


async def _forward(apps, schema_editor) -> None:
    client = schema_editor.client
    dialect = client.capabilities.dialect
    await client.execute_script(QUOTA_INDEX)
    if dialect == "postgres":
        await client.execute_script(ADMITS_FUNCTION)
    await client.execute_script(BACKFILL[dialect])


async def _backward(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(DROP_ADMITS_FUNCTION)
    await client.execute_script("DROP INDEX IF EXISTS idx_videos_quota")


class Migration(migrations.Migration):
    dependencies = [("models", "0005_lighter_job_row_writes")]

    initial = False

    operations = [
        ops.AddField(model_name="User", name="max_active_jobs", field=fields.IntField(null=True)),
        ops.AddField(
            model_name="User", name="daily_video_seconds", field=fields.FloatField(null=True)
        ),
        ops.AddField(model_name="User", name="quota_exempt", field=fields.BooleanField(null=True)),
        ops.AddField(
            model_name="Video", name="requested_seconds", field=fields.FloatField(null=True)
        ),
        ops.AddField(model_name="Video", name="requested_at", field=fields.DatetimeField(null=True)),
        ops.RunPython(_forward, _backward),
    ]
