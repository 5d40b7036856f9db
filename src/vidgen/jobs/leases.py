"""Leases: a claimed job is its worker's only while the worker keeps extending its lease.

- :func:`extend_worker_leases` is the heartbeat: ONE statement extends the leases of every
  job a worker holds (by its worker id, whatever their number) and reports lost ones and
  cancel requests. :func:`extend_leases` does the same for a list of jobs.
- :func:`sweep` returns expired leases to ``queued`` (a rescue, counting the attempt) or to
  ``failed`` when the retries or rescues are spent (or ``canceled`` when a cancel was asked).
  Every worker runs it (:mod:`vidgen.jobs.upkeep`); concurrent sweepers are safe because
  each change is fenced.
- :func:`release` hands a job back on graceful shutdown (no retry counted).

Times are the application's UTC clock, the same clock that writes ``scheduled_at``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from vidgen import dialect
from vidgen.events.bus import EventBus
from vidgen.events.messages import VideoEvent
from vidgen.jobs import lifecycle
from vidgen.jobs.lifecycle import now
from vidgen.models import AttemptOutcome, Video, VideoStatus

logger = logging.getLogger(__name__)

S = VideoStatus


SWEEP_BATCH = 100


# A release reads the cancel flag, then writes fenced on it; the flag changes once at most.
RELEASE_TRIES = 3


LEASE_EXPIRED = "lease_expired"


@dataclass
class LeaseReport:
    """The heartbeat's findings: jobs this worker no longer owns, and cancel requests."""

    lost: set[int] = field(default_factory=set)
    cancel_requested: set[int] = field(default_factory=set)
    # Processing under this worker's id but not among its jobs (a claim whose reply was lost).
    unknown: set[int] = field(default_factory=set)


async def extend_worker_leases(
    worker_id: str, jobs: Mapping[int, int], *, lease_seconds: float
) -> LeaseReport:
    """The heartbeat: extend the lease of every job processing under ``worker_id`` in ONE
    statement, however many there are (``idx_videos_worker`` finds them; the lease is in no
    index, so on PostgreSQL each row's new version can be a HOT update).

    ``jobs`` (video id → attempt) are the jobs the worker runs. One of them whose row is no
    longer this attempt under this worker (swept, released, canceled, finished elsewhere) is
    reported lost: its worker must stop touching it. The fence is the worker id and the
    attempt together: a job swept and claimed again by the same worker has a new attempt.
    """
    report = LeaseReport()
    if not jobs:
        return report
    p = dialect.Params()
    lease_until = now() + dt.timedelta(seconds=lease_seconds)
    if p.postgres:
        # Rows locked in id order, as every statement that changes many job rows at once
        # does (progress, prediction ids, the group writer's batches): no deadlocks.
        sql = (
            "WITH l AS (SELECT id FROM videos"
            f" WHERE processed_by = {p(worker_id)} AND status = 'processing'"
            " ORDER BY id FOR UPDATE)"
            f" UPDATE videos AS v SET lease_expires_at = {p(lease_until)} FROM l"
            " WHERE v.id = l.id AND v.status = 'processing'"
            " RETURNING v.id, v.attempt, v.cancel_requested"
        )
    else:
        sql = (
            f"UPDATE videos SET lease_expires_at = {p(lease_until)}"
            f" WHERE processed_by = {p(worker_id)} AND status = 'processing'"
            " RETURNING id, attempt, cancel_requested"
        )
    rows = await Video._meta.db.execute_query_dict(sql, p.values)
    alive: set[int] = set()
    for row in rows:
        if jobs.get(row["id"]) == row["attempt"]:
            alive.add(row["id"])
            if row["cancel_requested"]:
                report.cancel_requested.add(row["id"])
        else:
            report.unknown.add(row["id"])
    report.lost = set(jobs) - alive
    return report


async def extend_leases(jobs: Mapping[int, int], *, lease_seconds: float) -> LeaseReport:
    """Extend the leases of running jobs (video id → attempt), fenced on the attempt.

    A job whose row no longer matches (swept, released, canceled, finished elsewhere) is
    reported as lost: its worker must stop touching it.
    """
    report = LeaseReport()
    if not jobs:
        return report
    lease_until = now() + dt.timedelta(seconds=lease_seconds)
    ids, attempts = list(jobs), [jobs[i] for i in jobs]
    async with in_transaction() as conn:
        if dialect.is_postgres():
            rows = await conn.execute_query_dict(
                "UPDATE videos AS v SET lease_expires_at = $1"
                " FROM unnest($2::int[], $3::int[]) AS j(id, attempt)"
                " WHERE v.id = j.id AND v.attempt = j.attempt AND v.status = 'processing'"
                " RETURNING v.id, v.cancel_requested",
                [lease_until, ids, attempts],
            )
        else:
            rows = []
            for video_id, attempt in jobs.items():
                rows += await conn.execute_query_dict(
                    "UPDATE videos SET lease_expires_at = ? WHERE id = ? AND attempt = ?"
                    " AND status = 'processing' RETURNING id, cancel_requested",
                    [lease_until, video_id, attempt],
                )
    alive = {row["id"] for row in rows}
    report.lost = set(ids) - alive
    report.cancel_requested = {row["id"] for row in rows if row["cancel_requested"]}
    return report


