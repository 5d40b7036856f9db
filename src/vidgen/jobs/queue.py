"""The durable queue: the ``videos`` table itself. All of the queue's SQL lives here.

- :func:`claim` picks due jobs (``queued``, ``scheduled_at`` passed or empty, not deleted) in
  order of priority (high first), then due time (``scheduled_at``, else creation), then id,
  and moves them to ``processing`` through :func:`vidgen.jobs.lifecycle.apply_claim`. On
  PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED`` and the whole claim is one statement; on
  SQLite it is one ``UPDATE … RETURNING`` (SQLite serialises writers).
- :func:`extend_leases` is the heartbeat: it extends the leases of the jobs a worker still
  owns (fenced on ``attempt``) and reports lost ones and cancel requests.
- :func:`sweep` returns expired leases to ``queued`` (a rescue, counting the attempt) or to
  ``failed`` when the retries or rescues are spent (or ``canceled`` when a cancel was asked).
  Every worker runs it; concurrent sweepers are safe because each change is fenced.
- :func:`release` hands a job back on graceful shutdown (no retry counted).

Times are the application's UTC clock, the same clock that writes ``scheduled_at``.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from vidgen import dialect
from vidgen.events.bus import EventBus
from vidgen.events.messages import VideoEvent
from vidgen.jobs import lifecycle
from vidgen.jobs.lifecycle import Claimed, now
from vidgen.models import AttemptOutcome, Video, VideoStatus

logger = logging.getLogger(__name__)

S = VideoStatus
SWEEP_BATCH = 100
# A release reads the cancel flag, then writes fenced on it; the flag changes once at most.
RELEASE_TRIES = 3
LEASE_EXPIRED = "lease_expired"

_ORDER = "ORDER BY priority DESC, COALESCE(scheduled_at, created_at), id"


def _pick_sql(
    *,
    limit: int,
    stamp: dt.datetime,
    providers: Collection[str] | None,
    excluded: Collection[str],
    columns: str = "id",
) -> tuple[str, list[Any]]:
    """The ``SELECT id`` of the next due jobs, with its parameters."""
    p = dialect.Params()
    where = [
        "status = 'queued'",
        "deleted_at IS NULL",
        f"(scheduled_at IS NULL OR scheduled_at <= {p(stamp)})",
    ]
    if p.postgres:
        if providers is not None:
            where.append(f"provider = ANY({p(list(providers))}::varchar[])")
        if excluded:
            where.append(f"provider <> ALL({p(list(excluded))}::varchar[])")
    else:
        if providers is not None:
            where.append(f"provider IN ({p.many(providers) or 'NULL'})")
        if excluded:
            where.append(f"provider NOT IN ({p.many(excluded)})")
    sql = f"SELECT {columns} FROM videos WHERE {' AND '.join(where)} {_ORDER} LIMIT {p(limit)}"
    if p.postgres:
        sql += " FOR UPDATE SKIP LOCKED"
    return sql, p.values


def _ids_sql(ids: list[int]) -> tuple[str, list[Any]]:
    if dialect.is_postgres():
        return "SELECT unnest($1::int[]) AS id", [ids]
    p = dialect.Params(postgres=False)
    return f"SELECT id FROM videos WHERE id IN ({p.many(ids)})", p.values


def _lock_key(provider: str) -> int:
    return zlib.crc32(f"vidgen:provider-limit:{provider}".encode())


async def claim(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    providers: Collection[str] | None = None,
    provider_limits: Mapping[str, int] | None = None,
    bus: EventBus | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due jobs for one worker.

    Args:
        worker_id: who claims (``host:pid:name``), written to ``processed_by``.
        limit: at most this many jobs.
        lease_seconds: the first lease; the heartbeat extends it.
        providers: only jobs of these providers (the ones this process can run).
        provider_limits: provider name → max jobs ``processing`` at once across all workers.
            Counted at claim time under a per-provider advisory lock on PostgreSQL (SQLite
            serialises writers anyway).
        bus: publish the claims' status events after the commit.

    Returns:
        The claimed jobs, each with its new ``attempt`` (the fence for its later writes).
    """
    if limit <= 0 or (providers is not None and not providers):
        return []
    stamp = now()
    lease_until = stamp + dt.timedelta(seconds=lease_seconds)
    limits = {
        name: n
        for name, n in (provider_limits or {}).items()
        if providers is None or name in providers
    }
    if dialect.is_postgres() and not limits:
        # One statement (pick, claim, history and attempt rows): atomic on its own, so no
        # BEGIN/COMMIT round trips on the hottest path.
        pick, params = _pick_sql(limit=limit, stamp=stamp, providers=providers, excluded=())
        claimed = await lifecycle.apply_claim(
            Video._meta.db,
            pick_sql=pick,
            pick_params=params,
            worker_id=worker_id,
            lease_until=lease_until,
        )
    else:
        claimed = await _claim_in_transaction(
            worker_id=worker_id,
            limit=limit,
            stamp=stamp,
            lease_until=lease_until,
            providers=providers,
            limits=limits,
        )
    if claimed:
        await lifecycle.publish(bus, [c.event for c in claimed])
        logger.debug(
            "claimed jobs",
            extra={"action": "job.claim", "worker_id": worker_id, "count": len(claimed)},
        )
    return claimed


