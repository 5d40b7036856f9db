from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from vidgen.models import Transition, VideoKind

# Films (docs/films.md): a video's kind (clip or film), and a film's clips in order with the
# caption and transition each gets. The claim looks a film's clips up by film_id (the unique
# (film_id, position) index); a clip's films are found by clip_id.
#
# The kind column gets a database default ('clip'), which Tortoise's AddField does not give
# it: the videos already there become clips, and INSERTs written by hand that name no kind
# (the lifecycle's name every column, but tests, benchmarks and other tools do not) still
# work.
KIND_COLUMN = "ALTER TABLE videos ADD COLUMN kind VARCHAR(8) NOT NULL DEFAULT 'clip'"


class AddKindWithDefault(ops.AddField):
    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor:
            await state_editor._run_sql(KIND_COLUMN)


class Migration(migrations.Migration):
    dependencies = [("models", "0009_fair_claims")]

    initial = False

    operations = [
        ops.CreateModel(
            name="FilmClip",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "film",
                    fields.ForeignKeyField(
                        "models.Video",
                        source_field="film_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="film_clips",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "clip",
                    fields.ForeignKeyField(
                        "models.Video",
                        source_field="clip_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="in_films",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("position", fields.IntField()),
                ("caption", fields.TextField(null=True, unique=False)),
                (
                    "transition",
                    fields.CharEnumField(
                        default=Transition.CUT,
                        description="CUT: cut\nCROSSFADE: crossfade",
                        enum_type=Transition,
                        max_length=16,
                    ),
                ),
            ],
            options={
                "table": "film_clips",
                "app": "models",
                "unique_together": (("film_id", "position"),),
                "indexes": [Index(fields=["clip_id"])],
                "pk_attr": "id",
                "table_description": "One clip of a film, in paragraph order, with what the film does with it.",
            },
            bases=["Model"],
        ),
        AddKindWithDefault(
            model_name="Video",
            name="kind",
            field=fields.CharEnumField(
                default=VideoKind.CLIP,
                description="CLIP: clip\nFILM: film",
                enum_type=VideoKind,
                max_length=8,
            ),
        ),
    ]
