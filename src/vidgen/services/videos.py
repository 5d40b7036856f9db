"""Videos: generate, change, cancel, retry, delete and restore them; list what a viewer sees.

:func:`generate_video` checks everything before it writes anything: the prompt, the
provider and its capabilities, the input image (by content), the grouping (the viewer's own
project and story), the schedule and the priority. ONE query finds everything the request
names (project, story, theme, tags, an earlier video of its idempotency key). Then the queued
Video, its first status-history row and its tag links are written atomically: one statement
on PostgreSQL (:func:`vidgen.jobs.lifecycle.record_created`), inside one transaction with
any new tags and theme or a stored input image. Only after the commit is the change
published and the workers woken. Bad input writes nothing and stores no file.

Status changes are the job engine's (:mod:`vidgen.jobs.service`, through the lifecycle);
this module checks the viewer may touch the video first. Another user's video is NotFound.

Deleting is soft (``deleted_at``). Deleting a queued or processing video also cancels its
job: a video the user threw away must not keep running (and costing) on a provider.
Restoring clears ``deleted_at`` only; a video canceled by its deletion stays canceled and
can be retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q, Subquery
from tortoise.filters import escape_like
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from vidgen import db, errors
from vidgen.jobs import lifecycle
from vidgen.jobs import service as jobs
from vidgen.media.images import check_image
from vidgen.media.storage import make_key
from vidgen.models import OutputFormat, Tag, Theme, User, Video, VideoStatus
from vidgen.providers import base
from vidgen.services import KEEP, Keep, catalog

if TYPE_CHECKING:
    from vidgen.providers.base import Capabilities
    from vidgen.runtime import Runtime
    from vidgen.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PROVIDER = "local"
DEFAULT_RESOLUTION = "1024x1024"
DEFAULT_DURATION = 5.0
MAX_CAPTION = 255
MAX_STYLE = 100
MAX_MODEL = 100
MAX_IDEMPOTENCY_KEY = 255
MAX_SEARCH = 200
#: scheduledAt may lie this far in the past (client clocks drift; "now" is fine).
SCHEDULE_TOLERANCE = dt.timedelta(seconds=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def actor_of(viewer: User) -> str:
    return f"user:{viewer.id}"


# --- visibility -------------------------------------------------------------------------


def visible_videos(viewer: User) -> QuerySet[Video]:
    """Videos the viewer may see (deleted ones included): their own, or all for an admin."""
    query = Video.all()
    return query if viewer.is_admin else query.filter(owner_id=viewer.id)


def can_view(viewer: User | None, video: Video) -> bool:
    """True when ``viewer`` may see ``video`` (subscriptions check each event with this)."""
    return viewer is not None and (viewer.is_admin or video.owner_id == viewer.id)


async def find_video(*, viewer: User, video_id: int) -> Video | None:
    """A visible video (deleted ones too), or None."""
    return await visible_videos(viewer).get_or_none(id=video_id)


async def get_video(*, viewer: User, video_id: int) -> Video:
    """A visible video. Raises NotFound (also for another user's)."""
    video = await find_video(viewer=viewer, video_id=video_id)
    if video is None:
        raise errors.NotFound("video")
    return video


def list_videos(*, viewer: User, **filters: Any) -> QuerySet[Video]:
    """The viewer's videos matching every given filter (not yet ordered or sliced): the
    queryset of :func:`video_list` with the same keyword filters (``status``, ``project_id``,
    ``story_id``, ``tag``, ``theme``, ``provider``, ``search``, ``include_deleted``).

    ``tag`` and ``theme`` match by normalised name; ``search`` looks for the text in the
    prompt and the caption, case-insensitively. Deleted videos only with ``include_deleted``.
    """
    return video_list(viewer=viewer, **filters).queryset()


def _encoded(model: Any, key: str, value: Any) -> Any:
    """``value`` as Tortoise encodes it for the filter ``key`` of ``model`` (its value
    encoder, else the field's ``to_db_value``, which validates it)."""
    info = model._meta.get_filter(key)
    field = model._meta.fields_map[info["field"]]
    encoder = info.get("value_encoder")
    return encoder(value, model, field) if encoder else field.to_db_value(value, model)


def video_list(
    *,
    viewer: User,
    status: Sequence[VideoStatus] | None = None,
    project_id: int | None = None,
    story_id: int | None = None,
    tag: str | None = None,
    theme: str | None = None,
    provider: str | None = None,
    search: str | None = None,
    include_deleted: bool = False,
) -> VideoList:
    """:func:`list_videos`'s filters, checked (the same errors, in the same order), as a
    :class:`VideoList`."""
    statuses = tuple(VideoStatus(s) for s in status) if status else ()
    theme_key = None if theme is None else catalog.check_label(theme, field="theme")[1]
    tag_key = None if tag is None else catalog.check_label(tag, field="tag")[1]
    text = None
    if search is not None and search.strip():
        text = search.strip()
        if len(text) > MAX_SEARCH:
            raise errors.BadUserInput(
                f"search must be at most {MAX_SEARCH} characters.", field="search"
            )
    return VideoList(
        owner_id=None if viewer.is_admin else viewer.id,
        include_deleted=include_deleted,
        statuses=statuses,
        project_id=project_id,
        story_id=story_id,
        provider=_provider_filter(provider),
        theme_key=theme_key,
        tag_key=tag_key,
        search=text,
    )


def _provider_filter(provider: str | None) -> str | None:
    """The provider filter, normalised; a name longer than any video's provider can be is
    BAD_USER_INPUT (the column would refuse it)."""
    if provider is None:
        return None
    name = provider.strip().lower()
    limit = Video._meta.fields_map["provider"].max_length
    if len(name) > limit:
        raise errors.BadUserInput(f"provider must be at most {limit} characters.", field="provider")
    return name


def _search_terms(text: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The filters (key, value) of ``search`` on the prompt and the caption, for the open
    database.

    Both ignore case beyond ASCII: PostgreSQL's ILIKE does; SQLite's LIKE and UPPER fold
    ASCII letters only ("\u00e9cole" would not find "\u00c9COLE"), so there a text that is
    not all ASCII, as a pattern that matches it literally, goes to Tortoise's match()
    function (a Python ``re`` search ignoring case), which :mod:`vidgen.db` installs on each
    SQLite connection. All-ASCII text keeps LIKE: it finds the same rows, about seven times
    faster than a Python function called on every row.
    """
    if not text.isascii() and db.dialect() == "sqlite":
        pattern = re.escape(text)
        return ("prompt__iposix_regex", pattern), ("caption__iposix_regex", pattern)
    return ("prompt__icontains", text), ("caption__icontains", text)


@dataclass(frozen=True)
class VideoList:
    """The videos matching checked filters (made by :func:`video_list`).

    :meth:`queryset` is :func:`list_videos`'s QuerySet. For the page statements that
    ``graphql.pagination`` keeps per shape of filters, :attr:`shape` says which filters
    are set, :meth:`params` gives the values that QuerySet's SQL takes, in its order (as
    Tortoise converts them), and :meth:`probe` another list of the same shape whose every
    value differs (to check that no value is written into the SQL text itself).
    """

    owner_id: int | None  # None: every owner's (an admin's list)
    include_deleted: bool = False
    statuses: tuple[VideoStatus, ...] = ()
    project_id: int | None = None
    story_id: int | None = None
    provider: str | None = None  # normalised
    theme_key: str | None = None
    tag_key: str | None = None
    search: str | None = None  # stripped, not empty

    model = Video

    def queryset(self) -> QuerySet[Video]:
        query = Video.all()
        if self.owner_id is not None:
            query = query.filter(owner_id=self.owner_id)
        if not self.include_deleted:
            query = query.filter(deleted_at__isnull=True)
        if self.statuses:
            query = query.filter(status__in=list(self.statuses))
        if self.project_id is not None:
            query = query.filter(project_id=self.project_id)
        if self.story_id is not None:
            query = query.filter(story_id=self.story_id)
        if self.provider is not None:
            query = query.filter(provider=self.provider)
        if self.theme_key is not None:
            query = query.filter(theme__name_key=self.theme_key)
        if self.tag_key is not None:
            tagged = Tag.filter(name_key=self.tag_key).values("videos__id")
            query = query.filter(id__in=Subquery(tagged))
        if self.search is not None:
            (prompt, text), (caption, _) = _search_terms(self.search)
            query = query.filter(Q(**{prompt: text}) | Q(**{caption: text}))
        return query

    def count(self) -> Any:
        """The awaitable number of matching videos."""
        return self.queryset().count()

    @property
    def shape(self) -> tuple[Any, ...]:
        return (
            self.owner_id is None,
            self.include_deleted,
            len(self.statuses),
            self.project_id is None,
            self.story_id is None,
            self.provider is None,
            self.theme_key is None,
            self.tag_key is None,
            self.search is None,
            self.search is not None and not self.search.isascii(),  # see _search_terms
        )

    def params(self) -> list[Any]:
        """The values :meth:`queryset`'s SQL takes, encoded (and checked: a value a field
        refuses raises the same error) by the same functions Tortoise applies."""
        params: list[Any] = []
        if self.owner_id is not None:
            params.append(_encoded(Video, "owner_id", self.owner_id))
        if self.statuses:
            params += _encoded(Video, "status__in", list(self.statuses))
        for key in ("project_id", "story_id", "provider"):
            value = getattr(self, key)
            if value is not None:
                params.append(_encoded(Video, key, value))
        if self.theme_key is not None:
            params.append(_encoded(Theme, "name_key", self.theme_key))
        if self.tag_key is not None:
            params.append(_encoded(Tag, "name_key", self.tag_key))
        if self.search is not None:
            for key, value in _search_terms(self.search):
                encoded = _encoded(Video, key, value)
                if key.endswith("__icontains"):
                    params.append(f"%{escape_like(encoded)}%")
                else:  # COALESCE(CAST(column AS VARCHAR), '') MATCH pattern
                    params += ["", encoded]
        return params

    def probe(self) -> VideoList:
        members = list(VideoStatus)

        def other(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, int):
                return value - 1 if value > 1 else value + 1  # stays within the column
            return f"{value[:-1]}{'!' if value.endswith('~') else '~'}"  # same length

        return replace(
            self,
            owner_id=other(self.owner_id),
            statuses=tuple(members[(members.index(s) + 1) % len(members)] for s in self.statuses),
            project_id=other(self.project_id),
            story_id=other(self.story_id),
            provider=other(self.provider),
            theme_key=other(self.theme_key),
            tag_key=other(self.tag_key),
            search=other(self.search),
        )


# --- generate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """A fully checked request: everything the transaction needs, nothing left to decide."""

    prompt: str
    provider: str
    model: str | None
    resolution: str
    output_format: OutputFormat
    duration_seconds: float
    project_id: int | None
    story_id: int | None
    paragraph_index: int | None
    caption: str | None
    video_style: str | None
    theme: tuple[str, str] | None
    tags: list[tuple[str, str]]
    priority: int
    scheduled_at: dt.datetime | None
    image_ext: str | None


def _optional_text(value: str | None, *, field: str, limit: int) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if len(text) > limit:
        raise errors.BadUserInput(f"{field} must be at most {limit} characters.", field=field)
    return text or None


def _default_model(caps: Capabilities, mode: base.Mode) -> str | None:
    """The provider's default model, or its first one that does ``mode`` when it does not."""
    default = caps.default_model
    if default is None or not caps.supports(mode) or caps.offers(mode, default):
        return default
    return next(iter(caps.models_for(mode)), default)


