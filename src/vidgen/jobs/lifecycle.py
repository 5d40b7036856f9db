"""The video lifecycle: the ONE place that changes ``Video.status``.

Every change checks the transition, bumps ``version``, stamps ``updated_at`` (and
``completed_at`` on success), writes a :class:`~vidgen.models.VideoStatusEvent` row, and is
published on the event bus only after its transaction commits.

::

    queued ──▶ processing ──▶ completed | failed | canceled
      │  ▲          │
      │  └──────────┘  (retryable error, rescue of an expired lease, graceful release)
      └──▶ canceled
    failed | canceled ──▶ queued  (manual retry)

Writes by a worker are fenced on ``attempt``: a worker whose lease was swept while it was
still alive finds its ``WHERE id = … AND attempt = …`` matching nothing and gets
:class:`StaleAttempt`, so it can never overwrite a newer attempt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from vidgen import errors
from vidgen.events.bus import EventBus, VideoEvent, publish_video_event
from vidgen.models import TERMINAL_STATUSES, Video, VideoStatus, VideoStatusEvent

S = VideoStatus

TRANSITIONS: dict[VideoStatus, frozenset[VideoStatus]] = {
    S.QUEUED: frozenset({S.PROCESSING, S.CANCELED}),
    S.PROCESSING: frozenset({S.COMPLETED, S.FAILED, S.CANCELED, S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELED: frozenset({S.QUEUED}),
    S.COMPLETED: frozenset(),
}


class IllegalTransition(errors.Conflict):
    """The video is not in a state that allows this change."""


class StaleAttempt(errors.Conflict):
    """A fenced write by a worker whose attempt is no longer the current one."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def can_transition(current: VideoStatus | str, to: VideoStatus | str) -> bool:
    return VideoStatus(to) in TRANSITIONS[VideoStatus(current)]


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of one transition, with the event to publish after commit."""

    video_id: int
    from_status: VideoStatus
    to_status: VideoStatus
    version: int
    event: VideoEvent


def event_for(video: Video, event_id: int | None) -> VideoEvent:
    return VideoEvent(
        video_id=video.id,
        owner_id=video.owner_id,
        version=video.version,
        status=str(video.status),
        progress=float(video.progress or 0.0),
        event_id=event_id,
        project_id=video.project_id,
        story_id=video.story_id,
    )


async def publish(bus: EventBus | None, events: Iterable[VideoEvent]) -> None:
    """Publish committed changes (call only after the transaction is over)."""
    if bus is None:
        return
    for event in events:
        await publish_video_event(bus, event)


async def record_created(video: Video, *, actor: str | None, message: str | None = None) -> Change:
    """Write the first history row of a freshly inserted ``queued`` video.

    Call inside the transaction that inserted the video; publish ``change.event`` after it.
    """
    row = await VideoStatusEvent.create(
        video_id=video.id,
        owner_id=video.owner_id,
        from_status=None,
        to_status=str(video.status),
        version=video.version,
        message=message or "queued",
        actor=actor,
    )
    status = S(video.status)
    return Change(video.id, status, status, video.version, event_for(video, row.id))


async def transition(
    video_id: int,
    to: VideoStatus,
    *,
    actor: str | None,
    message: str | None = None,
    expect: Iterable[VideoStatus] | None = None,
    attempt: int | None = None,
    fields: dict[str, Any] | None = None,
    bus: EventBus | None = None,
) -> tuple[Video, Change]:
    """Move one video to ``to``.

    Args:
        video_id: the video.
        to: the new status.
        actor: who did it (``user:12``, ``worker:host:pid:task``, ``sweeper``...).
        message: a human note kept in the history (error text, "canceled by user").
        expect: the statuses the caller believes the video is in; anything else is
            :class:`IllegalTransition` even when the lifecycle would allow it.
        attempt: fence: the write applies only while ``Video.attempt`` equals this.
        fields: other columns to set in the same UPDATE (error_message, scheduled_at...).
        bus: when given, the change is published after this function's own commit. Pass
            None inside a caller's transaction and publish ``change.event`` after it.

    Raises:
        NotFound, IllegalTransition, StaleAttempt.
    """
    to = VideoStatus(to)
    async with in_transaction():
        query = Video.filter(id=video_id)
        if _supports_row_locks():
            query = query.select_for_update()
        video = await query.first()
        if video is None:
            raise errors.NotFound("video")
        current = VideoStatus(video.status)
        if attempt is not None and video.attempt != attempt:
            raise StaleAttempt(
                f"video {video_id}: attempt {attempt} is stale (now {video.attempt})"
            )
        allowed = set(expect) if expect is not None else None
        if not can_transition(current, to) or (allowed is not None and current not in allowed):
            raise IllegalTransition(
                f"A {current.value} video cannot become {to.value}.", status=current.value
            )
        updates: dict[str, Any] = dict(fields or {})
        stamp = now()
        updates.update(status=to, version=F("version") + 1, updated_at=stamp)
        if to is S.COMPLETED:
            updates.setdefault("completed_at", stamp)
            updates.setdefault("progress", 1.0)
        if to not in TERMINAL_STATUSES and to is not S.PROCESSING:
            updates.setdefault("lease_expires_at", None)
        guard = Video.filter(id=video_id, status=current)
        if attempt is not None:
            guard = guard.filter(attempt=attempt)
        rows = await guard.update(**updates)
        if rows != 1:  # only possible without row locks (SQLite serialises writers anyway)
            raise StaleAttempt(f"video {video_id} changed concurrently")
        await video.refresh_from_db()
        row = await VideoStatusEvent.create(
            video_id=video.id,
            owner_id=video.owner_id,
            from_status=current.value,
            to_status=to.value,
            version=video.version,
            message=message,
            actor=actor,
        )
    change = Change(video.id, current, to, video.version, event_for(video, row.id))
    await publish(bus, [change.event])
    return video, change


def _supports_row_locks() -> bool:
    from vidgen import db

    return db.dialect() == "postgres"
