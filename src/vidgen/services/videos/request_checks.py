"""Every check of a ``generateVideo`` request that needs no database, in the order clients
see their errors: the provider and what it offers, the prompt, the model, the resolution,
the format, the duration, the labels, the priority and the schedule; then the input image
(by content). The result is a :class:`CheckedRequest`: nothing left to decide."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vidgen import errors
from vidgen.media.images import check_image
from vidgen.models import OutputFormat
from vidgen.providers import base
from vidgen.services import catalog

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


#: scheduledAt may lie this far in the past (client clocks drift; "now" is fine).
SCHEDULE_TOLERANCE = dt.timedelta(seconds=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CheckedRequest:
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


def optional_text(value: str | None, *, field: str, limit: int) -> str | None:
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


def check_request(
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
) -> CheckedRequest:
    """Every check that needs no database, in the order clients see their errors; the
    grouping (:func:`check_grouping`) and the input image (:func:`check_input_image`) follow."""
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
    # that lacks the mode altogether is refused on inputImage (check_input_image), as before.
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

    chosen_model = optional_text(model, field="model", limit=MAX_MODEL) or _default_model(
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

    clean_caption = optional_text(caption, field="caption", limit=MAX_CAPTION)
    clean_style = optional_text(video_style, field="videoStyle", limit=MAX_STYLE)
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

    return CheckedRequest(
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


async def check_input_image(
    runtime: Runtime, checked: CheckedRequest, input_image: bytes | None
) -> CheckedRequest:
    """The input image checked by content (type, size, pixels) and against what the provider
    takes (a provider without image input refuses one; one without text input needs one)."""
    name = checked.provider
    caps = runtime.providers[name].capabilities
    if input_image is None:
        if not caps.text_to_video:
            raise errors.BadUserInput(
                f"The {name} provider needs an input image.", field="inputImage"
            )
        return checked
    if not caps.image_to_video:
        raise errors.BadUserInput(
            f"The {name} provider does not take an input image.", field="inputImage"
        )
    settings = runtime.settings
    image = await asyncio.to_thread(
        check_image,
        input_image,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_side=settings.max_image_side,
    )
    if not caps.inlines(len(input_image), image.content_type) and not _fetchable_by_url(settings):
        raise errors.BadUserInput(
            _too_big_to_inline(name, caps, image.content_type, input_image), field="inputImage"
        )
    return replace(checked, image_ext=image.ext)


def _fetchable_by_url(settings: Settings) -> bool:
    """Whether providers can fetch an uploaded image by URL, as ``jobs/provider_request``
    sends it: the object store's presigned URL when the store is S3 and public
    (``VIDGEN_S3_PUBLIC``), else a signed media URL when this server has a public https
    address."""
    if settings.s3_public and settings.resolved_storage_url.startswith("s3://"):
        return True
    return bool(settings.public_url and settings.public_url.startswith("https://"))


def _too_big_to_inline(name: str, caps: Capabilities, content_type: str, data: bytes) -> str:
    limit = caps.max_inline_image_bytes or 0
    if limit <= base.data_uri_length(0, content_type):
        return (
            f"{name} takes input images by URL only: set VIDGEN_PUBLIC_URL to this server's"
            " public https:// address (or VIDGEN_S3_PUBLIC=true with a public object store)"
            " so it can fetch the image."
        )
    # The largest payload whose data: URI still fits (base64: 4 characters per 3 bytes).
    fits = (limit - base.data_uri_length(0, content_type)) // 4 * 3
    return (
        f"The input image is {len(data):,} bytes; {name} takes at most {fits:,} bytes inline "
        f"(a {limit:,}-character data: URI, base64 included) unless it can fetch the image "
        f"by URL. Send a smaller image, or set VIDGEN_PUBLIC_URL to this server's public "
        f"https:// address (or VIDGEN_S3_PUBLIC=true with a public object store) to lift "
        f"the limit."
    )