def _pick_resolution(
    requested: str | None, presets: Sequence[str], default: str | None, *, context: str = ""
) -> str:
    if requested is None:
        if default and default in presets:
            return default
        if DEFAULT_RESOLUTION in presets or not presets:
            return DEFAULT_RESOLUTION
        return presets[0]
    value = requested.strip().lower()
    if value not in presets:
        raise errors.BadUserInput(
            f"Resolution {requested!r} is not offered by this provider{context}; "
            f"choose one of {', '.join(presets)}.",
            field="resolution",
        )
    return value


def _pick_duration(
    requested: float | None, caps: Capabilities, model: str | None, resolution: str
) -> float:
    """The duration to ask for: ``requested`` if ``model`` makes it (at ``resolution``), else
    BAD_USER_INPUT; None picks the allowed value nearest the default."""
    allowed = caps.durations_for(model, resolution)
    low, high = caps.duration_range_for(model)
    if requested is None:
        if allowed:
            return float(min(allowed, key=lambda d: abs(d - DEFAULT_DURATION)))
        return float(min(max(DEFAULT_DURATION, low), high))
    if not math.isfinite(requested) or requested <= 0:
        raise errors.BadUserInput(
            "durationSeconds must be a positive number.", field="durationSeconds"
        )
    which = f"{model} at {resolution}" if model else "this provider"
    if allowed:
        if not any(abs(requested - d) < 1e-6 for d in allowed):
            seconds = ", ".join(f"{d:g}" for d in allowed)
            raise errors.BadUserInput(
                f"{which} makes videos of {seconds} seconds only.", field="durationSeconds"
            )
    elif not low <= requested <= high:
        raise errors.BadUserInput(
            f"durationSeconds must be between {low:g} and {high:g} for {which}.",
            field="durationSeconds",
        )
    return float(requested)


