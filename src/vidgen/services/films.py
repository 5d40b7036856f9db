"""Films: ``renderStory`` (a story's paragraphs as clips, stitched into one video), what a
film's cancel and retry do to its clips, and a story's latest film and clips.

A film is a Video of kind ``film`` whose job waits in the queue until none of its clips is
queued or processing, then stitches them (:mod:`vidgen.jobs.film`). Its clips are ordinary
videos of kind ``clip`` with the story and a paragraph index. ``renderStory`` reuses a
paragraph's latest clip made with the same provider, resolution, format and duration from
the paragraph's current text (completed, or still on its way), and queues a new clip for
every other paragraph: an edited paragraph gets a new clip, the others are reused.

The film, its new clips and the links between them are written in one transaction, so the
queue never sees a film without its clips. The film is admitted against the owner's quotas
as one job asking for the new clips' seconds (docs/films.md, docs/limits.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tortoise.transactions import in_transaction

from vidgen import dialect, errors
from vidgen.events import messages
from vidgen.events.batch import PublishBatch
from vidgen.jobs import control, lifecycle
from vidgen.models import (
    FilmClip,
    OutputFormat,
    Story,
    Transition,
    User,
    Video,
    VideoKind,
    VideoStatus,
)
from vidgen.services import catalog, quotas
from vidgen.services.videos.access import actor_of
from vidgen.services.videos.generation import check_webhook_url
from vidgen.services.videos.request_checks import CheckedRequest, check_request

if TYPE_CHECKING:
    from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)

S = VideoStatus
_REUSABLE = (S.COMPLETED, S.QUEUED, S.PROCESSING)
_SAME_SECONDS = 1e-6


async def render_story(
    *,
    runtime: Runtime,
    viewer: User,
    story_id: int,
    provider: str | None = None,
    resolution: str | None = None,
    output_format: OutputFormat | str | None = None,
    duration_seconds_per_paragraph: float | None = None,
    captions: bool = False,
    transition: Transition | str | None = None,
    webhook_url: str | None = None,
) -> Video:
    """Queue a film of the whole story (see the module docstring).

    Args:
        runtime: the process's runtime.
        viewer: who asks; the film and its clips belong to the story's owner.
        story_id: the story (NotFound when the viewer may not see it).
        provider .. duration_seconds_per_paragraph: each clip's request, checked as
            ``generateVideo`` checks it (default provider ``local``).
        captions: burn each paragraph's text into its clip's frames.
        transition: ``cut`` (default) or ``crossfade`` between clips.
        webhook_url: the film's status changes are POSTed there (docs/webhooks.md).

    Returns:
        The queued film.

    Raises:
        NotFound: no such story for the viewer.
        BadUserInput: an empty story, a paragraph or setting the provider refuses; nothing
            was written.
        QuotaExceeded: the owner's limits leave no room for the film; nothing was written.
    """
    story = await catalog.get_story(viewer=viewer, story_id=story_id)
    chosen = Transition(transition or Transition.CUT)
    checked = _check_paragraphs(
        runtime,
        list(story.paragraphs or []),
        provider=provider,
        resolution=resolution,
        output_format=output_format,
        duration_seconds=duration_seconds_per_paragraph,
    )
    if webhook_url is not None:
        webhook_url = await check_webhook_url(runtime, webhook_url)
    owner = viewer if story.owner_id == viewer.id else await User.get(id=story.owner_id)
    first = checked[0]
    try:
        async with in_transaction():
            paragraphs = await _locked_paragraphs(story)
            if [c.prompt for c in checked] != [p.strip() for p in paragraphs]:
                raise errors.BadUserInput(
                    "The story changed while the film was being queued; try again.",
                    field="storyId",
                )
            reused = await _reusable_clips(story, checked)
            fresh = [c for i, c in enumerate(checked) if i not in reused]
            quota = quotas.request(owner, runtime.settings, sum(c.duration_seconds for c in fresh))
            film = Video(
                owner_id=owner.id,
                created_by_id=viewer.id,
                kind=VideoKind.FILM,
                prompt=story.title,
                provider=first.provider,
                model=first.model,
                status=S.QUEUED,
                resolution=first.resolution,
                output_format=first.output_format,
                duration_seconds=sum(c.duration_seconds for c in checked),
                project_id=story.project_id,
                story_id=story.id,
                max_retries=runtime.settings.max_retries,
                # The clips ask for the seconds; the film itself is one job.
                requested_seconds=0.0,
                requested_at=quota.at,
                webhook_url=webhook_url,
            )
            actor = actor_of(viewer)
            changes = [
                await lifecycle.record_created(
                    film,
                    actor=actor,
                    message="queued: waiting for its clips",
                    admission=quotas.admission(quota),
                )
            ]
            clip_ids = dict(reused)
            for index, request in enumerate(checked):
                if index in clip_ids:
                    continue
                clip = _new_clip(runtime, owner, viewer, story, index, request, quota.at)
                changes.append(
                    await lifecycle.record_created(
                        clip, actor=actor, paragraph_count=len(paragraphs)
                    )
                )
                clip_ids[index] = clip.id
            await lifecycle.link_clips(
                film.id,
                [
                    lifecycle.FilmPart(
                        position=index,
                        clip_id=clip_ids[index],
                        caption=request.prompt if captions else None,
                        transition=chosen,
                    )
                    for index, request in enumerate(checked)
                ],
            )
    except lifecycle.NotAdmitted as exc:
        raise (await quotas.refusal(quota) or quotas.just_freed()) from exc
    except lifecycle.StoryChanged as exc:
        raise errors.BadUserInput(
            "The story changed while the film was being queued; try again.", field="storyId"
        ) from exc
    logger.info(
        "film queued",
        extra={
            "action": "film.created",
            "video_id": film.id,
            "story_id": story.id,
            "clips": len(checked),
            "reused": len(reused),
        },
    )
    batch = PublishBatch()
    batch.add_video_events([change.event for change in changes])
    batch.add(*messages.wakeup())
    await batch.send(runtime.bus, wait=False)
    return film


def _check_paragraphs(
    runtime: Runtime,
    paragraphs: list[str],
    *,
    provider: str | None,
    resolution: str | None,
    output_format: OutputFormat | str | None,
    duration_seconds: float | None,
) -> list[CheckedRequest]:
    if not paragraphs:
        raise errors.BadUserInput(
            "The story has no paragraphs: add some before rendering it.", field="storyId"
        )
    checked = []
    for index, text in enumerate(paragraphs):
        try:
            checked.append(
                check_request(
                    runtime=runtime,
                    prompt=text,
                    provider=provider,
                    model=None,
                    project_id=None,
                    story_id=None,
                    paragraph_index=None,
                    resolution=resolution,
                    output_format=output_format,
                    duration_seconds=duration_seconds,
                    caption=None,
                    video_style=None,
                    theme=None,
                    tags=None,
                    priority=None,
                    scheduled_at=None,
                    image=False,
                )
            )
        except errors.BadUserInput as exc:
            if exc.field == "prompt":  # the prompt is the paragraph
                raise errors.BadUserInput(
                    f"Paragraph {index}: {exc.message}", field="storyId"
                ) from exc
            if exc.field == "durationSeconds":
                raise errors.BadUserInput(exc.message, field="durationSecondsPerParagraph") from exc
            raise
    return checked


async def _locked_paragraphs(story: Story) -> list[str]:
    """The story's paragraphs as they are now, the row share-locked on PostgreSQL to the
    end of the transaction (updateStory waits; SQLite serialises writers)."""
    p = dialect.Params()
    lock = " FOR SHARE" if p.postgres else ""
    rows = await Story._meta.db.execute_query_dict(
        f"SELECT paragraphs FROM stories WHERE id = {p(story.id)}{lock}", p.values
    )
    if not rows:
        raise errors.NotFound("story")
    value: Any = rows[0]["paragraphs"]
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return [str(text) for text in (value or [])]


async def _reusable_clips(story: Story, checked: list[CheckedRequest]) -> dict[int, int]:
    """Paragraph index → the latest clip that can stand for it: made for that paragraph's
    current text with the same provider, resolution, format and duration, and completed or
    still on its way."""
    request = checked[0]
    rows = (
        await Video.filter(
            owner_id=story.owner_id,
            story_id=story.id,
            kind=VideoKind.CLIP,
            provider=request.provider,
            resolution=request.resolution,
            output_format=request.output_format,
            deleted_at=None,
            status__in=list(_REUSABLE),
        )
        .order_by("-id")
        .values("id", "paragraph_index", "prompt", "requested_seconds")
    )
    texts = [c.prompt for c in checked]
    found: dict[int, int] = {}
    for row in rows:
        index = row["paragraph_index"]
        if index is None or index in found or not 0 <= index < len(texts):
            continue
        if row["prompt"] != texts[index]:
            continue  # made from an older text of the paragraph: stale
        seconds = row["requested_seconds"]
        if seconds is not None and abs(seconds - request.duration_seconds) > _SAME_SECONDS:
            continue
        found[index] = row["id"]
    return found


def _new_clip(
    runtime: Runtime,
    owner: User,
    viewer: User,
    story: Story,
    index: int,
    request: CheckedRequest,
    at: Any,
) -> Video:
    return Video(
        owner_id=owner.id,
        created_by_id=viewer.id,
        kind=VideoKind.CLIP,
        prompt=request.prompt,
        provider=request.provider,
        model=request.model,
        status=S.QUEUED,
        resolution=request.resolution,
        output_format=request.output_format,
        duration_seconds=request.duration_seconds,
        project_id=story.project_id,
        story_id=story.id,
        paragraph_index=index,
        max_retries=runtime.settings.max_retries,
        requested_seconds=request.duration_seconds,
        requested_at=at,
    )


async def film_clip_ids(film_id: int) -> list[int]:
    """A film's clips, in paragraph order."""
    return list(
        await FilmClip.filter(film_id=film_id)
        .order_by("position")
        .values_list("clip_id", flat=True)
    )


