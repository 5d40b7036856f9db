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

The worker's hot path has its own entry points, each ONE statement on PostgreSQL (a
data-modifying CTE; a short transaction on SQLite) that never re-reads what it wrote:
:func:`apply_claim` (queued → processing, history and attempt rows), :func:`store_prediction`
and :func:`finish` (processing → completed | failed | canceled | queued, history row, attempt
row closed). :func:`transition` serves everything else (the API, the sweeper, releases).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from vidgen import dialect, errors
from vidgen.events.bus import EventBus, publish_all
from vidgen.events.messages import VideoEvent, video_event_items
from vidgen.models import (
    TERMINAL_STATUSES,
    AttemptOutcome,
    Video,
    VideoStatus,
    VideoStatusEvent,
)

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
    """Publish committed changes (call only after the transaction is over), all of them in
    one round trip on a bus that batches (a claim's or a sweep's many jobs)."""
    if bus is None:
        return
    items = [item for event in events for item in video_event_items(event)]
    if items:
        await publish_all(bus, items)


class StoryChanged(Exception):
    """The story a new video points into was deleted or shortened past its paragraph after
    the request was checked; nothing was written."""


# The story row a new video's paragraph index points into, share-locked by the inserting
# statement and re-checked on the row as it is when the lock is granted (PostgreSQL
# re-evaluates a locked row's WHERE after waiting). update_story locks the same row FOR
# UPDATE before it checks that no video points past the new paragraphs, so the two
# serialise: a story is never shortened under a video being added to it.
_STORY_GUARD = {
    "postgres": (
        "SELECT 1 FROM stories WHERE id = {id} AND owner_id = {owner} AND CASE WHEN"
        " jsonb_typeof(paragraphs) = 'array' THEN jsonb_array_length(paragraphs) ELSE 0 END"
        " > {index} FOR SHARE"
    ),
    "sqlite": (
        "SELECT 1 FROM stories WHERE id = ? AND owner_id = ? AND CASE WHEN"
        " json_type(paragraphs) = 'array' THEN json_array_length(paragraphs) ELSE 0 END > ?"
    ),
}


async def lock_story_paragraph(story_id: int, owner_id: int, index: int) -> None:
    """Inside a transaction that adds a video to paragraph ``index`` of a story by other
    statements than :func:`record_created`'s (which guards its own insert): share-lock the
    story row until the commit and check it still has that paragraph, with the same guard.

    Raises:
        StoryChanged: the story lost that paragraph or was deleted.
    """
    if dialect.is_postgres():
        guard = _STORY_GUARD[dialect.POSTGRES].format(id="$1", owner="$2", index="$3")
    else:
        guard = _STORY_GUARD[dialect.SQLITE]
    if not await Video._meta.db.execute_query_dict(guard, [story_id, owner_id, index]):
        raise StoryChanged()


@functools.cache
def _created_sql(columns: tuple[str, ...] | None, tags: bool, guard: bool = False) -> str:
    """:func:`record_created`'s PostgreSQL statement; its parameters: the video's values
    (or its id when ``columns`` is None, the video being saved already), the 7 history
    values, the tag ids as one array when ``tags``, then the story guard's story id, owner id
    and paragraph index when ``guard`` (the video is inserted only while that story has the
    paragraph; otherwise the statement returns no row)."""
    if columns is not None:
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        names = ", ".join(f'"{column}"' for column in columns)
        if guard:
            source = f"v AS (INSERT INTO videos ({names}) SELECT {marks} FROM s RETURNING id)"
        else:
            source = f"v AS (INSERT INTO videos ({names}) VALUES ({marks}) RETURNING id)"
        n = len(columns)
    else:
        source = "v AS (SELECT $1::int AS id)"
        n = 1
    history = ", ".join(f"${i}" for i in range(n + 1, n + 8))
    sql = (
        f"WITH {source}, h AS (INSERT INTO video_status_events (video_id, owner_id,"
        f" from_status, to_status, version, at, message, actor) SELECT id, {history} FROM v"
        " RETURNING id)"
    )
    after = n + 8
    if tags:
        sql += (
            ", t AS (INSERT INTO video_tags (videos_id, tag_id)"
            f" SELECT v.id, u.tag FROM v, unnest(${after}::int[]) AS u(tag))"
        )
        after += 1
    if guard and columns is not None:
        lock = _STORY_GUARD["postgres"].format(
            id=f"${after}", owner=f"${after + 1}", index=f"${after + 2}"
        )
        sql = f"WITH s AS ({lock}), " + sql.removeprefix("WITH ")
    return sql + " SELECT v.id, h.id AS event_id FROM v, h"


