"""Status changes outside the worker's hot path (the API, the sweeper, releases), and the
visible changes of a running job that keep its status (progress, the cancel flag)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from vidgen import dialect, errors
from vidgen.events.bus import EventBus
from vidgen.events.messages import VideoEvent
from vidgen.jobs.lifecycle import outbox
from vidgen.jobs.lifecycle.publishing import (
    EVENT_COLUMNS,
    STATE_COLUMNS,
    event_for,
    event_from_row,
    publish,
)
from vidgen.jobs.lifecycle.rules import (
    Admission,
    Change,
    IllegalTransition,
    NotAdmitted,
    StaleAttempt,
    can_transition,
    check_fields,
    now,
    still_processing,
)
from vidgen.models import (
    TERMINAL_STATUSES,
    AttemptOutcome,
    Video,
    VideoAttempt,
    VideoStatus,
    VideoStatusEvent,
)

S = VideoStatus


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How a job's attempt ended: its :class:`~vidgen.models.VideoAttempt` row is closed
    with this in the transition's transaction."""

    outcome: AttemptOutcome
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None


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
    fields_if: Mapping[VideoStatus, Mapping[str, Any]] | None = None,
    ends_attempt: AttemptEnd | None = None,
    admission: Admission | None = None,
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
        fields_if: more columns to set only when the video is (on the locked row) in the
            given status.
        ends_attempt: close the attempt row of ``attempt`` (which it needs) with this.
        admission: the change happens only while this holds, checked in the transaction
            after the row is locked (a retry's quota: :mod:`vidgen.services.quotas`).

    Raises:
        NotFound, IllegalTransition, StaleAttempt, NotAdmitted.
    """
    to = VideoStatus(to)
    if ends_attempt is not None and attempt is None:
        raise ValueError("ends_attempt needs the attempt")
    async with in_transaction():
        query = Video.filter(id=video_id)
        if dialect.is_postgres():  # SQLite has no row locks (and serialises writers anyway)
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
        if admission is not None and not await _admits(admission):
            raise NotAdmitted()
        updates: dict[str, Any] = dict(fields or {})
        updates.update((fields_if or {}).get(current, {}))
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
        if video.webhook_url is not None:
            await outbox.record(Video._meta.db, video.id, row.id, row.at)
        if ends_attempt is not None:
            assert attempt is not None
            await _close_attempt(video_id, attempt, ends_attempt)
    change = Change(video.id, current, to, video.version, event_for(video, row.id))
    await publish(bus, [change.event])
    return video, change


async def _admits(admission: Admission) -> bool:
    p = dialect.Params()
    condition = admission.sql.format(*(p(value) for value in admission.params))
    rows = await Video._meta.db.execute_query_dict(f"SELECT 1 AS ok WHERE {condition}", p.values)
    return bool(rows)


async def _close_attempt(video_id: int, attempt: int, end: AttemptEnd) -> None:
    """Close one VideoAttempt row (inside the transaction of the matching transition).

    On PostgreSQL ``finished_at`` is the database's clock, as the claim's ``started_at`` is
    (see :mod:`vidgen.jobs.lifecycle.claim`), so attempts of one job never appear to overlap.
    """
    if dialect.is_postgres():
        await VideoAttempt._meta.db.execute_query(
            "UPDATE video_attempts SET outcome = $1, finished_at = clock_timestamp(),"
            " error_code = $2, error_message = $3, retryable = $4"
            " WHERE video_id = $5 AND attempt = $6",
            [
                end.outcome.value,
                end.error_code,
                end.error_message,
                end.retryable,
                video_id,
                attempt,
            ],
        )
        return
    await VideoAttempt.filter(video_id=video_id, attempt=attempt).update(
        outcome=end.outcome,
        finished_at=now(),
        error_code=end.error_code,
        error_message=end.error_message,
        retryable=end.retryable,
    )


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
    check_fields(fields)  # status: transition(); version and attempt are bumped, not set
    # One UPDATE … RETURNING (no re-read): this runs on every progress report.
    p = dialect.Params()
    columns = Video._meta.fields_db_projection
    sets = [f"{columns[name]} = {p(value)}" for name, value in fields.items()]
    sets += ["version = version + 1", f"updated_at = {p(now())}"]
    where = [f"id = {p(video_id)}"]
    if attempt is not None:
        where.append(f"attempt = {p(attempt)}")
    if status is not None:
        where.append(f"status = {p(VideoStatus(status))}")
    rows = await Video._meta.db.execute_query_dict(
        f"UPDATE videos SET {', '.join(sets)} WHERE {' AND '.join(where)}"
        f" RETURNING {EVENT_COLUMNS}, {STATE_COLUMNS}",
        p.values,
    )
    if not rows:
        if attempt is not None and not await Video.filter(id=video_id, attempt=attempt).exists():
            raise StaleAttempt(f"video {video_id}: attempt {attempt} is stale")
        return None
    event = event_from_row(rows[0], None)
    await publish(bus, [event])
    return event


async def report_progress(
    video_id: int,
    progress: float | None,
    *,
    attempt: int,
    bus: EventBus | None,
    message: str | None = None,
) -> VideoEvent | None:
    """Record a running job's progress (0..1) and/or the provider's status message (queue
    position, last log line), fenced on ``attempt``; publishes an event without an
    ``event_id`` (neither is kept in the status history).

    Raises:
        StaleAttempt: the job belongs to a newer attempt now.
    """
    fields: dict[str, Any] = {}
    if progress is not None:
        fields["progress"] = min(1.0, max(0.0, float(progress)))
    if message is not None:
        fields["status_message"] = message[:500]
    if not fields:
        return None
    return await touch(video_id, fields=fields, attempt=attempt, status=S.PROCESSING, bus=bus)


async def report_progress_many(
    reports: Sequence[tuple[int, int, float | None, str | None]], *, bus: EventBus | None
) -> list[VideoEvent]:
    """Record many running jobs' progress and/or status messages in ONE statement, each
    fenced on its attempt (``(video_id, attempt, progress, message)``; None keeps a value).

    A report whose job is no longer that attempt, or no longer processing, changes nothing
    and is left out of the result (its worker's heartbeat finds the loss). Publishes the
    changes' events (no ``event_id``: not kept in the status history).
    """
    if not reports:
        return []
    stamp = now()
    ids = [r[0] for r in reports]
    attempts = [r[1] for r in reports]
    values = [None if r[2] is None else min(1.0, max(0.0, float(r[2]))) for r in reports]
    messages = [None if r[3] is None else r[3][:500] for r in reports]
    sets = (
        "progress = COALESCE(j.jprogress, {v}progress),"
        " status_message = COALESCE(j.jmessage, {v}status_message),"
        " version = {v}version + 1, updated_at = {stamp}"
    )
    if dialect.is_postgres():
        # The state columns too: each event carries its own version's values (docs/live.md).
        returning = ", ".join(
            f"v.{c.strip()}" for c in f"{EVENT_COLUMNS}, {STATE_COLUMNS}".split(",")
        )
        # The rows are locked in id order first, as by every statement that changes many
        # job rows at once (the heartbeat, the group writer): no deadlocks between them.
        rows = await Video._meta.db.execute_query_dict(
            "WITH j AS (SELECT * FROM unnest($2::int[], $3::int[], $4::float8[], $5::text[])"
            " AS j(jid, jattempt, jprogress, jmessage)),"
            " l AS (SELECT q.id FROM videos AS q JOIN j ON q.id = j.jid"
            f" WHERE q.attempt = j.jattempt AND {still_processing('q')} ORDER BY q.id"
            " FOR UPDATE OF q)"
            f" UPDATE videos AS v SET {sets.format(v='v.', stamp='$1')} FROM j, l"
            " WHERE v.id = j.jid AND l.id = v.id AND v.attempt = j.jattempt"
            f" AND {still_processing('v')}"
            f" RETURNING {returning}",
            [stamp, ids, attempts, values, messages],
        )
    else:
        marks = ", ".join("(?, ?, ?, ?)" for _ in reports)
        params: list[Any] = []
        for row in zip(ids, attempts, values, messages, strict=True):
            params += row
        rows = await Video._meta.db.execute_query_dict(
            f"WITH j(jid, jattempt, jprogress, jmessage) AS (VALUES {marks})"
            f" UPDATE videos SET {sets.format(v='videos.', stamp='?')} FROM j"
            " WHERE videos.id = j.jid AND videos.attempt = j.jattempt"
            " AND videos.status = 'processing'"
            f" RETURNING {EVENT_COLUMNS}, {STATE_COLUMNS}",
            [*params, stamp],
        )
    events = [event_from_row(row, None) for row in rows]
    await publish(bus, events)
    return events