@dataclass(frozen=True, slots=True)
class Swept:
    """One expired lease the sweeper handled."""

    video_id: int
    attempt: int
    to_status: VideoStatus
    provider: str
    prediction_id: str | None


async def sweep(
    *,
    max_rescues: int,
    actor: str = "sweeper",
    bus: EventBus | None = None,
    limit: int = SWEEP_BATCH,
) -> list[Swept]:
    """Handle jobs whose lease expired (their worker died or hung).

    Each goes back to ``queued`` (``retry_count`` and ``rescue_count`` + 1, the prediction id
    kept so the next attempt resumes it), or to ``failed`` once ``max_retries`` or
    ``max_rescues`` are spent, or to ``canceled`` when a cancel was requested. The attempt row
    is closed as RESCUED. Safe to run in every worker at once: every change is fenced on the
    attempt and on the lease still being expired.

    Returns:
        What was swept (the caller cancels the provider prediction of failed/canceled ones).
    """
    stamp = now()
    rows = (
        await Video.filter(status=S.PROCESSING, lease_expires_at__lt=stamp)
        .order_by("lease_expires_at")
        .limit(limit)
        .values(
            "id",
            "attempt",
            "retry_count",
            "max_retries",
            "rescue_count",
            "cancel_requested",
            "processed_by",
            "provider",
            "prediction_id",
        )
    )
    swept: list[Swept] = []
    events: list[VideoEvent] = []
    for row in rows:
        rescues = row["rescue_count"] + 1
        reason = f"lease expired: worker {row['processed_by']} stopped heartbeating"
        fields: dict[str, Any] = {
            "rescue_count": F("rescue_count") + 1,
            "processed_by": None,
            "error_message": reason,
        }
        cancel = bool(row["cancel_requested"])
        if cancel:
            to, message = S.CANCELED, "canceled (its worker was lost)"
        elif rescues > max_rescues:
            to = S.FAILED
            message = f"{reason}; gave up after {rescues} lost workers (max_rescues)"
            # The worker cancels the prediction upstream (upkeep.sweep_once), and what kills
            # its workers is most likely that prediction's output anyway: retryVideo must
            # ask for a new generation.
            fields.update(error_message=message, prediction_id=None)
        elif row["retry_count"] >= row["max_retries"]:
            to, message = S.FAILED, f"{reason}; retries spent"
            # Canceled upstream by the worker: retryVideo must not resume it.
            fields.update(error_message=message, prediction_id=None)
        else:
            to, message = S.QUEUED, f"rescued: {reason}"
            fields.update(retry_count=F("retry_count") + 1, scheduled_at=None)
        try:
            _video, change = await lifecycle.transition(
                row["id"],
                to,
                actor=actor,
                message=message,
                expect=[S.PROCESSING],
                attempt=row["attempt"],
                fields=fields,
                # The flag read above decided ``to``: a cancel (or delete) landing since
                # then makes this write stale, and the next sweep cancels the job.
                where={"lease_expires_at__lt": stamp, "cancel_requested": cancel},
                ends_attempt=lifecycle.AttemptEnd(
                    AttemptOutcome.RESCUED,
                    error_code=LEASE_EXPIRED,
                    error_message=reason,
                    retryable=to is S.QUEUED,
                ),
            )
        except (lifecycle.StaleAttempt, lifecycle.IllegalTransition):
            continue  # another sweeper, a heartbeat or the worker itself got there first
        events.append(change.event)
        swept.append(Swept(row["id"], row["attempt"], to, row["provider"], row["prediction_id"]))
        logger.warning(
            "lease expired",
            extra={
                "action": "job.rescue",
                "video_id": row["id"],
                "attempt": row["attempt"],
                "worker_id": row["processed_by"],
                "to_status": to.value,
            },
        )
    await lifecycle.publish(bus, events)
    return swept


async def release(
    video_id: int, attempt: int, *, worker_id: str, bus: EventBus | None = None
) -> VideoStatus | None:
    """Hand a job back to the queue on graceful shutdown (no retry counted).

    The prediction id is kept, so whoever claims it next resumes the same prediction. A job
    whose cancel was requested is canceled instead.

    Returns:
        The new status, or None when the job was no longer this worker's.
    """
    for _ in range(RELEASE_TRIES):
        row = await (
            Video.filter(id=video_id, attempt=attempt, status=S.PROCESSING)
            .first()
            .values("cancel_requested")
        )
        if row is None:
            return None  # no longer this attempt's
        cancel = bool(row["cancel_requested"])
        to = S.CANCELED if cancel else S.QUEUED
        try:
            _video, change = await lifecycle.transition(
                video_id,
                to,
                actor=f"worker:{worker_id}",
                message="released: worker shutting down" if to is S.QUEUED else "canceled",
                expect=[S.PROCESSING],
                attempt=attempt,
                fields={"processed_by": None},
                # A cancel (or delete) landing after the read above makes this stale: read
                # again, or a deleted video would sit queued where no claim sees it.
                where={"cancel_requested": cancel},
                ends_attempt=lifecycle.AttemptEnd(
                    AttemptOutcome.RELEASED, error_message="worker shutdown"
                ),
            )
        except lifecycle.IllegalTransition:
            return None
        except lifecycle.StaleAttempt:
            continue  # taken over (the read finds nothing) or the flag changed: read again
        await lifecycle.publish(bus, [change.event])
        return to
    return None  # the flag kept changing: the lease expires and a sweeper decides
