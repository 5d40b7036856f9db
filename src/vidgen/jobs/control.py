"""What the API asks of the job engine: cancel a job, retry one, wake the workers.

Every status change goes through :mod:`vidgen.jobs.lifecycle`. Owner scoping is the
caller's job (the videos service checks the video belongs to the user before calling in
here). Provider webhooks are routed by :mod:`vidgen.jobs.webhooks`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tortoise.transactions import in_transaction

from vidgen import errors
from vidgen.events import channels, messages
from vidgen.events.bus import EventBus
from vidgen.jobs import lifecycle
from vidgen.models import Video, VideoStatus

logger = logging.getLogger(__name__)

S = VideoStatus


async def request_cancel(video_id: int, *, actor: str | None, bus: EventBus | None) -> Video:
    """Cancel a video's job.

    A queued job is canceled at once. A processing job is flagged (``cancel_requested``) and
    its worker is nudged on the job channel; the worker cancels the provider's prediction and
    records ``canceled`` (within one heartbeat even when the nudge is lost). Asking again
    while the flag is set is harmless.

    Args:
        video_id: the video.
        actor: who asks (``user:12``), kept in the status history.
        bus: the event bus (the change is published after commit).

    Returns:
        The video after the request (``canceled``, or ``processing`` with the flag set).

    Raises:
        NotFound: no such video.
        IllegalTransition: the video is already completed, failed or canceled (CONFLICT).
    """
    # A claim can race a cancel: if the queued job is claimed in between, flag it instead.
    for _ in range(3):
        video = await Video.get_or_none(id=video_id)
        if video is None:
            raise errors.NotFound("video")
        status = S(video.status)
        if status is S.QUEUED:
            try:
                video, _change = await lifecycle.transition(
                    video_id,
                    S.CANCELED,
                    actor=actor,
                    message="canceled",
                    expect=[S.QUEUED],
                    fields={"scheduled_at": None},
                    bus=bus,
                )
                return video
            except (lifecycle.IllegalTransition, lifecycle.StaleAttempt):
                continue
        if status is S.PROCESSING:
            event = await lifecycle.touch(
                video_id, fields={"cancel_requested": True}, status=S.PROCESSING, bus=bus
            )
            if event is None:
                continue
            if bus is not None:
                await bus.publish(channels.job_channel(video_id), {"type": channels.CANCEL})
            logger.info(
                "cancel requested", extra={"action": "job.cancel_requested", "video_id": video_id}
            )
            return await Video.get(id=video_id)
        raise lifecycle.IllegalTransition(
            f"A {status.value} video cannot be canceled.", status=status.value
        )
    raise lifecycle.StaleAttempt(f"video {video_id} kept changing; try again")


async def retry(
    video_id: int,
    *,
    actor: str | None,
    bus: EventBus | None,
    admission: lifecycle.Admission | None = None,
    fields: dict[str, Any] | None = None,
) -> Video:
    """Re-queue a failed or canceled video with a fresh retry budget.

    Clears the error, the schedule, the cancel flag and the retry/rescue counters, then
    wakes the workers. A failed video keeps a prediction id it still has (the job failed
    for want of reaching the provider, or on a rejected key: the prediction is live), so the
    retry resumes it and pays nothing; a canceled one drops it (that prediction was canceled
    upstream) and submits anew. Failures that make the prediction useless (it failed, or
    its output did) already dropped the id. ``admission`` (a quota) must hold for the
    retry to happen; ``fields`` are more columns to set with it.

    Raises:
        NotFound: no such video.
        IllegalTransition: the video is queued, processing or completed (CONFLICT).
        Conflict: the video is deleted (checked on the locked row, so a concurrent
            deleteVideo either sees the job queued and cancels it, or makes this refuse).
        NotAdmitted: ``admission`` refused it; nothing changed.
    """
    try:
        video, _change = await _requeue(
            video_id, actor, "retry requested", fields, bus=bus, admission=admission
        )
    except lifecycle.StaleAttempt as exc:
        raise errors.Conflict("This video is deleted; restore it first.") from exc
    await wake_workers(bus)
    return video


async def retry_film(
    film_id: int,
    clip_ids: Sequence[int],
    *,
    actor: str | None,
    bus: EventBus | None,
    admission: lifecycle.Admission | None = None,
    fields: dict[str, Any] | None = None,
) -> Video:
    """Re-queue a failed or canceled film with its failed or canceled clips (``clip_ids``),
    in ONE transaction (docs/films.md): the queue sees the film only with those clips queued
    again, so it waits for them; and the film's ``admission`` is checked before its clips
    count as active jobs again.

    Raises:
        NotFound, IllegalTransition (the film or a clip is not failed or canceled), Conflict
        (one of them is deleted), NotAdmitted: nothing changed.
    """
    changes = []
    try:
        async with in_transaction():
            video, change = await _requeue(
                film_id, actor, "retry requested", fields, admission=admission
            )
            changes.append(change)
            for clip_id in clip_ids:
                _, clip_change = await _requeue(
                    clip_id,
                    actor,
                    "retry requested (its film was retried)",
                    {"requested_at": lifecycle.now()},
                )
                changes.append(clip_change)
    except lifecycle.StaleAttempt as exc:
        raise errors.Conflict(
            "This video or one of its clips is deleted; restore it first."
        ) from exc
    await lifecycle.publish(bus, [change.event for change in changes])
    await wake_workers(bus)
    return video


# What retryVideo resets: a fresh budget, no error, due now.
_RETRY_FIELDS: dict[str, Any] = {
    "retry_count": 0,
    "rescue_count": 0,
    "error_message": None,
    "scheduled_at": None,
    "cancel_requested": False,
    "progress": 0.0,
    "processed_by": None,
    "completed_at": None,
}


async def _requeue(
    video_id: int,
    actor: str | None,
    message: str,
    fields: dict[str, Any] | None,
    *,
    bus: EventBus | None = None,
    admission: lifecycle.Admission | None = None,
) -> tuple[Video, lifecycle.Change]:
    """The retry transition of one video: failed or canceled, not deleted, back to queued
    with :data:`_RETRY_FIELDS` and ``fields`` (a canceled one also drops its prediction)."""
    return await lifecycle.transition(
        video_id,
        S.QUEUED,
        actor=actor,
        message=message,
        expect=[S.FAILED, S.CANCELED],
        where={"deleted_at__isnull": True},
        fields={**_RETRY_FIELDS, **(fields or {})},
        fields_if={S.CANCELED: {"prediction_id": None}},
        bus=bus,
        admission=admission,
    )


async def wake_workers(bus: EventBus | None) -> None:
    """Tell idle workers that a job became due (call after the inserting commit)."""
    if bus is not None:
        await bus.publish(*messages.wakeup())
