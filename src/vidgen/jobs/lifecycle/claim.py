"""The claim's transition: queued → processing for the jobs the queue picked, with their
history and attempt rows, in ONE statement on PostgreSQL; and what a claimed job carries.

The queue (:mod:`vidgen.jobs.queue`) owns the pick: which rows, in which order, how locked.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vidgen import dialect
from vidgen.events.messages import VideoEvent
from vidgen.jobs.lifecycle import outbox
from vidgen.jobs.lifecycle.publishing import event_from_row
from vidgen.jobs.lifecycle.rules import now
from vidgen.models import Video, VideoStatus

S = VideoStatus


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a claimed job asks for, read by the claim itself (RETURNING), so running it
    needs no second read of the row. Fenced writes make a stale copy harmless: nothing here
    can change while the claim's attempt is the current one."""

    owner_id: int
    prompt: str
    resolution: str
    output_format: str
    duration_seconds: float | None
    model: str | None
    input_image: str | None
    video_style: str | None
    seed: int | None
    cancel_requested: bool
    retry_count: int
    max_retries: int
    webhook_url: str | None = None  # its status changes are POSTed there (the outbox)
    kind: str = "clip"  # a film is stitched from its clips, not sent to a provider

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobSpec:
        return cls(
            owner_id=row["owner_id"],
            prompt=row["prompt"],
            resolution=row["resolution"],
            output_format=str(row["output_format"]),
            duration_seconds=row["duration_seconds"],
            model=row["model"],
            input_image=row["input_image"],
            video_style=row["video_style"],
            seed=row["seed"],
            cancel_requested=bool(row["cancel_requested"]),
            retry_count=row["retry_count"],
            max_retries=row["max_retries"],
            webhook_url=row["webhook_url"],
            kind=str(row.get("kind") or "clip"),
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job as it was claimed: enough to run it and to fence every later write."""

    video_id: int
    attempt: int
    provider: str
    prediction_id: str | None
    event: VideoEvent
    spec: JobSpec | None = None


# The claim transition (queued → processing) applied to the ids chosen by the queue's pick
# query, with its history and attempt rows, in ONE statement on PostgreSQL.
#
# On PostgreSQL an attempt's started_at and finished_at come from the database's clock
# (clock_timestamp(), when the statement runs), not from the worker's: a claim only sees a
# job after the statement that ended the previous attempt committed, so on one clock every
# attempt starts after the one before it ended. Stamps taken in the workers could invert
# (another host's clock, or an event loop that stalled between taking the time and sending
# the claim), making the lease history look like two workers overlapped.
_PG_CLAIM = """
WITH picked AS ({pick}),
claimed AS (
    UPDATE videos AS v
    SET status = 'processing', attempt = v.attempt + 1, processed_by = ${w},
        lease_expires_at = ${lease}, version = v.version + 1, updated_at = ${now}
    WHERE v.id = ANY(ARRAY(SELECT id FROM picked)) AND v.status = 'queued'
    RETURNING {returning}
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
    SELECT id, attempt, ${w}, provider, prediction_id, clock_timestamp(), 'running'
    FROM claimed
),
{outbox}
SELECT c.*, h.id AS event_id FROM claimed AS c JOIN history AS h ON h.video_id = c.id
"""

_SQLITE_CLAIM = """
UPDATE videos
SET status = 'processing', attempt = attempt + 1, processed_by = ?, lease_expires_at = ?,
    version = version + 1, updated_at = ?
WHERE id IN ({pick}) AND status = 'queued'
RETURNING {returning}
"""

# Everything the pipeline needs to run the job (see JobSpec), returned by the claim.
_CLAIM_RETURNING = (
    "{v}id, {v}owner_id, {v}project_id, {v}story_id, {v}provider, {v}prediction_id, {v}attempt,"
    " {v}version, {v}progress, {v}priority, {v}fair_rank,"
    " COALESCE({v}scheduled_at, {v}created_at) AS due,"
    " {v}prompt, {v}resolution, {v}output_format, {v}duration_seconds, {v}model,"
    " {v}input_image, {v}video_style, {v}seed, {v}cancel_requested, {v}retry_count,"
    " {v}max_retries, {v}webhook_url, {v}kind"
)


# The claim's outbox rows (:mod:`.outbox`), for the claimed videos with a webhook URL, are
# made from the claimed rows alone, which on PostgreSQL also return the error message an
# event shows (a retried job keeps its last one while it runs again). A claimed video has no
# output: completed is final. Every claim pays for planning this part of its statement, so
# it is kept small: joining the videos table for those columns made each claim a fifth
# slower to plan and run; this, a few per cent.
_PG_CLAIM_RETURNING = _CLAIM_RETURNING.format(v="v.") + ", v.error_message"


@functools.cache
def _pg_claim_outbox(now: str) -> str:
    return outbox.pg_cte(
        "hooks",
        source="claimed AS c JOIN history AS h ON h.video_id = c.id",
        row="c",
        event="h.id",
        at=now,
        status="'processing'",
        output=False,
    )


@functools.lru_cache(maxsize=64)
def _pg_claim_sql(pick_sql: str, k: int) -> str:
    """The claim's statement around a pick of ``k`` parameters (a worker's picks come in a
    few shapes: built once each)."""
    return _PG_CLAIM.format(
        pick=pick_sql,
        w=k + 1,
        lease=k + 2,
        now=k + 3,
        returning=_PG_CLAIM_RETURNING,
        outbox=_pg_claim_outbox(f"${k + 3}"),
    )


async def apply_claim(
    conn: Any,
    *,
    pick_sql: str,
    pick_params: list[Any],
    worker_id: str,
    lease_until: dt.datetime,
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
    """
    stamp = now()
    if dialect.is_postgres():
        sql = _pg_claim_sql(pick_sql, len(pick_params))
        rows = await conn.execute_query_dict(sql, [*pick_params, worker_id, lease_until, stamp])
        claimed = [(r, r["event_id"]) for r in rows]
    else:
        sql = _SQLITE_CLAIM.format(pick=pick_sql, returning=_CLAIM_RETURNING.format(v=""))
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
            if r["webhook_url"] is not None:
                await outbox.record(conn, r["id"], history[0]["id"], stamp)
            claimed.append((dict(r), history[0]["id"]))
    # RETURNING does not keep the pick order: restore it (priority, turn, due time, age).
    claimed.sort(key=lambda p: (-p[0]["priority"], p[0]["fair_rank"], p[0]["due"], p[0]["id"]))
    return [_claimed(r, event_id) for r, event_id in claimed]


def _claimed(r: Mapping[str, Any], event_id: int | None) -> Claimed:
    event = event_from_row(r, event_id, status=S.PROCESSING.value)
    return Claimed(
        r["id"], r["attempt"], r["provider"], r["prediction_id"], event, JobSpec.from_row(r)
    )


async def claimed_by(worker_id: str, *, exclude: Mapping[int, int] | None = None) -> list[Claimed]:
    """Jobs processing under ``worker_id`` that it does not know it holds.

    A claim whose statement committed but whose reply was lost (the connection died on the
    way back) leaves such jobs; the worker adopts them instead of leaving them to sit until
    their lease expires and a sweeper counts a rescue against them. ``exclude``: video id →
    attempt of the jobs it runs; a video it runs under an older attempt (its task still in
    its last write) was claimed again, and is returned.
    """
    p = dialect.Params()
    rows = await Video._meta.db.execute_query_dict(
        f"SELECT {_CLAIM_RETURNING.format(v='')} FROM videos"
        f" WHERE processed_by = {p(worker_id)} AND status = 'processing' ORDER BY id",
        p.values,
    )
    running = exclude or {}
    return [_claimed(r, None) for r in rows if running.get(r["id"]) != r["attempt"]]