async def record_created(
    video: Video,
    *,
    actor: str | None,
    message: str | None = None,
    tag_ids: Sequence[int] = (),
    paragraph_count: int | None = None,
) -> Change:
    """Write the first history row of a new ``queued`` video, and its tag links.

    A video not saved yet is inserted here too, checked as :meth:`Video.save` checks it
    (``paragraph_count`` as in :meth:`Video.check_paragraph_index`); on PostgreSQL the
    video, its history row and its tag links are then ONE statement, atomic without a
    transaction. Inside a caller's transaction, publish ``change.event`` after it commits.
    A new video with a story paragraph is inserted only while the story still has that
    paragraph, checked in the same statement under a lock (:data:`_STORY_GUARD`).

    Raises:
        ValidationError: the unsaved video failed its checks; nothing was written.
        IntegrityError: e.g. a repeated idempotency key; nothing was written.
        StoryChanged: the story lost that paragraph (or was deleted); nothing was written.
    """
    new = not video._saved_in_db
    values = await video.insert_values(paragraph_count=paragraph_count) if new else {}
    guard = (
        [video.story_id, video.owner_id, video.paragraph_index]
        if new and video.story_id is not None and video.paragraph_index is not None
        else []
    )
    stamp = now()
    status = S(video.status)
    history = [video.owner_id, None, status.value, video.version, stamp, message or "queued", actor]
    conn = Video._meta.db
    if dialect.is_postgres():
        params = [*values.values()] if new else [video.id]
        params += history
        if tag_ids:
            params.append(list(tag_ids))
        params += guard
        sql = _created_sql(tuple(values) if new else None, bool(tag_ids), bool(guard))
        rows = await conn.execute_query_dict(sql, params)
        if not rows:
            raise StoryChanged()
        video_id, event_id = rows[0]["id"], rows[0]["event_id"]
    else:
        async with in_transaction() as tx:
            if new:
                columns = ", ".join(f'"{column}"' for column in values)
                marks = ", ".join("?" for _ in values)
                if guard:
                    insert = (
                        f"INSERT INTO videos ({columns}) SELECT {marks}"
                        f" WHERE EXISTS ({_STORY_GUARD['sqlite']}) RETURNING id"
                    )
                else:
                    insert = f"INSERT INTO videos ({columns}) VALUES ({marks}) RETURNING id"
                inserted = await tx.execute_query_dict(insert, [*values.values(), *guard])
                if not inserted:
                    raise StoryChanged()
                video_id = inserted[0]["id"]
            else:
                video_id = video.id
            rows = await tx.execute_query_dict(
                "INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
                " version, at, message, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [video_id, *history],
            )
            event_id = rows[0]["id"]
            if tag_ids:
                await tx.execute_query(
                    "INSERT INTO video_tags (videos_id, tag_id) VALUES "
                    + ", ".join("(?, ?)" for _ in tag_ids),
                    [value for tag_id in tag_ids for value in (video_id, tag_id)],
                )
    if new:
        video.id = video_id
        video._saved_in_db = True
    return Change(video.id, status, status, video.version, event_for(video, event_id))


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

    Raises:
        NotFound, IllegalTransition, StaleAttempt.
    """
    to = VideoStatus(to)
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
    change = Change(video.id, current, to, video.version, event_for(video, row.id))
    await publish(bus, [change.event])
    return video, change


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
        " RETURNING id, owner_id, version, status, progress, project_id, story_id",
        p.values,
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


# The event-log row of a change that keeps the status, read from the row as the change
# left it (same transaction): the video's owner, status and new version.
_CHANGE_SQL = (
    "INSERT INTO video_status_events (video_id, owner_id, from_status, to_status, version,"
    " at, message, actor) SELECT id, owner_id, status, status, version, {at}, {note}, {actor}"
    " FROM videos WHERE id = {id} RETURNING id"
)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


async def record_change(
    conn: Any,
    video_id: int,
    *,
    change: str,
    before: Mapping[str, Any],
    actor: str | None,
    at: dt.datetime | None = None,
) -> int | None:
    """Write the event-log row of a client-visible change that is not a status change
    (``updated``, ``deleted``, ``restored``), so ``videoUpdates(after:)`` replays it and
    ``eventCursor`` advances; publish ``event_for(video, <returned id>)`` after the commit.

    Call it inside the change's transaction, after the UPDATE that bumped ``version``: the
    row takes the video's owner, status and version as that UPDATE left them. It has
    ``from_status == to_status`` (``statusHistory`` leaves such rows out) and its message
    is JSON: the change's name and ``before``, the changed columns' values before it, from
    which a subscriber rebuilds the video as of an older version.

    Args:
        conn: the transaction's connection.
        video_id: the video.
        change: what happened.
        before: column name -> value before the change (datetimes are kept as ISO text).
        actor: who did it.
        at: the change's time (default now).

    Returns:
        The row's id (the new event cursor), or None when the video does not exist.
    """
    note = json.dumps(
        {"change": change, "before": {k: _json_value(v) for k, v in before.items()}},
        separators=(",", ":"),
    )
    p = dialect.Params()
    sql = _CHANGE_SQL.format(at=p(at or now()), note=p(note), actor=p(actor), id=p(video_id))
    rows = await conn.execute_query_dict(sql, p.values)
    return int(rows[0]["id"]) if rows else None


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
    FROM picked
    WHERE v.id = picked.id AND v.status = 'queued'
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
)
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
    " {v}version, {v}progress, {v}priority, COALESCE({v}scheduled_at, {v}created_at) AS due,"
    " {v}prompt, {v}resolution, {v}output_format, {v}duration_seconds, {v}model,"
    " {v}input_image, {v}video_style, {v}seed, {v}cancel_requested, {v}retry_count,"
    " {v}max_retries"
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
        k = len(pick_params)
        sql = _PG_CLAIM.format(
            pick=pick_sql,
            w=k + 1,
            lease=k + 2,
            now=k + 3,
            returning=_CLAIM_RETURNING.format(v="v."),
        )
        rows = await conn.execute_query_dict(sql, [*pick_params, worker_id, lease_until, stamp])
        claimed = [(dict(r), r["event_id"]) for r in rows]
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
            claimed.append((dict(r), history[0]["id"]))
    # RETURNING does not keep the pick order: restore it (priority, due time, age).
    claimed.sort(key=lambda pair: (-pair[0]["priority"], pair[0]["due"], pair[0]["id"]))
    return [_claimed(r, event_id) for r, event_id in claimed]


def _claimed(r: Mapping[str, Any], event_id: int | None) -> Claimed:
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


# --- the worker's fenced writes (the hot path) -------------------------------------------------
# One statement on PostgreSQL (data-modifying CTEs), a few in one transaction on SQLite. Both
# match the row only while it is still ``processing`` under the caller's attempt: anything
# else (swept, released, canceled, claimed again) is StaleAttempt and nothing is written.

_EVENT_COLUMNS = "id, owner_id, version, status, progress, project_id, story_id"

#: The history note of a retry that became a cancel (see :func:`finish`).
CANCELED_INSTEAD = "canceled (requested while it ran) instead of retrying"

#: Sends one fenced single-row statement and returns its rows: ``runner(sql, params, key=id)``.
Runner = Callable[..., Awaitable[list[dict[str, Any]]]]


async def _run_alone(sql: str, params: list[Any], *, key: int) -> list[dict[str, Any]]:
    return await Video._meta.db.execute_query_dict(sql, params)


def _event_from_row(row: Mapping[str, Any], event_id: int | None) -> VideoEvent:
    return VideoEvent(
        video_id=row["id"],
        owner_id=row["owner_id"],
        version=row["version"],
        status=str(row["status"]),
        progress=float(row["progress"] or 0.0),
        event_id=event_id,
        project_id=row["project_id"],
        story_id=row["story_id"],
    )


def _video_sets(fields: Mapping[str, Any], p: dialect.Params) -> list[str]:
    if "status" in fields or "version" in fields or "attempt" in fields:
        raise ValueError("status, version and attempt are the lifecycle's own columns")
    columns = Video._meta.fields_db_projection
    return [f"{columns[name]} = {p(value)}" for name, value in fields.items()]


async def finish(
    video_id: int,
    attempt: int,
    to: VideoStatus,
    outcome: AttemptOutcome,
    *,
    actor: str,
    message: str | None,
    fields: Mapping[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    retryable: bool | None = None,
    bus: EventBus | None = None,
    runner: Runner | None = None,
) -> Change:
    """End a worker's attempt: ``processing`` → ``to``, fenced on ``attempt``.

    In one atomic write: the video's status, ``version`` + 1, ``updated_at`` (and
    ``completed_at``/``progress`` on success, the lease cleared) with ``fields``; the history
    row; and the attempt row closed with ``outcome``. Publishes after the commit.

    A job going back to ``queued`` (a retry) whose cancel was requested meanwhile becomes
    ``canceled`` instead, in the same write: the cancel was accepted while it ran, so it must
    not wait out a backoff (up to a provider's Retry-After) to take effect. The returned
    change says which.

    Args:
        video_id: the video.
        attempt: the claim's attempt (the fence).
        to: completed, failed, canceled, or queued (retry, release).
        outcome: how the attempt ended (its VideoAttempt row).
        actor: who did it (``worker:…``).
        message: the history note.
        fields: other plain column values to set in the same write.
        error_code: kept on the attempt row.
        error_message: kept on the attempt row.
        retryable: kept on the attempt row.
        bus: publish the change after the commit (None: the caller publishes).
        runner: sends the PostgreSQL statement (e.g. a worker's
            :class:`~vidgen.jobs.writer.GroupWriter`); default: on its own.

    Raises:
        StaleAttempt: the video is no longer processing under this attempt (nothing written).
    """
    to = VideoStatus(to)
    if not can_transition(S.PROCESSING, to):
        raise IllegalTransition(f"A processing video cannot become {to.value}.")
    stamp = now()
    values: dict[str, Any] = dict(fields or {})
    if to is S.COMPLETED:
        values.setdefault("completed_at", stamp)
        values.setdefault("progress", 1.0)
    values.setdefault("lease_expires_at", None)
    if dialect.is_postgres():
        p = dialect.Params(postgres=True)
        sets = _video_sets(values, p)
        status, note = "{to}", "{message}"
        if to is S.QUEUED:
            status = "CASE WHEN cancel_requested THEN 'canceled' ELSE {to} END"
            note = f"CASE WHEN status = 'canceled' THEN '{CANCELED_INSTEAD}' ELSE {{message}} END"
        sql = (
            f"WITH v AS (UPDATE videos SET status = {status}, version = version + 1,"
            " updated_at = {at}, {sets} WHERE id = {id} AND attempt = {attempt}"
            " AND status = 'processing' RETURNING {cols}),"
            " h AS (INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
            " version, at, message, actor) SELECT id, owner_id, 'processing', status, version,"
            f" {{at}}, {note}, {{actor}} FROM v RETURNING id),"
            " a AS (UPDATE video_attempts SET outcome = {outcome}, finished_at = clock_timestamp(),"
            " error_code = {code}, error_message = {error}, retryable = {retryable}"
            " WHERE video_id = {id} AND attempt = {attempt} AND EXISTS (SELECT 1 FROM v))"
            " SELECT v.*, h.id AS event_id FROM v, h"
        )
        # Placeholders are numbered in the order they are made; reuse them by name.
        named = {
            "to": p(to),
            "at": p(stamp),
            "id": p(video_id),
            "attempt": p(attempt),
            "message": p(message),
            "actor": p(actor),
            "outcome": p(outcome),
            "code": p(error_code),
            "error": p(error_message),
            "retryable": p(retryable),
        }
        rows = await (runner or _run_alone)(
            sql.format(sets=", ".join(sets), cols=_EVENT_COLUMNS, **named),
            p.values,
            key=video_id,
        )
        if not rows:
            raise StaleAttempt(f"video {video_id}: attempt {attempt} is no longer processing")
        row = rows[0]
        event_id = row["event_id"]
    else:
        p = dialect.Params(postgres=False)
        sets = _video_sets(values, p)
        update_values = [*p.values]
        async with in_transaction() as tx:
            status = "?"
            if to is S.QUEUED:
                status = "CASE WHEN cancel_requested THEN 'canceled' ELSE ? END"
            rows = await tx.execute_query_dict(
                f"UPDATE videos SET status = {status}, version = version + 1, updated_at = ?"
                f"{''.join(', ' + s for s in sets)} WHERE id = ? AND attempt = ?"
                f" AND status = 'processing' RETURNING {_EVENT_COLUMNS}",
                [to.value, stamp, *update_values, video_id, attempt],
            )
            if not rows:
                raise StaleAttempt(f"video {video_id}: attempt {attempt} is no longer processing")
            row = rows[0]
            history = await tx.execute_query_dict(
                "INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
                " version, at, message, actor) VALUES (?, ?, 'processing', ?, ?, ?, ?, ?)"
                " RETURNING id",
                [
                    video_id,
                    row["owner_id"],
                    row["status"],
                    row["version"],
                    stamp,
                    CANCELED_INSTEAD if to is S.QUEUED and row["status"] == "canceled" else message,
                    actor,
                ],
            )
            await tx.execute_query(
                "UPDATE video_attempts SET outcome = ?, finished_at = ?, error_code = ?,"
                " error_message = ?, retryable = ? WHERE video_id = ? AND attempt = ?",
                [outcome.value, stamp, error_code, error_message, retryable, video_id, attempt],
            )
        event_id = history[0]["id"]
    final = VideoStatus(row["status"])
    event = _event_from_row(row, event_id)
    change = Change(video_id, S.PROCESSING, final, row["version"], event)
    await publish(bus, [change.event])
    return change


async def store_prediction(
    video_id: int,
    attempt: int,
    prediction_id: str | None,
    *,
    bus: EventBus | None = None,
    runner: Runner | None = None,
) -> VideoEvent:
    """Keep a running job's prediction id on the video and its attempt row, fenced.

    One statement on PostgreSQL. Call it as soon as the provider accepted the submission:
    a job rescued after this point resumes the prediction instead of paying for a new one.
    ``runner`` sends the PostgreSQL statement as in :func:`finish`.

    Raises:
        StaleAttempt: the video is no longer processing under this attempt (nothing written).
    """
    stamp = now()
    if dialect.is_postgres():
        rows = await (runner or _run_alone)(
            "WITH v AS (UPDATE videos SET prediction_id = $1, version = version + 1,"
            " updated_at = $2 WHERE id = $3 AND attempt = $4 AND status = 'processing'"
            f" RETURNING {_EVENT_COLUMNS}),"
            " a AS (UPDATE video_attempts SET prediction_id = $1 WHERE video_id = $3"
            " AND attempt = $4 AND EXISTS (SELECT 1 FROM v))"
            " SELECT * FROM v",
            [prediction_id, stamp, video_id, attempt],
            key=video_id,
        )
    else:
        async with in_transaction() as tx:
            rows = await tx.execute_query_dict(
                "UPDATE videos SET prediction_id = ?, version = version + 1, updated_at = ?"
                " WHERE id = ? AND attempt = ? AND status = 'processing'"
                f" RETURNING {_EVENT_COLUMNS}",
                [prediction_id, stamp, video_id, attempt],
            )
            if rows:
                await tx.execute_query(
                    "UPDATE video_attempts SET prediction_id = ? WHERE video_id = ?"
                    " AND attempt = ?",
                    [prediction_id, video_id, attempt],
                )
    if not rows:
        raise StaleAttempt(f"video {video_id}: attempt {attempt} is no longer processing")
    event = _event_from_row(rows[0], None)
    await publish(bus, [event])
    return event
