"""The data model (Tortoise ORM). The Video row is the job.

Relations and deletes:
- Deleting a Project or a Story sets ``Video.project`` / ``Video.story`` to NULL (SET NULL):
  the videos stay, they just leave the group. Deleting a Project also detaches its stories.
- Deleting a User cascades to everything the user owns.
- ``Video.deleted_at`` is a soft delete; rows are removed for good only by ``vidgen purge``.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from tortoise import fields
from tortoise.exceptions import ValidationError
from tortoise.indexes import Index
from tortoise.models import Model
from tortoise.validators import MaxValueValidator, MinValueValidator, RegexValidator

from vidgen import db
from vidgen.webhooks_out.signing import new_secret

RESOLUTION_RE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
MAX_SIDE = 8192


class VideoStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELED})


class OutputFormat(enum.StrEnum):
    MP4 = "mp4"
    WEBM = "webm"


class VideoKind(enum.StrEnum):
    """A clip is one generation; a film is a story's clips stitched together (docs/films.md)."""

    CLIP = "clip"
    FILM = "film"


class Transition(enum.StrEnum):
    """How a film passes from one clip to the next."""

    CUT = "cut"
    CROSSFADE = "crossfade"


class AttemptOutcome(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRY = "retry"  # failed with a retryable error, re-queued
    FAILED = "failed"  # failed for good
    CANCELED = "canceled"
    RESCUED = "rescued"  # lease expired (worker died), returned to the queue by a sweeper
    RELEASED = "released"  # worker shut down gracefully and handed the job back


def validate_resolution(value: str | None) -> None:
    """``WxH`` with both sides between 16 and 8192 pixels and even (video codecs need it)."""
    if value is None:
        return
    match = RESOLUTION_RE.match(value)
    if not match:
        raise ValidationError(f"resolution {value!r} must look like WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
        raise ValidationError(f"resolution {value!r}: each side must be 16..{MAX_SIDE} pixels")
    if width % 2 or height % 2:
        raise ValidationError(f"resolution {value!r}: both sides must be even")


class _ResolutionValidator(RegexValidator):
    def __init__(self) -> None:
        super().__init__(RESOLUTION_RE.pattern, 0)

    def __call__(self, value: object) -> None:
        validate_resolution(value)  # type: ignore[arg-type]


def normalize_name(name: str) -> tuple[str, str]:
    """Trim and collapse spaces for display; case-fold for uniqueness."""
    display = " ".join(name.split())
    return display, display.casefold()


class TimestampMixin:
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)


class User(Model):
    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)
    password_hash = fields.CharField(max_length=255)
    is_admin = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    # An admin's overrides of the quota settings for this user (setUserLimits); None follows
    # the settings. Read with the token on every request, so a quota check costs no query.
    max_active_jobs = fields.IntField(null=True)
    daily_video_seconds = fields.FloatField(null=True)
    quota_exempt = fields.BooleanField(null=True)
    # Signs the user's outgoing webhooks (``whsec_`` + base64; vidgen.webhooks_out.signing).
    webhook_secret = fields.CharField(max_length=64, null=True, default=new_secret)

    class Meta:
        table = "users"

    def __str__(self) -> str:
        return self.email


class ApiToken(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=100, default="default")
    prefix = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"


class Project(TimestampMixin, Model):
    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="projects", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.TextField(null=True)

    class Meta:
        table = "projects"
        indexes = (Index(fields=("owner_id", "created_at")),)


class Story(TimestampMixin, Model):
    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="stories", on_delete=fields.CASCADE
    )
    project: fields.ForeignKeyNullableRelation[Project] = fields.ForeignKeyField(
        "models.Project", related_name="stories", null=True, on_delete=fields.SET_NULL
    )
    title = fields.CharField(max_length=200)
    # Ordered paragraphs of text; Video.paragraph_index points into this list.
    paragraphs = fields.JSONField(default=list)

    class Meta:
        table = "stories"
        indexes = (Index(fields=("owner_id", "created_at")),)


class Theme(Model):
    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="themes", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    name_key = fields.CharField(max_length=100)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "themes"
        unique_together = (("owner_id", "name_key"),)


