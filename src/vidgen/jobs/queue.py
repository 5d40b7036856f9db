"""The durable queue: the ``videos`` table itself. The pick of due jobs lives here.

- :func:`claim` picks due jobs (``queued``, ``scheduled_at`` passed or empty, not deleted) in
  order of priority (high first), then the owners' turns (``fair_rank``: within a priority,
  owners alternate), then due time (``scheduled_at``, else creation), then id,
  and moves them to ``processing`` through :func:`vidgen.jobs.lifecycle.apply_claim`. On
  PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED`` and the whole claim is one statement; on
  SQLite it is one ``UPDATE … RETURNING`` (SQLite serialises writers).
- A film waits for its clips: the pick skips it while one of them is queued or processing.
- :func:`next_due_at` says when the next scheduled job becomes due (a worker's wake-up).

Claimed jobs are kept by their leases (:mod:`vidgen.jobs.leases`).

Times are the application's UTC clock, the same clock that writes ``scheduled_at``.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from collections.abc import Collection, Mapping
from typing import Any

from tortoise.transactions import in_transaction

from vidgen import dialect
from vidgen.events.bus import EventBus
from vidgen.jobs import lifecycle
from vidgen.jobs.lifecycle import Claimed, now
from vidgen.models import Video, VideoStatus

logger = logging.getLogger(__name__)

S = VideoStatus

# Priority first; within it the owners' turns (fair_rank, set at enqueue), then the due time
# and id. idx_videos_fair_claim (migration 0009) holds exactly this order.
_ORDER = "ORDER BY priority DESC, fair_rank, COALESCE(scheduled_at, created_at), id"

# A film (docs/films.md) is due only once none of its clips is queued or processing: then
# its worker stitches them, or fails it naming the clip that did not complete.
_FILM_READY = (
    "(kind = 'clip' OR NOT EXISTS (SELECT 1 FROM film_clips AS fc"
    " JOIN videos AS c ON c.id = fc.clip_id"
    " WHERE fc.film_id = videos.id AND c.status IN ('queued', 'processing')))"
)


def _pick_sql(
    *,
    limit: int,
    stamp: dt.datetime,
    providers: Collection[str] | None,
    excluded: Collection[str],
    columns: str = "id",
    params: dialect.Params | None = None,
) -> tuple[str, list[Any]]:
    """The ``SELECT id`` of the next due jobs, with its parameters (``params``: go on
    numbering those of a statement this is part of)."""
    p = params or dialect.Params()
    where = [
        "status = 'queued'",
        "deleted_at IS NULL",
        f"(scheduled_at IS NULL OR scheduled_at <= {p(stamp)})",
        _FILM_READY,
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


def _capped_pick_sql(
    *,
    limit: int,
    stamp: dt.datetime,
    providers: Collection[str],
    caps: Mapping[str, int],
) -> tuple[str, list[Any]]:
    """PostgreSQL: the pick of :func:`_pick_sql` with at most ``caps[name]`` jobs of each
    capped provider (a worker's own limit: no lock needed), still ONE statement. Each
    provider group is picked (and locked) in queue order by its own CTE, and the union is
    cut to ``limit`` in queue order; rows locked but not taken are free again when the
    statement ends."""
    p = dialect.Params()
    columns = "id, priority, fair_rank, COALESCE(scheduled_at, created_at) AS due"
    free = [name for name in providers if name not in caps]
    parts = []
    if free:
        parts.append(
            _pick_sql(
                limit=limit, stamp=stamp, providers=free, excluded=(), columns=columns, params=p
            )[0]
        )
    for name, cap in sorted(caps.items()):
        parts.append(
            _pick_sql(
                limit=cap, stamp=stamp, providers=[name], excluded=(), columns=columns, params=p
            )[0]
        )
    ctes = ", ".join(f"g{i} AS ({sql})" for i, sql in enumerate(parts))
    union = " UNION ALL ".join(f"SELECT * FROM g{i}" for i in range(len(parts)))
    sql = (
        f"WITH {ctes} SELECT id FROM ({union}) AS u"
        f" ORDER BY priority DESC, fair_rank, due, id LIMIT {p(limit)}"
    )
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
    worker_limits: Mapping[str, int] | None = None,
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
        worker_limits: provider name → at most this many more jobs for this worker alone
            (a CPU-bound provider: as many as the worker has free render threads).
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
    # The worker's own limits: one that cannot bind (as many as the claim takes) is left
    # out; a provider with none left is left out of the pick, which can then stay one
    # statement.
    mine = {
        name: n
        for name, n in (worker_limits or {}).items()
        if (providers is None or name in providers) and n < limit
    }
    if providers is not None and mine:
        providers = [name for name in providers if mine.get(name, 1) > 0]
        mine = {name: n for name, n in mine.items() if n > 0}
        if not providers:
            return []
    if dialect.is_postgres() and not limits and (not mine or providers is not None):
        # One statement (pick, claim, history and attempt rows): atomic on its own, so no
        # BEGIN/COMMIT round trips on the hottest path.
        if mine and providers is not None:
            pick, params = _capped_pick_sql(
                limit=limit, stamp=stamp, providers=providers, caps=mine
            )
        else:
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
            mine=mine,
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
    mine: Mapping[str, int],
) -> list[Claimed]:
    """The claim with per-provider limits (PostgreSQL), or on SQLite (several statements).
    ``mine``: the worker's own per-provider limits, which need no lock (its own jobs)."""
    async with in_transaction() as conn:
        quotas: dict[str, int] = {}
        if limits:
            if dialect.is_postgres():
                for name in sorted(limits):
                    await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [_lock_key(name)])
            running = await _count_processing(conn, list(limits))
            quotas = {name: max(0, n - running.get(name, 0)) for name, n in limits.items()}
        for name, n in mine.items():
            quotas[name] = min(quotas.get(name, n), n)
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
