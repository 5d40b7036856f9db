from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from vidgen.models import DeliveryState
from vidgen.webhooks_out.signing import new_secret

# Outgoing webhooks (docs/webhooks.md): the outbox, the receiver URL on a video, and each
# user's signing secret.
#
# The delivery loop looks for due rows by next_attempt_at among the pending ones only: a
# partial index that delivered and failed rows (nearly all of them, over time) never enter.
# A video's pending rows are found by (video_id, version), the model's own index, which also
# serves Video.webhookDeliveries.
DUE_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_webhook_deliveries_due ON webhook_deliveries"
    " (next_attempt_at, id) WHERE state = 'pending'"
)


async def _give_every_user_a_secret(apps, schema_editor) -> None:
    """New users get a secret from the model's default; the existing ones get theirs here."""
    client = schema_editor.client
    mark = "$1" if client.capabilities.dialect == "postgres" else "?"
    other = "$2" if client.capabilities.dialect == "postgres" else "?"
    rows = await client.execute_query_dict("SELECT id FROM users WHERE webhook_secret IS NULL")
    for row in rows:
        await client.execute_query(
            f"UPDATE users SET webhook_secret = {mark} WHERE id = {other}",
            [new_secret(), row["id"]],
        )


async def _nothing(apps, schema_editor) -> None:
    return None


class Migration(migrations.Migration):
    dependencies = [("models", "0007_user_quotas")]

    initial = False

    operations = [
        ops.CreateModel(
            name="WebhookDelivery",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("message_id", fields.CharField(max_length=64)),
                ("video", fields.ForeignKeyField("models.Video", source_field="video_id", db_constraint=True, to_field="id", related_name="webhook_deliveries", on_delete=OnDelete.CASCADE)),
                ("owner_id", fields.IntField()),
                ("event_id", fields.BigIntField()),
                ("version", fields.IntField()),
                ("video_status", fields.CharField(max_length=16)),
                ("progress", fields.FloatField()),
                ("error_message", fields.TextField(null=True, unique=False)),
                ("video_ref", fields.CharField(null=True, max_length=2048)),
                ("thumbnail_ref", fields.CharField(null=True, max_length=2048)),
                ("url", fields.CharField(max_length=2048)),
                ("at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("state", fields.CharEnumField(default=DeliveryState.PENDING, description="PENDING: pending\nDELIVERED: delivered\nFAILED: failed", enum_type=DeliveryState, max_length=16)),
                ("attempts", fields.IntField(default=0)),
                ("next_attempt_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("lease_expires_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("last_error", fields.TextField(null=True, unique=False)),
                ("body", fields.TextField(null=True, unique=False)),
                ("delivered_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "webhook_deliveries", "app": "models", "indexes": [Index(fields=["video_id", "version"])], "pk_attr": "id", "table_description": "One status change of a video for its webhook: the outbox."},
            bases=["Model"],
        ),
        ops.AddField(
            model_name="User",
            name="webhook_secret",
            field=fields.CharField(null=True, default=new_secret, max_length=64),
        ),
        ops.AddField(
            model_name="Video",
            name="webhook_url",
            field=fields.CharField(null=True, max_length=2048),
        ),
        ops.RunSQL(DUE_INDEX, reverse_sql="DROP INDEX IF EXISTS idx_webhook_deliveries_due"),
        ops.RunPython(_give_every_user_a_secret, _nothing),
    ]
