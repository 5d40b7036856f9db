from tortoise import migrations
from tortoise.migrations import operations as ops

# A job changes its video row three times on the hot path (claim, prediction id, end), and a
# change of status (or of the prediction id) cannot be a HOT update: each one added an
# entry to eight of the table's nine indexes (all but idx_videos_claim, queued rows only);
# after this migration, to five or six of ten. Indexes that only ever serve lookups of a
# few rows now hold only those rows (partial indexes), so a job's row versions skip them:
#
# - (status, priority, scheduled_at) served the sweeper, the provider limits and
#   next_due_at. Replaced by two partial indexes: running jobs (by provider: the sweeper,
#   the limits' counts, claimed_by; running jobs are few), and queued jobs with a schedule
#   by due time (next_due_at, now an index lookup instead of a scan of every queued job).
#   Queued jobs are read through idx_videos_claim (0002).
# - project_id, story_id: only videos in a project or story (lookups are by equality).
# - (provider, prediction_id): only videos that have a prediction (webhook lookups).
#
# bench/engine_bench.py measures the engine with these indexes (bench/README.md, "The engine's
# rows" and "What the code does for speed").
# The same statements work on SQLite and PostgreSQL.
PARTIAL_INDEXES = [
    # On provider, not on the lease: a heartbeat (which moves the lease) stays a HOT update.
    "CREATE INDEX IF NOT EXISTS idx_videos_running ON videos (provider)"
    " WHERE status = 'processing'",
    "CREATE INDEX IF NOT EXISTS idx_videos_scheduled ON videos (scheduled_at)"
    " WHERE status = 'queued' AND deleted_at IS NULL AND scheduled_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_videos_project ON videos (project_id)"
    " WHERE project_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_videos_story ON videos (story_id)"
    " WHERE story_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_videos_prediction ON videos (provider, prediction_id)"
    " WHERE prediction_id IS NOT NULL",
]
DROP_PARTIAL_INDEXES = [
    f"DROP INDEX IF EXISTS {name}"
    for name in (
        "idx_videos_running",
        "idx_videos_scheduled",
        "idx_videos_project",
        "idx_videos_story",
        "idx_videos_prediction",
    )
]


class Migration(migrations.Migration):
    dependencies = [("models", "0003_videos_fillfactor")]

    initial = False

    operations = [
        # The new indexes first: no moment without a lookup path.
        ops.RunSQL(PARTIAL_INDEXES, reverse_sql=DROP_PARTIAL_INDEXES),
        ops.RemoveIndex(model_name="Video", fields=["status", "priority", "scheduled_at"]),
        ops.RemoveIndex(model_name="Video", fields=["provider", "prediction_id"]),
        ops.RemoveIndex(model_name="Video", fields=["project_id"]),
        ops.RemoveIndex(model_name="Video", fields=["story_id"]),
    ]