async def cancel_film_clips(*, runtime: Runtime, film: Video, actor: str) -> None:
    """After a film's cancel: cancel its clips that are still queued or processing."""
    ids = await film_clip_ids(film.id)
    pending = await Video.filter(id__in=ids, status__in=[S.QUEUED, S.PROCESSING]).values_list(
        "id", flat=True
    )
    for clip_id in pending:
        try:
            await control.request_cancel(clip_id, actor=actor, bus=runtime.bus)
        except (lifecycle.IllegalTransition, lifecycle.StaleAttempt, errors.NotFound):
            pass  # it ended (or went) meanwhile: nothing left to stop


async def retry_film(
    *,
    runtime: Runtime,
    film: Video,
    actor: str,
    admission: lifecycle.Admission | None,
    fields: dict[str, Any],
) -> Video:
    """``retryVideo`` on a film: the film and its failed or canceled clips queued again
    together (the completed clips are kept); the film waits for the retried clips.

    Raises:
        Conflict: such a clip is deleted (restore it, or render the story again); nothing
            changed. NotAdmitted, IllegalTransition: as for any retry.
    """
    ids = await film_clip_ids(film.id)
    ended = await Video.filter(id__in=ids, status__in=[S.FAILED, S.CANCELED]).values(
        "id", "deleted_at", "paragraph_index"
    )
    for row in ended:
        if row["deleted_at"] is not None:
            raise errors.Conflict(
                f"The clip of paragraph {row['paragraph_index']} is deleted; restore it or "
                "render the story again."
            )
    return await control.retry_film(
        film.id,
        [row["id"] for row in ended],
        actor=actor,
        bus=runtime.bus,
        admission=admission,
        fields=fields,
    )


