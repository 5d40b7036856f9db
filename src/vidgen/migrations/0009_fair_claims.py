from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# Fair claims and the heartbeat by worker id (docs/jobs.md, "Claiming" and "Capacity").
#
# - videos.fair_rank: a job's turn among its owner's queued jobs of the same priority, set
#   when it is queued (vidgen.jobs.lifecycle.create): one more than the owner's last queued
#   job's, and never less than the rank at the head of the queue. Claims take jobs in order of
#   (priority, fair_rank, due time, id), so within a priority the owners take turns: one
#   user's backlog of thousands holds ranks far ahead, another user's single job gets the
#   rank at the head. Existing rows keep 0: what is queued now keeps its order.
# - idx_videos_fair_claim replaces idx_videos_claim (0002): the claim reads the queue in that
#   order, queued and undeleted rows only. Must match jobs.queue._ORDER.
# - idx_videos_owner_queue: an owner's last queued rank per priority, one index probe at
#   each insert (the same predicate as the claim's index, so claimed rows leave it).
# - idx_videos_worker: the jobs running under a worker id, which the heartbeat extends in
#   one statement. The lease is in no index, so a heartbeat's row versions can stay HOT.
#
# The same statements work on SQLite and PostgreSQL.
FAIR_CLAIM_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_fair_claim ON videos"
    " (priority DESC, fair_rank, (COALESCE(scheduled_at, created_at)), id)"
    " WHERE status = 'queued' AND deleted_at IS NULL"
)
OWNER_QUEUE_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_owner_queue ON videos (owner_id, priority, fair_rank)"
    " WHERE status = 'queued' AND deleted_at IS NULL"
)
WORKER_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_worker ON videos (processed_by)"
    " WHERE status = 'processing'"
)
OLD_CLAIM_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_claim ON videos "
    "(priority DESC, (COALESCE(scheduled_at, created_at)), id) "
    "WHERE status = 'queued' AND deleted_at IS NULL"
)


class Migration(migrations.Migration):
    dependencies = [("models", "0008_webhook_outbox")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Video",
            name="fair_rank",
            field=fields.BigIntField(default=0, db_default=0),
        ),
        # The new indexes first: no moment without a lookup path.
        ops.RunSQL(
            [FAIR_CLAIM_INDEX, OWNER_QUEUE_INDEX, WORKER_INDEX],
            reverse_sql=[
                "DROP INDEX IF EXISTS idx_videos_fair_claim",
                "DROP INDEX IF EXISTS idx_videos_owner_queue",
                "DROP INDEX IF EXISTS idx_videos_worker",
            ],
        ),
        ops.RunSQL("DROP INDEX IF EXISTS idx_videos_claim", reverse_sql=OLD_CLAIM_INDEX),
    ]