def _plan(
    *,
    runtime: Runtime,
    prompt: str,
    provider: str | None,
    model: str | None,
    project_id: int | None,
    story_id: int | None,
    paragraph_index: int | None,
    resolution: str | None,
    output_format: OutputFormat | str | None,
    duration_seconds: float | None,
    caption: str | None,
    video_style: str | None,
    theme: str | None,
    tags: Sequence[str] | None,
    priority: int | None,
    scheduled_at: dt.datetime | None,
    image: bool,
) -> _Plan:
    """Every check that needs no database, in the order clients see their errors; the
    grouping (:func:`_check_grouping`) and the input image (:func:`_check_image`) follow."""
    settings = runtime.settings
    # Provider first: the prompt limit and every capability depend on it.
    name = (provider or DEFAULT_PROVIDER).strip().lower()
    chosen = runtime.providers.get(name)
    if chosen is None:
        raise errors.BadUserInput(
            f"Unknown provider {provider!r}; choose one of {', '.join(runtime.providers)}.",
            field="provider",
        )
    if (reason := base.unavailable_reason(chosen)) is not None:
        raise errors.BadUserInput(
            f"The {name} provider is not available on this server: {reason} Choose another one.",
            field="provider",
        )
    caps = chosen.capabilities
    # Text or image: what a provider accepts may differ by mode (and by model). A provider
    # that lacks the mode altogether is refused on inputImage (_check_image), as before.
    mode = base.Mode.IMAGE if image else base.Mode.TEXT
    by_mode = caps.supports(mode)

    text = (prompt or "").strip()
    if not text:
        raise errors.BadUserInput("The prompt must not be empty.", field="prompt")
    length = caps.prompt_length(text)
    if length > caps.max_prompt_length:
        raise errors.BadUserInput(
            f"The prompt is {length} {caps.prompt_unit}; {name} accepts at most "
            f"{caps.max_prompt_length}.",
            field="prompt",
        )

    chosen_model = _optional_text(model, field="model", limit=MAX_MODEL) or _default_model(
        caps, mode
    )
    if model is not None and caps.models and chosen_model not in caps.models:
        raise errors.BadUserInput(
            f"Model {model!r} is not offered by {name}; choose one of {', '.join(caps.models)}.",
            field="model",
        )
    if by_mode and caps.models and not caps.offers(mode, chosen_model):
        other = "send no inputImage" if mode is base.Mode.IMAGE else "send an inputImage"
        raise errors.BadUserInput(
            f"{name} does not offer model {chosen_model!r} for {mode.label}; choose one of "
            f"{', '.join(caps.models_for(mode)) or 'no model'}, or {other}.",
            field="model",
        )

    presets, context = caps.resolutions, ""
    if by_mode and (narrowed := caps.resolutions_for(mode, chosen_model)) != presets:
        presets, context = narrowed, f" for {mode.label} with {chosen_model or 'its model'}"
    chosen_resolution = _pick_resolution(
        resolution, presets, caps.default_resolution, context=context
    )
    fmt = _parse_format(output_format)
    if fmt.value not in caps.output_formats:
        raise errors.BadUserInput(
            f"{name} cannot produce {fmt.value.upper()}; choose one of "
            f"{', '.join(f.upper() for f in caps.output_formats)}.",
            field="outputFormat",
        )
    duration = _pick_duration(duration_seconds, caps, chosen_model, chosen_resolution)

    clean_caption = _optional_text(caption, field="caption", limit=MAX_CAPTION)
    clean_style = _optional_text(video_style, field="videoStyle", limit=MAX_STYLE)
    theme_name = catalog.check_label(theme, field="theme") if theme is not None else None
    tag_names = catalog.check_labels(tags, field="tags")

    chosen_priority = 0 if priority is None else priority
    if not settings.priority_min <= chosen_priority <= settings.priority_max:
        raise errors.BadUserInput(
            f"priority must be between {settings.priority_min} and {settings.priority_max}.",
            field="priority",
        )
    when = scheduled_at
    if when is not None:
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        try:
            when = when.astimezone(dt.UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00-14:00 is after year 9999 in UTC
            raise errors.BadUserInput(
                "scheduledAt is out of range (it must fall within years 1-9999 in UTC).",
                field="scheduledAt",
            ) from None
        if when < _now() - SCHEDULE_TOLERANCE:
            raise errors.BadUserInput("scheduledAt must not be in the past.", field="scheduledAt")

    return _Plan(
        prompt=text,
        provider=name,
        model=chosen_model,
        resolution=chosen_resolution,
        output_format=fmt,
        duration_seconds=duration,
        project_id=project_id,
        story_id=story_id,
        paragraph_index=paragraph_index,
        caption=clean_caption,
        video_style=clean_style,
        theme=theme_name,
        tags=tag_names,
        priority=chosen_priority,
        scheduled_at=when,
        image_ext=None,
    )


def _parse_format(value: OutputFormat | str | None) -> OutputFormat:
    if value is None:
        return OutputFormat.MP4
    if isinstance(value, OutputFormat):
        return value
    try:
        return OutputFormat(str(value).strip().lower())
    except ValueError as exc:
        raise errors.BadUserInput(
            "outputFormat must be MP4 or WEBM.", field="outputFormat"
        ) from exc


@dataclass(frozen=True)
class _Found:
    """What :func:`_lookup` found of the viewer's rows a request names."""

    project: bool
    story_project_id: int | None  # meaningful only when ``story``
    story: bool
    paragraph_count: int
    theme_id: int | None
    tag_ids: dict[str, int]  # by name key
    earlier: bool  # a video of this idempotency key exists


class _Marks:
    """Placeholders in the connection's style, with their values in order."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}" if self.postgres else "?"


async def _lookup(*, owner_id: int, plan: _Plan, key: str | None) -> _Found:
    """ONE query for everything a request names: the viewer's project and story (with its
    paragraph count), theme and tags by name key, and an earlier video of the idempotency
    key. Another user's rows are never found."""
    conn = Video._meta.db
    postgres = conn.capabilities.dialect == "postgres"
    p = _Marks(postgres)
    length = "jsonb_array_length" if postgres else "json_array_length"
    typeof = "jsonb_typeof" if postgres else "json_type"
    parts: list[str] = []
    # Every branch has the same columns (typed NULLs: UNION needs one type per column).
    no_id, no_key = "CAST(NULL AS INTEGER)", "CAST(NULL AS TEXT)"

    def branch(kind: str, id_: str, project: str, paragraphs: str, name_key: str) -> str:
        return (
            f"SELECT '{kind}' AS kind, {id_} AS id, {project} AS project_id,"
            f" {paragraphs} AS paragraphs, {name_key} AS name_key"
        )

    if plan.project_id is not None:
        parts.append(
            branch("project", "id", no_id, no_id, no_key)
            + f" FROM projects WHERE id = {p(plan.project_id)} AND owner_id = {p(owner_id)}"
        )
    if plan.story_id is not None:
        count = f"CASE WHEN {typeof}(paragraphs) = 'array' THEN {length}(paragraphs) ELSE 0 END"
        parts.append(
            branch("story", "id", "project_id", count, no_key)
            + f" FROM stories WHERE id = {p(plan.story_id)} AND owner_id = {p(owner_id)}"
        )
    if plan.theme is not None:
        parts.append(
            branch("theme", "id", no_id, no_id, "name_key")
            + f" FROM themes WHERE owner_id = {p(owner_id)} AND name_key = {p(plan.theme[1])}"
        )
    if plan.tags:
        owner = p(owner_id)  # placeholders in the order they appear (SQLite's are "?")
        keys = ", ".join(p(key) for _, key in plan.tags)
        parts.append(
            branch("tag", "id", no_id, no_id, "name_key")
            + f" FROM tags WHERE owner_id = {owner} AND name_key IN ({keys})"
        )
    if key is not None:
        parts.append(
            branch("video", "id", no_id, no_id, no_key)
            + f" FROM videos WHERE owner_id = {p(owner_id)} AND idempotency_key = {p(key)}"
        )
    rows = await conn.execute_query_dict(" UNION ALL ".join(parts), p.values) if parts else []
    found: dict[str, dict[str, Any]] = {}
    tag_ids: dict[str, int] = {}
    for row in rows:
        if row["kind"] == "tag":
            tag_ids[row["name_key"]] = row["id"]
        else:
            found[row["kind"]] = row
    story = found.get("story")
    theme = found.get("theme")
    return _Found(
        project="project" in found,
        story=story is not None,
        story_project_id=story["project_id"] if story else None,
        paragraph_count=int(story["paragraphs"] or 0) if story else 0,
        theme_id=theme["id"] if theme else None,
        tag_ids=tag_ids,
        earlier="video" in found,
    )


