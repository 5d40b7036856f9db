"""Changes of an existing video asked by its owner: edit, cancel, retry, delete, restore.

Status changes are the job engine's (:mod:`vidgen.jobs.control`, through the lifecycle);
edits, deletes and restores are the lifecycle's own operations (:mod:`vidgen.jobs.lifecycle`).
This module checks the viewer may touch the video first; another user's video is NotFound.

Deleting is soft (``deleted_at``). Deleting a queued or processing video also cancels its
job: a video the user threw away must not keep running (and costing) on a provider.
Restoring clears ``deleted_at`` only; a video canceled by its deletion stays canceled and
can be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tortoise.transactions import in_transaction

from vidgen import errors
from vidgen.jobs import control, lifecycle
from vidgen.models import User, Video, VideoKind, VideoStatus
from vidgen.services import KEEP, Keep, catalog, films, quotas
from vidgen.services.videos.access import actor_of, get_video
from vidgen.services.videos.request_checks import MAX_CAPTION, MAX_STYLE, optional_text

if TYPE_CHECKING:
    from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)


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
        changes["caption"] = optional_text(caption, field="caption", limit=MAX_CAPTION)
    if video_style is not KEEP:
        changes["video_style"] = optional_text(video_style, field="videoStyle", limit=MAX_STYLE)
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

    async with in_transaction():
        # Every change locks the row first, a tags-only one too: a concurrent change of
        # this video waits here until this one commits, so its tag list then replaces this
        # one's whole (two lists were merged, past the limit too). The values this change
        # replaces are read under the lock (lifecycle.edit keeps them in its event-log row,
        # so a replay can show the video as it was before).
        locked = await lifecycle.locked(video.id).first()
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
        if tag_names is not None:
            rows = await catalog.ensure_tags(
                owner_id=video.owner_id, names=[display for display, _ in tag_names]
            )
            await video.tags.clear()
            if rows:
                await video.tags.add(*rows)
        event_id = await lifecycle.edit(locked, changes, actor=actor_of(viewer))
    await video.refresh_from_db()
    await lifecycle.publish(runtime.bus, [lifecycle.event_for(video, event_id)])
    return video


async def cancel_video(*, runtime: Runtime, viewer: User, video_id: int) -> Video:
    """Cancel a queued video now, or ask the worker of a processing one to stop.

    Raises:
        NotFound: not the viewer's. Conflict: already completed, failed or canceled.
    """
    video = await get_video(viewer=viewer, video_id=video_id)
    canceled = await _cancel_job(runtime=runtime, video=video, actor=actor_of(viewer))
    if video.kind == VideoKind.FILM:
        # Its clips still to come are of no use now (docs/films.md).
        await films.cancel_film_clips(runtime=runtime, film=video, actor=actor_of(viewer))
    elif video.story_id is not None:
        # A film waiting for this clip may be due now (it fails, naming the clip).
        await control.wake_workers(runtime.bus)
    return canceled


async def _cancel_job(*, runtime: Runtime, video: Video, actor: str) -> Video:
    """Cancel the job; a queued video that still holds a live prediction (released at a
    worker's shutdown, or rescued) has no worker to stop it, so cancel it upstream here.

    Decided on the row the cancel wrote, not on ``video`` as read before: ``canceled`` at
    once means it was queued then (a processing job is only flagged, and its worker cancels
    upstream), even when it was processing at the earlier read and released meanwhile.
    """
    result = await control.request_cancel(video.id, actor=actor, bus=runtime.bus)
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
    """Queue a failed or canceled video again: a new request of its seconds, within its
    owner's quotas (checked in the retry's transaction).

    Raises:
        NotFound: not the viewer's. Conflict: not failed or canceled, or deleted.
        QuotaExceeded: the owner's limits leave no room for it; nothing changed.
    """
    video = await get_video(viewer=viewer, video_id=video_id)
    if video.deleted_at is not None:
        raise errors.Conflict("This video is deleted; restore it first.")
    owner = viewer if video.owner_id == viewer.id else await User.get(id=video.owner_id)
    film = video.kind == VideoKind.FILM
    # A film asks for one place and no seconds: its retried clips carry theirs.
    seconds = 0.0 if film else video.requested_seconds or video.duration_seconds or 0.0
    quota = quotas.request(owner, runtime.settings, seconds)
    fields = {"requested_at": quota.at, "requested_seconds": seconds}
    try:
        if film:
            # With its failed or canceled clips, in one transaction (docs/films.md).
            return await films.retry_film(
                runtime=runtime,
                film=video,
                actor=actor_of(viewer),
                admission=quotas.admission(quota),
                fields=fields,
            )
        return await control.retry(
            video.id,
            actor=actor_of(viewer),
            bus=runtime.bus,
            admission=quotas.admission(quota),
            fields=fields,
        )
    except lifecycle.NotAdmitted as exc:
        raise (await quotas.refusal(quota) or quotas.just_freed()) from exc


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
    event_id = await lifecycle.soft_delete(video.id, actor=actor_of(viewer))
    await video.refresh_from_db()
    if event_id is not None:
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
    event_id = await lifecycle.restore(video.id, actor=actor_of(viewer))  # None: restored meanwhile
    await video.refresh_from_db()
    if event_id is not None:
        await lifecycle.publish(runtime.bus, [lifecycle.event_for(video, event_id)])
    return video
