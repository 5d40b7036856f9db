from tortoise import migrations
from tortoise.migrations import operations as ops

# PostgreSQL only: leave 10% of each videos page free, so that updates touching no indexed
# column (lease heartbeats, progress, status messages) can be HOT updates, written beside the
# old row version without a new entry in each of the table's nine indexes. With the default
# (100%) pages are packed by inserts and such an update lands on another page: measured on
# 3,000 rows, 13% of heartbeat updates were HOT before and 99.7% after. Only pages written
# from now on keep the space; an existing table gets it for old rows after VACUUM FULL.
# SQLite has no such setting.
FILLFACTOR = 90


async def _set_fillfactor(apps, schema_editor, value=FILLFACTOR) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(
            f"ALTER TABLE videos SET (fillfactor = {int(value)})"
        )


async def _reset_fillfactor(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script("ALTER TABLE videos RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("models", "0002_status_message_and_claim_index")]

    initial = False

    operations = [ops.RunPython(_set_fillfactor, _reset_fillfactor)]