async def story_film(story: Story) -> Video | None:
    """The story's latest completed film (deleted ones left out)."""
    return (await latest_films([(story.id, story.owner_id)])).get(story.id)


async def story_clips(story: Story) -> list[Video]:
    """The story's latest clip of each paragraph, in paragraph order (a paragraph without
    one is left out; deleted clips too)."""
    key = (story.id, story.owner_id, len(story.paragraphs or []))
    return (await latest_clips([key])).get(story.id, [])


async def latest_films(stories: Sequence[tuple[int, int]]) -> dict[int, Video]:
    """Story id → its latest completed film, for (story id, owner id) pairs: one query."""
    owners = dict(stories)
    if not owners:
        return {}
    rows = await Video.filter(
        story_id__in=list(owners),
        kind=VideoKind.FILM,
        status=S.COMPLETED,
        deleted_at=None,
    ).order_by("-completed_at", "-id")
    found: dict[int, Video] = {}
    for video in rows:
        if video.story_id is not None and video.owner_id == owners.get(video.story_id):
            found.setdefault(video.story_id, video)
    return found


async def latest_clips(stories: Sequence[tuple[int, int, int]]) -> dict[int, list[Video]]:
    """Story id → its latest clip of each paragraph in paragraph order, for (story id,
    owner id, paragraph count) triples: one query."""
    shape = {story_id: (owner, count) for story_id, owner, count in stories}
    if not shape:
        return {}
    rows = await Video.filter(
        story_id__in=list(shape), kind=VideoKind.CLIP, deleted_at=None
    ).order_by("-id")
    latest: dict[int, dict[int, Video]] = {story_id: {} for story_id in shape}
    for video in rows:
        owner, count = shape.get(video.story_id or 0, (None, 0))
        index = video.paragraph_index
        if video.owner_id != owner or index is None or not 0 <= index < count:
            continue
        latest[video.story_id].setdefault(index, video)  # type: ignore[index]
    return {story_id: [by[i] for i in sorted(by)] for story_id, by in latest.items()}
