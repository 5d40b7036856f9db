from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# The claim's ORDER BY (priority DESC, due time, id) over queued, undeleted rows only: the
# queue is read in index order instead of sorting every queued row on each claim. Written as
# SQL because it is a partial expression index; the same statement works on SQLite and
# PostgreSQL. Must match jobs.queue._ORDER.
CLAIM_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_videos_claim ON videos "
    "(priority DESC, (COALESCE(scheduled_at, created_at)), id) "
    "WHERE status = 'queued' AND deleted_at IS NULL"
)


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Video",
            name="status_message",
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.RunSQL(CLAIM_INDEX, reverse_sql="DROP INDEX IF EXISTS idx_videos_claim"),
    ]