class Tag(Model):
    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tags", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    name_key = fields.CharField(max_length=100)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "tags"
        unique_together = (("owner_id", "name_key"),)


class Video(Model):
    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="videos", on_delete=fields.CASCADE
    )
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="created_videos", null=True, on_delete=fields.SET_NULL
    )
    prompt = fields.TextField()
    provider = fields.CharField(max_length=32)
    model = fields.CharField(max_length=100, null=True)
    status = fields.CharEnumField(VideoStatus, max_length=16, default=VideoStatus.QUEUED)
    progress = fields.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )

    # Output and inputs. *_file and input_image are storage keys; *_url are external URLs.
    video_url = fields.CharField(max_length=2048, null=True)
    video_file = fields.CharField(max_length=512, null=True)
    input_image = fields.CharField(max_length=512, null=True)
    thumbnail_file = fields.CharField(max_length=512, null=True)
    thumbnail_url = fields.CharField(max_length=2048, null=True)

    # Presentation and request.
    caption = fields.CharField(max_length=255, null=True)
    video_style = fields.CharField(max_length=100, null=True)
    resolution = fields.CharField(max_length=16, validators=[_ResolutionValidator()])
    output_format = fields.CharEnumField(OutputFormat, max_length=8, default=OutputFormat.MP4)
    seed = fields.BigIntField(null=True)

    # Technical metadata: requested duration until the output is probed, then the real one.
    duration_seconds = fields.FloatField(null=True)
    frame_rate = fields.FloatField(null=True)
    file_size = fields.BigIntField(null=True)
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    codec = fields.CharField(max_length=32, null=True)

    # Grouping.
    theme: fields.ForeignKeyNullableRelation[Theme] = fields.ForeignKeyField(
        "models.Theme", related_name="videos", null=True, on_delete=fields.SET_NULL
    )
    tags: fields.ManyToManyRelation[Tag] = fields.ManyToManyField(
        "models.Tag", related_name="videos", through="video_tags", on_delete=fields.CASCADE
    )
    project: fields.ForeignKeyNullableRelation[Project] = fields.ForeignKeyField(
        "models.Project", related_name="videos", null=True, on_delete=fields.SET_NULL
    )
    story: fields.ForeignKeyNullableRelation[Story] = fields.ForeignKeyField(
        "models.Story", related_name="videos", null=True, on_delete=fields.SET_NULL
    )
    paragraph_index = fields.IntField(null=True, validators=[MinValueValidator(0)])

    # The job.
    prediction_id = fields.CharField(max_length=255, null=True)
    error_message = fields.TextField(null=True)
    # What the provider says about a running job: queue position, last log line, throttling.
    status_message = fields.CharField(max_length=500, null=True)
    retry_count = fields.IntField(default=0)
    max_retries = fields.IntField(default=3)
    rescue_count = fields.IntField(default=0)
    priority = fields.IntField(default=0)
    # The job's turn among its owner's queued jobs of its priority (set when it is queued;
    # the claim's order after priority: docs/jobs.md, "Claiming").
    fair_rank = fields.BigIntField(default=0, db_default=0)
    scheduled_at = fields.DatetimeField(null=True)
    attempt = fields.IntField(default=0)  # fencing number, +1 per claim
    lease_expires_at = fields.DatetimeField(null=True)
    processed_by = fields.CharField(max_length=255, null=True)
    cancel_requested = fields.BooleanField(default=False)
    idempotency_key = fields.CharField(max_length=255, null=True)
    # Every status change is POSTed here (the WebhookDelivery outbox).
    webhook_url = fields.CharField(max_length=2048, null=True)
    version = fields.IntField(default=1)  # bumped on every change
    # The daily quota (vidgen.services.quotas): the seconds the request asked for and when it
    # last asked (created, or retried); while failed or canceled they count for nothing.
    requested_seconds = fields.FloatField(null=True)
    requested_at = fields.DatetimeField(null=True)
    # A film's job waits for its clips (FilmClip) and then stitches them.
    kind = fields.CharEnumField(VideoKind, max_length=8, default=VideoKind.CLIP)

    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    completed_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "videos"
        unique_together = (("owner_id", "idempotency_key"),)
        # Also partial indexes (SQL in migrations 0004, 0005, 0007 and 0009): the claim's
        # queue order, each owner's queued ranks, each worker's running jobs, running jobs
        # (by provider), scheduled jobs by due time, project, story, prediction id, a user's
        # videos that count against the quotas.
        indexes = (
            Index(fields=("owner_id", "created_at")),
            Index(fields=("created_at",)),
        )

    async def check_paragraph_index(self, *, paragraph_count: int | None = None) -> None:
        """``paragraph_index`` needs a story and must fall inside its paragraphs.

        Args:
            paragraph_count: how many paragraphs the story has, when the caller has just
                read the story itself (the videos service checks it first); None reads it.
        """
        if self.paragraph_index is None:
            return
        if self.story_id is None:
            raise ValidationError("paragraph_index needs a story")
        count = paragraph_count
        if count is None:
            story = await Story.get_or_none(id=self.story_id).only("id", "paragraphs")
            count = len(story.paragraphs or []) if story else 0
        if not 0 <= self.paragraph_index < count:
            raise ValidationError(
                f"paragraph_index {self.paragraph_index} is outside the story's "
                f"{count} paragraph(s)"
            )

    async def save(  # type: ignore[override]
        self, *args: Any, paragraph_count: int | None = None, **kwargs: Any
    ) -> None:
        """Tortoise's save, after :meth:`check_paragraph_index` (``paragraph_count`` as there)."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"paragraph_index", "story_id"} & set(update_fields):
            await self.check_paragraph_index(paragraph_count=paragraph_count)
        await super().save(*args, **kwargs)

    async def insert_values(self, *, paragraph_count: int | None = None) -> dict[str, Any]:
        """The columns and values that inserting this new video writes, for an INSERT written
        by hand (:func:`vidgen.jobs.lifecycle.record_created` inserts a video and its first
        history row in one statement).

        Checked exactly as :meth:`save` checks before an insert: the paragraph index first,
        then every field's conversion and validators (lengths, resolution, bounds), which
        also stamp ``created_at``/``updated_at`` on the instance. A field still holding its
        constant default gets the value converted once per process
        (:meth:`vidgen.db.NewRowBuilder.values`).

        Raises:
            ValidationError: like :meth:`save`; nothing was written.
        """
        await self.check_paragraph_index(paragraph_count=paragraph_count)
        return db.new_row_builder(type(self)).values(self)

    @classmethod
    def new(cls, **kwargs: Any) -> Video:
        """A new, unsaved video: ``Video(**kwargs)``, built at a fraction of its cost
        (:class:`vidgen.db.NewRowBuilder`; insert it with the lifecycle)."""
        return db.new_row_builder(cls)(**kwargs)  # type: ignore[no-any-return]


class VideoStatusEvent(Model):
    """Status history. The monotonic id is the event cursor that subscriptions resume from."""

    # (The docstring above is the table's description in migration 0001: keep it as is.)
    # This is the video's event log, written by vidgen.jobs.lifecycle only: every change a
    # subscriber must be able to replay after a cursor has a row. A status change has
    # from_status != to_status (None on the first row); a change that keeps the status
    # (edit, delete, restore) has from_status == to_status and a JSON message, the change's
    # name and the values it replaced (vidgen.events.history); statusHistory leaves those
    # rows out.

    id = fields.BigIntField(primary_key=True)
    video: fields.ForeignKeyRelation[Video] = fields.ForeignKeyField(
        "models.Video", related_name="status_events", on_delete=fields.CASCADE
    )
    owner_id = fields.IntField()  # denormalised for the owner's event feed
    from_status = fields.CharField(max_length=16, null=True)
    to_status = fields.CharField(max_length=16)
    version = fields.IntField()
    at = fields.DatetimeField(auto_now_add=True)
    message = fields.TextField(null=True)
    actor = fields.CharField(max_length=255, null=True)

    class Meta:
        table = "video_status_events"
        indexes = (Index(fields=("video_id", "id")), Index(fields=("owner_id", "id")))

    @property
    def is_status_change(self) -> bool:
        """False for a row of a change that kept the status (update, delete, restore)."""
        return self.from_status != self.to_status


class VideoAttempt(Model):
    """One run of a job: who ran it, on which prediction, and how it ended."""

    id = fields.BigIntField(primary_key=True)
    video: fields.ForeignKeyRelation[Video] = fields.ForeignKeyField(
        "models.Video", related_name="attempts", on_delete=fields.CASCADE
    )
    attempt = fields.IntField()
    worker = fields.CharField(max_length=255)
    provider = fields.CharField(max_length=32)
    prediction_id = fields.CharField(max_length=255, null=True)
    started_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)
    outcome = fields.CharEnumField(AttemptOutcome, max_length=16, default=AttemptOutcome.RUNNING)
    error_code = fields.CharField(max_length=100, null=True)
    error_message = fields.TextField(null=True)
    retryable = fields.BooleanField(null=True)

    class Meta:
        table = "video_attempts"
        unique_together = (("video_id", "attempt"),)


class FilmClip(Model):
    """One clip of a film, in paragraph order, with what the film does with it.

    Written with the film by vidgen.jobs.lifecycle.films (docs/films.md). The queue claims a
    film only once none of its clips is queued or processing.
    """

    id = fields.IntField(primary_key=True)
    film: fields.ForeignKeyRelation[Video] = fields.ForeignKeyField(
        "models.Video", related_name="film_clips", on_delete=fields.CASCADE
    )
    clip: fields.ForeignKeyRelation[Video] = fields.ForeignKeyField(
        "models.Video", related_name="in_films", on_delete=fields.CASCADE
    )
    position = fields.IntField()  # the paragraph index when the film was asked for
    caption = fields.TextField(null=True)  # burned in when set (the paragraph's text)
    # Into the next clip (the last clip's is unused).
    transition = fields.CharEnumField(Transition, max_length=16, default=Transition.CUT)

    class Meta:
        table = "film_clips"
        unique_together = (("film_id", "position"),)
        indexes = (Index(fields=("clip_id",)),)


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waiting for its turn, in flight, or waiting to retry
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: refused for good, or still failing after the retry window


class WebhookDelivery(Model):
    """One status change of a video for its webhook: the outbox.

    Written by vidgen.jobs.lifecycle in the transaction of the change it reports (with what
    the event's body says: the video as that change left it), then delivered by the workers
    (vidgen.webhooks_out), one at a time per video in ``version`` order.
    """

    id = fields.BigIntField(primary_key=True)
    message_id = fields.CharField(max_length=64)  # webhook-id: the same on every retry
    video: fields.ForeignKeyRelation[Video] = fields.ForeignKeyField(
        "models.Video", related_name="webhook_deliveries", on_delete=fields.CASCADE
    )
    owner_id = fields.IntField()  # whose secret signs it
    event_id = fields.BigIntField()  # the change's video_status_events row
    version = fields.IntField()
    video_status = fields.CharField(max_length=16)
    progress = fields.FloatField()
    error_message = fields.TextField(null=True)
    # A storage key (signed when the body is made) or a provider's URL.
    video_ref = fields.CharField(max_length=2048, null=True)
    thumbnail_ref = fields.CharField(max_length=2048, null=True)
    url = fields.CharField(max_length=2048)
    at = fields.DatetimeField()  # when the change happened
    state = fields.CharEnumField(DeliveryState, max_length=16, default=DeliveryState.PENDING)
    attempts = fields.IntField(default=0)  # also the fence of an attempt's outcome
    next_attempt_at = fields.DatetimeField()
    lease_expires_at = fields.DatetimeField(null=True)  # an attempt is in flight until then
    last_error = fields.TextField(null=True)
    body = fields.TextField(null=True)  # made at the first attempt, sent on every one
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_deliveries"
        # Also a partial index of the pending ones by due time (SQL in migration 0008).
        indexes = (Index(fields=("video_id", "version")),)
