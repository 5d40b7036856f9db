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
    where: dict[str, Any] | None = None,
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
        where: further Tortoise filters the row must still match (e.g. the sweeper's
            ``lease_expires_at__lt``); a row that no longer matches is :class:`StaleAttempt`.

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
        if where:
            guard = guard.filter(**where)
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


async def touch(
    video_id: int,
    *,
    fields: dict[str, Any],
    attempt: int | None = None,
    status: VideoStatus | None = None,
    bus: EventBus | None = None,
) -> VideoEvent | None:
    """Change non-status columns of one video, bump ``version`` and publish (no history row).

    Used for progress, the stored ``prediction_id`` and the cancel flag: visible changes that
    are not status changes.

    Args:
        video_id: the video.
        fields: the columns to set (never ``status``).
        attempt: fence: apply only while ``Video.attempt`` equals this, else StaleAttempt.
        status: apply only while the video has this status; None when it does not.
        bus: publish the new version after the write (pass None inside a transaction).

    Returns:
        The published event, or None when ``status`` no longer matched.

    Raises:
        StaleAttempt: the fence did not match.
    """
    if "status" in fields:
        raise ValueError("touch() never changes status: use transition()")
    # One UPDATE … RETURNING (no re-read): this runs on every progress report.
    conn = Video._meta.db
    postgres = conn.capabilities.dialect == "postgres"
    params: list[Any] = []

    def p(value: Any) -> str:
        params.append(value)
        return f"${len(params)}" if postgres else "?"

    columns = Video._meta.fields_db_projection
    sets = [f"{columns[name]} = {p(value)}" for name, value in fields.items()]
    sets += ["version = version + 1", f"updated_at = {p(now())}"]
    where = [f"id = {p(video_id)}"]
    if attempt is not None:
        where.append(f"attempt = {p(attempt)}")
    if status is not None:
        where.append(f"status = {p(VideoStatus(status).value)}")
    rows = await conn.execute_query_dict(
        f"UPDATE videos SET {', '.join(sets)} WHERE {' AND '.join(where)}"
        " RETURNING id, owner_id, version, status, progress, project_id, story_id",
        params,
    )
    if not rows:
        if attempt is not None and not await Video.filter(id=video_id, attempt=attempt).exists():
            raise StaleAttempt(f"video {video_id}: attempt {attempt} is stale")
        return None
    row = rows[0]
    event = VideoEvent(
        video_id=row["id"],
        owner_id=row["owner_id"],
        version=row["version"],
        status=str(row["status"]),
        progress=float(row["progress"] or 0.0),
        event_id=None,
        project_id=row["project_id"],
        story_id=row["story_id"],
    )
    await publish(bus, [event])
    return event