async def _claim_in_transaction(
    *,
    worker_id: str,
    limit: int,
    stamp: dt.datetime,
    lease_until: dt.datetime,
    providers: Collection[str] | None,
    limits: Mapping[str, int],
) -> list[Claimed]:
    """The claim with per-provider limits (PostgreSQL), or on SQLite (several statements)."""
    async with in_transaction() as conn:
        quotas: dict[str, int] = {}
        if limits:
            if dialect.is_postgres():
                for name in sorted(limits):
                    await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [_lock_key(name)])
            running = await _count_processing(conn, list(limits))
            quotas = {name: max(0, n - running.get(name, 0)) for name, n in limits.items()}
        excluded = [name for name, quota in quotas.items() if quota == 0]
        if providers is not None and set(providers) <= set(excluded):
            return []
        if not quotas:
            pick, params = _pick_sql(limit=limit, stamp=stamp, providers=providers, excluded=())
        else:
            chosen = await _pick_within_quotas(
                conn,
                limit=limit,
                stamp=stamp,
                providers=providers,
                quotas=quotas,
                excluded=excluded,
            )
            if not chosen:
                return []
            pick, params = _ids_sql(chosen)
        return await lifecycle.apply_claim(
            conn,
            pick_sql=pick,
            pick_params=params,
            worker_id=worker_id,
            lease_until=lease_until,
        )


async def _pick_within_quotas(
    conn: Any,
    *,
    limit: int,
    stamp: dt.datetime,
    providers: Collection[str] | None,
    quotas: Mapping[str, int],
    excluded: list[str],
) -> list[int]:
    """Up to ``limit`` due job ids in queue order, at most ``quotas[name]`` of each limited
    provider. Each round over-fetches by the quotas left; when a round skipped jobs of a
    provider whose quota it filled, the next round excludes that provider, so due jobs of
    other providers further down the queue get the free slots now instead of at the next
    poll. At most one round more than there are limited providers."""
    chosen: list[int] = []
    seen: set[int] = set()
    taken: dict[str, int] = {}
    excluded = list(excluded)
    while len(chosen) < limit:
        if providers is not None and set(providers) <= set(excluded):
            break
        left = sum(q - taken.get(n, 0) for n, q in quotas.items() if n not in excluded)
        pick, params = _pick_sql(
            limit=limit - len(chosen) + left,
            stamp=stamp,
            providers=providers,
            excluded=excluded,
            columns="id, provider",
        )
        skipped = False
        for row in await conn.execute_query_dict(pick, params):
            # Rows this transaction already locked come back (SKIP LOCKED skips only others').
            if row["id"] in seen:
                continue
            name = row["provider"]
            if name in quotas:
                if taken.get(name, 0) >= quotas[name]:
                    skipped = True
                    continue
                taken[name] = taken.get(name, 0) + 1
            seen.add(row["id"])
            chosen.append(row["id"])
            if len(chosen) >= limit:
                break
        full = [n for n, q in quotas.items() if n not in excluded and taken.get(n, 0) >= q]
        if not skipped or not full:
            break
        excluded += full
    return chosen


async def _count_processing(conn: Any, names: list[str]) -> dict[str, int]:
    p = dialect.Params()
    among = f"= ANY({p(names)}::varchar[])" if p.postgres else f"IN ({p.many(names)})"
    rows = await conn.execute_query_dict(
        "SELECT provider, count(*) AS n FROM videos WHERE status = 'processing'"
        f" AND provider {among} GROUP BY provider",
        p.values,
    )
    return {row["provider"]: int(row["n"]) for row in rows}


@dataclass
class LeaseReport:
    """The heartbeat's findings: jobs this worker no longer owns, and cancel requests."""

    lost: set[int] = field(default_factory=set)
    cancel_requested: set[int] = field(default_factory=set)


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
            # The worker cancels the prediction upstream (worker._sweep_once), and what kills
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


async def next_due_at(*, after: dt.datetime | None = None) -> dt.datetime | None:
    """When the next scheduled job becomes due, if any: the earliest ``scheduled_at`` of a
    queued job later than ``after`` (default: now).

    A worker passes the time its claim started: a job that was re-queued with a short
    backoff while the claim ran (not yet committed then, already due now) is returned with
    a time in the past, so the worker claims again at once instead of sleeping until the
    safety poll. Jobs that were already due when the claim started (e.g. held back by a
    provider's concurrency limit) are not returned, so they cannot make it spin.
    """
    found = (
        await Video.filter(status=S.QUEUED, deleted_at=None, scheduled_at__gt=after or now())
        .order_by("scheduled_at")
        .limit(1)
        .values_list("scheduled_at", flat=True)
    )
    return found[0] if found else None