def _check_grouping(plan: _Plan, found: _Found) -> _Plan:
    """Only the viewer's own project and story (another user's reads as missing); a story
    without a project puts the video in the story's project."""
    project_id = plan.project_id
    if project_id is not None and not found.project:
        raise errors.BadUserInput("No project with that id (projectId).", field="projectId")
    if plan.story_id is not None:
        if not found.story:
            raise errors.BadUserInput("No story with that id (storyId).", field="storyId")
        if project_id is not None and found.story_project_id != project_id:
            raise errors.BadUserInput("That story is not in that project.", field="storyId")
        if project_id is None:
            project_id = found.story_project_id
    if plan.paragraph_index is not None:
        if plan.story_id is None:
            raise errors.BadUserInput("paragraphIndex needs a storyId.", field="paragraphIndex")
        count = found.paragraph_count
        if not 0 <= plan.paragraph_index < count:
            raise errors.BadUserInput(
                f"paragraphIndex {plan.paragraph_index} is outside the story's "
                f"{count} paragraph(s).",
                field="paragraphIndex",
            )
    return replace(plan, project_id=project_id)


async def _check_image(runtime: Runtime, plan: _Plan, input_image: bytes | None) -> _Plan:
    name = plan.provider
    caps = runtime.providers[name].capabilities
    if input_image is None:
        if not caps.text_to_video:
            raise errors.BadUserInput(
                f"The {name} provider needs an input image.", field="inputImage"
            )
        return plan
    if not caps.image_to_video:
        raise errors.BadUserInput(
            f"The {name} provider does not take an input image.", field="inputImage"
        )
    settings = runtime.settings
    checked = await asyncio.to_thread(
        check_image,
        input_image,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_side=settings.max_image_side,
    )
    if not caps.inlines(len(input_image), checked.content_type) and not _public_https(settings):
        raise errors.BadUserInput(
            _too_big_to_inline(name, caps, checked.content_type, input_image), field="inputImage"
        )
    return replace(plan, image_ext=checked.ext)