async def report_progress(
    video_id: int, progress: float, *, attempt: int, bus: EventBus | None
) -> VideoEvent | None:
    """Record a running job's progress (0..1), fenced on ``attempt``; publishes an event
    without an ``event_id`` (progress is not kept in the status history).

    Raises:
        StaleAttempt: the job belongs to a newer attempt now.
    """
    progress = min(1.0, max(0.0, float(progress)))
    return await touch(
        video_id, fields={"progress": progress}, attempt=attempt, status=S.PROCESSING, bus=bus
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job as it was claimed: enough to run it and to fence every later write."""

    video_id: int
    attempt: int
    provider: str
    prediction_id: str | None
    event: VideoEvent


# The claim transition (queued → processing) applied to the ids chosen by the queue's pick
# query, with its history and attempt rows, in ONE statement on PostgreSQL.
_PG_CLAIM = """
WITH picked AS ({pick}),
claimed AS (
    UPDATE videos AS v
    SET status = 'processing', attempt = v.attempt + 1, processed_by = ${w},
        lease_expires_at = ${lease}, version = v.version + 1, updated_at = ${now}
    FROM picked
    WHERE v.id = picked.id AND v.status = 'queued'
    RETURNING v.id, v.owner_id, v.project_id, v.story_id, v.provider, v.prediction_id,
              v.attempt, v.version, v.progress, v.priority,
              COALESCE(v.scheduled_at, v.created_at) AS due
),
history AS (
    INSERT INTO video_status_events
        (video_id, owner_id, from_status, to_status, version, at, message, actor)
    SELECT id, owner_id, 'queued', 'processing', version, ${now}, 'claimed', ${w} FROM claimed
    RETURNING id, video_id
),
attempts AS (
    INSERT INTO video_attempts (video_id, attempt, worker, provider, prediction_id,
                                started_at, outcome)
    SELECT id, attempt, ${w}, provider, prediction_id, ${now}, 'running' FROM claimed
)
SELECT c.*, h.id AS event_id FROM claimed AS c JOIN history AS h ON h.video_id = c.id
"""

_SQLITE_CLAIM = """
UPDATE videos
SET status = 'processing', attempt = attempt + 1, processed_by = ?, lease_expires_at = ?,
    version = version + 1, updated_at = ?
WHERE id IN ({pick}) AND status = 'queued'
RETURNING id, owner_id, project_id, story_id, provider, prediction_id, attempt, version,
          progress, priority, COALESCE(scheduled_at, created_at) AS due
"""


async def apply_claim(
    conn: Any,
    *,
    pick_sql: str,
    pick_params: list[Any],
    worker_id: str,
    lease_until: dt.datetime,
    dialect: str,
) -> list[Claimed]:
    """Move the videos chosen by ``pick_sql`` from queued to processing (the claim).

    Bumps ``attempt`` (the fence) and ``version``, sets ``processed_by`` and the lease, and
    writes one status-history row and one RUNNING :class:`~vidgen.models.VideoAttempt` per
    claimed video. The queue module owns the pick (which rows, in which order, how locked);
    this owns the transition. Publish the returned events after the commit.

    Args:
        conn: the connection, inside the caller's transaction on SQLite.
        pick_sql: ``SELECT id FROM videos ...`` (``$1..$k`` on PostgreSQL, ``?`` on SQLite).
        pick_params: its parameters.
        worker_id: written to ``processed_by`` and the attempt rows.
        lease_until: the first lease deadline.
        dialect: ``postgres`` or ``sqlite``.
    """
    stamp = now()
    if dialect == "postgres":
        k = len(pick_params)
        sql = _PG_CLAIM.format(pick=pick_sql, w=k + 1, lease=k + 2, now=k + 3)
        rows = await conn.execute_query_dict(sql, [*pick_params, worker_id, lease_until, stamp])
        claimed = [(dict(r), r["event_id"]) for r in rows]
    else:
        sql = _SQLITE_CLAIM.format(pick=pick_sql)
        rows = await conn.execute_query_dict(sql, [worker_id, lease_until, stamp, *pick_params])
        claimed = []
        for r in rows:
            history = await conn.execute_query_dict(
                "INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
                " version, at, message, actor) VALUES (?, ?, 'queued', 'processing', ?, ?,"
                " 'claimed', ?) RETURNING id",
                [r["id"], r["owner_id"], r["version"], stamp, worker_id],
            )
            await conn.execute_query(
                "INSERT INTO video_attempts (video_id, attempt, worker, provider, prediction_id,"
                " started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, 'running')",
                [r["id"], r["attempt"], worker_id, r["provider"], r["prediction_id"], stamp],
            )
            claimed.append((dict(r), history[0]["id"]))
    # RETURNING does not keep the pick order: restore it (priority, due time, age).
    claimed.sort(key=lambda pair: (-pair[0]["priority"], pair[0]["due"], pair[0]["id"]))
    result = []
    for r, event_id in claimed:
        event = VideoEvent(
            video_id=r["id"],
            owner_id=r["owner_id"],
            version=r["version"],
            status=S.PROCESSING.value,
            progress=float(r["progress"] or 0.0),
            event_id=event_id,
            project_id=r["project_id"],
            story_id=r["story_id"],
        )
        result.append(Claimed(r["id"], r["attempt"], r["provider"], r["prediction_id"], event))
    return result