def _public_https(settings: Settings) -> bool:
    """Whether providers can fetch our media: the worker then sends them a signed URL."""
    return bool(settings.public_url and settings.public_url.startswith("https://"))


def _too_big_to_inline(name: str, caps: Capabilities, content_type: str, data: bytes) -> str:
    limit = caps.max_inline_image_bytes or 0
    if limit <= base.data_uri_length(0, content_type):
        return (
            f"{name} takes input images by URL only: set VIDGEN_PUBLIC_URL to this server's"
            " public https:// address so it can fetch the image."
        )
    # The largest payload whose data: URI still fits (base64: 4 characters per 3 bytes).
    fits = (limit - base.data_uri_length(0, content_type)) // 4 * 3
    return (
        f"The input image is {len(data):,} bytes; {name} takes at most {fits:,} bytes inline "
        f"(a {limit:,}-character data: URI, base64 included) unless it can fetch the image "
        f"by URL. Send a smaller image, or set VIDGEN_PUBLIC_URL to this server's public "
        f"https:// address to lift the limit."
    )


async def _earlier(viewer: User, key: str) -> Video | None:
    return await Video.get_or_none(owner_id=viewer.id, idempotency_key=key)


async def generate_video(
    *,
    runtime: Runtime,
    viewer: User,
    prompt: str,
    provider: str | None = None,
    model: str | None = None,
    project_id: int | None = None,
    story_id: int | None = None,
    paragraph_index: int | None = None,
    input_image: bytes | None = None,
    resolution: str | None = None,
    output_format: OutputFormat | str | None = None,
    duration_seconds: float | None = None,
    caption: str | None = None,
    video_style: str | None = None,
    theme: str | None = None,
    tags: Sequence[str] | None = None,
    priority: int | None = None,
    scheduled_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> Video:
    """Queue a new video.

    Args:
        runtime: the process's :class:`~vidgen.runtime.Runtime` (settings, providers,
            storage, bus).
        viewer: the user asking; the video is theirs.
        prompt .. scheduled_at: the request (see CONTRACT.md ``GenerateVideoInput``); ids
            are database ids, ``input_image`` the uploaded file's bytes.
        idempotency_key: the same key from the same user returns the first video and
            creates nothing, even when two requests race.

    Returns:
        The queued video (or the earlier one for a repeated ``idempotency_key``).

    Raises:
        BadUserInput: with ``field`` naming the offending input; nothing was written or stored.
    """
    key = None
    if idempotency_key is not None:
        key = idempotency_key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise errors.BadUserInput(
                f"idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} characters.",
                field="idempotencyKey",
            )
    # A repeated idempotency key returns the first video whatever else the request says: its
    # errors count only once no such video turned up (the lookup below looks for it too).
    try:
        plan = _plan(
            runtime=runtime,
            prompt=prompt,
            provider=provider,
            model=model,
            project_id=project_id,
            story_id=story_id,
            paragraph_index=paragraph_index,
            resolution=resolution,
            output_format=output_format,
            duration_seconds=duration_seconds,
            caption=caption,
            video_style=video_style,
            theme=theme,
            tags=tags,
            priority=priority,
            scheduled_at=scheduled_at,
            image=input_image is not None,
        )
    except errors.BadUserInput:
        earlier = await _earlier(viewer, key) if key is not None else None
        if earlier is not None:
            return earlier
        raise
    found = await _lookup(owner_id=viewer.id, plan=plan, key=key)
    if found.earlier and key is not None:
        earlier = await _earlier(viewer, key)
        if earlier is not None:
            return earlier
    plan = _check_grouping(plan, found)
    plan = await _check_image(runtime, plan, input_image)

    tag_ids = dict(found.tag_ids)  # by name key
    new_tags = [(display, name_key) for display, name_key in plan.tags if name_key not in tag_ids]
    theme_id = found.theme_id
    new_theme = plan.theme[0] if plan.theme is not None and theme_id is None else None
    stored_key: str | None = None
    try:
        # A new tag or theme, or a stored image, takes several statements: one transaction.
        # Otherwise record_created's single statement is atomic on its own.
        several = bool(new_tags) or new_theme is not None or input_image is not None
        async with in_transaction() if several else nullcontext():
            if input_image is not None and plan.paragraph_index is not None:
                # The video is saved before record_created (its key needs the id), so the
                # paragraph is checked again here, under the lock record_created's own
                # insert takes on the other paths (see lifecycle.StoryChanged).
                assert plan.story_id is not None
                await lifecycle.lock_story_paragraph(plan.story_id, viewer.id, plan.paragraph_index)
            if new_theme is not None:
                theme_id = (await catalog.ensure_theme(owner_id=viewer.id, name=new_theme)).id
            if new_tags:
                created = await catalog.create_tags(owner_id=viewer.id, labels=new_tags)
                tag_ids.update((name_key, tag.id) for name_key, tag in created.items())
            video = Video(
                owner_id=viewer.id,
                created_by_id=viewer.id,
                prompt=plan.prompt,
                provider=plan.provider,
                model=plan.model,
                status=VideoStatus.QUEUED,
                resolution=plan.resolution,
                output_format=plan.output_format,
                duration_seconds=plan.duration_seconds,
                project_id=plan.project_id,
                story_id=plan.story_id,
                paragraph_index=plan.paragraph_index,
                caption=plan.caption,
                video_style=plan.video_style,
                theme_id=theme_id,
                priority=plan.priority,
                scheduled_at=plan.scheduled_at,
                max_retries=runtime.settings.max_retries,
                idempotency_key=key,
            )
            if input_image is not None and plan.image_ext is not None:
                # The storage key needs the video's id: insert it first.
                await video.save(paragraph_count=found.paragraph_count)
                stored_key = make_key(viewer.id, video.id, "input", plan.image_ext)
                await runtime.storage.save_bytes(stored_key, input_image)
                video.input_image = stored_key
                await video.save(update_fields=["input_image"])
            change = await lifecycle.record_created(
                video,
                actor=actor_of(viewer),
                tag_ids=[tag_ids[name_key] for _, name_key in plan.tags],
                paragraph_count=found.paragraph_count,
            )
    except BaseException as exc:
        if stored_key is not None:
            await _remove_file(runtime, stored_key)
        if isinstance(exc, IntegrityError):
            if key is not None:
                # Lost a race with the same idempotency key: the winner's video is the answer.
                earlier = await _earlier(viewer, key)
                if earlier is not None:
                    return earlier
        if isinstance(exc, IntegrityError | lifecycle.StoryChanged):
            # Or the project or story was deleted, or the story shortened, after the lookup
            # (a foreign key or the story guard refused the row): answered as if it had
            # been so from the start.
            _check_grouping(plan, await _lookup(owner_id=viewer.id, plan=plan, key=None))
            if isinstance(exc, lifecycle.StoryChanged):
                raise errors.BadUserInput(
                    "The story changed while the video was being added; try again.",
                    field="paragraphIndex",
                ) from exc
        raise

    logger.info(
        "video queued",
        extra={
            "action": "video.created",
            "video_id": video.id,
            "user_id": viewer.id,
            "provider": plan.provider,
        },
    )
    # The change and the workers' wake-up leave together: one round trip to the bus.
    outbox = lifecycle.Outbox()
    await lifecycle.publish(outbox, [change.event])
    await jobs.wake_workers(outbox, provider=plan.provider)
    await outbox.send(runtime.bus)
    return video


async def _remove_file(runtime: Runtime, key: str) -> None:
    try:
        await asyncio.shield(runtime.storage.delete(key))
    except Exception:  # noqa: BLE001 - the original error matters more; purge cleans up
        logger.exception("could not remove a stored input image", extra={"key": key})


# --- change ------------------------------------------------------------------------------


async def update_video(
    *,
    runtime: Runtime,
    viewer: User,
    video_id: int,
    caption: str | None | Keep = KEEP,
    video_style: str | None | Keep = KEEP,
    theme: str | None | Keep = KEEP,
    tags: Sequence[str] | None | Keep = KEEP,
) -> Video:
    """Change a video's presentation: caption, style, theme, tags (None clears).

    Bumps ``version`` and publishes the change so subscribers see it.
    """
    changes: dict[str, object] = {}
    if caption is not KEEP:
        changes["caption"] = _optional_text(caption, field="caption", limit=MAX_CAPTION)
    if video_style is not KEEP:
        changes["video_style"] = _optional_text(video_style, field="videoStyle", limit=MAX_STYLE)
    theme_name = None
    if theme is not KEEP and theme is not None:
        theme_name = catalog.check_label(theme, field="theme")
    tag_names = None
    if tags is not KEEP:
        tag_names = catalog.check_labels(tags or [], field="tags")
    video = await get_video(viewer=viewer, video_id=video_id)
    if video.deleted_at is not None:
        raise errors.Conflict("This video is deleted; restore it first.")
    if not changes and theme is KEEP and tag_names is None:
        return video  # nothing asked for: no new version, no event for subscribers

    async with in_transaction() as tx:
        # Every change locks the row first, a tags-only one too: a concurrent change of
        # this video waits here until this one commits, so its tag list then replaces this
        # one's whole (two lists were merged, past the limit too). The values this change
        # replaces are read under the lock: kept in its event-log row so a replay can show
        # the video as it was before (lifecycle.record_change).
        locked = await _locked(video.id).first()
        if locked is None:
            raise errors.NotFound("video")
        if locked.deleted_at is not None:
            raise errors.Conflict("This video is deleted; restore it first.")
        if theme is not KEEP:
            changes["theme_id"] = (
                (await catalog.ensure_theme(owner_id=video.owner_id, name=theme_name[0])).id
                if theme_name
                else None
            )
        before = {name: getattr(locked, name) for name in changes}
        if tag_names is not None:
            rows = await catalog.ensure_tags(
                owner_id=video.owner_id, names=[display for display, _ in tag_names]
            )
            await video.tags.clear()
            if rows:
                await video.tags.add(*rows)
        stamp = _now()
        await Video.filter(id=video.id).update(
            **changes, version=F("version") + 1, updated_at=stamp
        )
        event_id = await lifecycle.record_change(
            tx, video.id, change="updated", before=before, actor=actor_of(viewer), at=stamp
        )
    await video.refresh_from_db()
    await lifecycle.publish(runtime.bus, [lifecycle.event_for(video, event_id)])
    return video


def _locked(video_id: int) -> QuerySet[Video]:
    """The video row, locked until the transaction ends where the database has row locks
    (SQLite serialises writers anyway). Fetch whole rows (``.first()``): ``.values()`` and
    ``.values_list()`` drop the lock (Tortoise sends a plain SELECT)."""
    query = Video.filter(id=video_id)
    return query.select_for_update() if db.dialect() == "postgres" else query


async def cancel_video(*, runtime: Runtime, viewer: User, video_id: int) -> Video:
    """Cancel a queued video now, or ask the worker of a processing one to stop.

    Raises:
        NotFound: not the viewer's. Conflict: already completed, failed or canceled.
    """
    video = await get_video(viewer=viewer, video_id=video_id)
    return await _cancel_job(runtime=runtime, video=video, actor=actor_of(viewer))


async def _cancel_job(*, runtime: Runtime, video: Video, actor: str) -> Video:
    """Cancel the job; a queued video that still holds a live prediction (released at a
    worker's shutdown, or rescued) has no worker to stop it, so cancel it upstream here.

    Decided on the row the cancel wrote, not on ``video`` as read before: ``canceled`` at
    once means it was queued then (a processing job is only flagged, and its worker cancels
    upstream), even when it was processing at the earlier read and released meanwhile.
    """
    result = await jobs.request_cancel(video.id, actor=actor, bus=runtime.bus)
    prediction_id = result.prediction_id
    if prediction_id and VideoStatus(result.status) is VideoStatus.CANCELED:
        provider = runtime.providers.get(video.provider)
        if provider is not None:
            try:
                await provider.cancel(prediction_id)
            except Exception:  # noqa: BLE001 - best effort: the video is canceled either way
                logger.warning(
                    "could not cancel the provider's prediction",
                    exc_info=True,
                    extra={"video_id": video.id, "provider": video.provider},
                )
    return result


async def retry_video(*, runtime: Runtime, viewer: User, video_id: int) -> Video:
    """Queue a failed or canceled video again.

    Raises:
        NotFound: not the viewer's. Conflict: not failed or canceled, or deleted.
    """
    video = await get_video(viewer=viewer, video_id=video_id)
    if video.deleted_at is not None:
        raise errors.Conflict("This video is deleted; restore it first.")
    return await jobs.retry(video.id, actor=actor_of(viewer), bus=runtime.bus)


async def delete_video(*, runtime: Runtime, viewer: User, video_id: int) -> Video:
    """Soft-delete a video (``deleted_at``); a queued or processing job is canceled too.

    Deleting twice is harmless (the first ``deleted_at`` stays), and finishes what an
    earlier delete left undone: a delete that failed after its mark (a database blip, a
    killed process) left the job running, which a retried delete now cancels.
    """
    video = await get_video(viewer=viewer, video_id=video_id)
    if video.deleted_at is not None:
        if not _job_still_running(video):
            return video
        await _cancel_deleted(runtime=runtime, video=video, actor=actor_of(viewer))
        return video
    # Mark it deleted first, then stop whatever job it has NOW: a retryVideo that committed
    # before this mark left it queued (so it is canceled below), and one after it is refused
    # (retry checks deleted_at on the locked row). Checking the status first let a retry slip
    # in between and leave a deleted video queued, which no worker ever claims.
    stamp = _now()
    async with in_transaction() as tx:
        marked = await Video.filter(id=video.id, deleted_at__isnull=True).update(
            deleted_at=stamp, version=F("version") + 1, updated_at=stamp
        )
        event_id = None
        if marked:
            event_id = await lifecycle.record_change(
                tx,
                video.id,
                change="deleted",
                before={"deleted_at": None},
                actor=actor_of(viewer),
                at=stamp,
            )
    await video.refresh_from_db()
    if marked:
        await lifecycle.publish(runtime.bus, [lifecycle.event_for(video, event_id)])
    if VideoStatus(video.status) in (VideoStatus.QUEUED, VideoStatus.PROCESSING):
        await _cancel_deleted(runtime=runtime, video=video, actor=actor_of(viewer))
    return video


def _job_still_running(video: Video) -> bool:
    """Queued, or processing without its cancel requested yet."""
    status = VideoStatus(video.status)
    return status is VideoStatus.QUEUED or (
        status is VideoStatus.PROCESSING and not video.cancel_requested
    )


async def _cancel_deleted(*, runtime: Runtime, video: Video, actor: str) -> None:
    """Stop a deleted video's job (``video`` is refreshed)."""
    try:
        await _cancel_job(runtime=runtime, video=video, actor=actor)
    except lifecycle.IllegalTransition:
        pass  # it finished in the meantime (or a concurrent delete canceled it)
    await video.refresh_from_db()


async def restore_video(*, runtime: Runtime, viewer: User, video_id: int) -> Video:
    """Undo :func:`delete_video` (its status stays as it is). Harmless on a live video."""
    video = await get_video(viewer=viewer, video_id=video_id)
    if video.deleted_at is None:
        return video
    async with in_transaction() as tx:
        locked = await _locked(video.id).first()
        deleted_at = locked.deleted_at if locked is not None else None
        event_id = None
        if deleted_at is not None:  # else restored meanwhile: nothing to do
            stamp = _now()
            await Video.filter(id=video.id).update(
                deleted_at=None, version=F("version") + 1, updated_at=stamp
            )
            event_id = await lifecycle.record_change(
                tx,
                video.id,
                change="restored",
                before={"deleted_at": deleted_at},
                actor=actor_of(viewer),
                at=stamp,
            )
    await video.refresh_from_db()
    if event_id is not None:
        await lifecycle.publish(runtime.bus, [lifecycle.event_for(video, event_id)])
    return video
