"""The worker's fenced writes: the hot path, each ONE statement on PostgreSQL (a
data-modifying CTE; a few in one short transaction on SQLite) that never re-reads what it
wrote.

:func:`store_prediction` keeps a running job's prediction id; :func:`finish` ends the
attempt (processing → completed | failed | canceled | queued: the video, its history row
and its attempt row in one write). Both match the row only while it is still
``processing`` under the caller's attempt: anything else (swept, released, canceled,
claimed again) is :class:`StaleAttempt` and nothing is written.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tortoise.transactions import in_transaction

from vidgen import dialect
from vidgen.events.bus import EventBus
from vidgen.events.messages import VideoEvent
from vidgen.jobs import writer
from vidgen.jobs.lifecycle import outbox
from vidgen.jobs.lifecycle.publishing import (
    EVENT_COLUMNS,
    STATE_COLUMNS,
    event_from_row,
    publish,
)
from vidgen.jobs.lifecycle.rules import (
    Change,
    IllegalTransition,
    StaleAttempt,
    can_transition,
    check_fields,
    now,
    still_processing,
)
from vidgen.models import AttemptOutcome, Video, VideoStatus

S = VideoStatus

#: The history note of a retry that became a cancel (see :func:`finish`).
CANCELED_INSTEAD = "canceled (requested while it ran) instead of retrying"

# finish()'s outbox row, when the video has a webhook URL ({at}: formatted with the rest).
_OUTBOX = ", " + outbox.pg_cte("w", source="v, h", row="v", event="h.id", at="{at}")


def _returning(webhook: bool) -> str:
    return f"{EVENT_COLUMNS}, {outbox.SNAPSHOT}" if webhook else EVENT_COLUMNS


#: Sends one fenced single-row statement and returns its rows: ``runner(sql, params, key=id)``.
Runner = Callable[..., Awaitable[list[dict[str, Any]]]]


async def _run_alone(sql: str, params: list[Any], *, key: int) -> list[dict[str, Any]]:
    return await Video._meta.db.execute_query_dict(sql, params)


def _video_sets(fields: Mapping[str, Any], p: dialect.Params) -> list[str]:
    check_fields(fields)
    columns = Video._meta.fields_db_projection
    return [f"{columns[name]} = {p(value)}" for name, value in fields.items()]


@functools.lru_cache(maxsize=256)
def _pg_finish_sql(columns: tuple[str, ...], requeue: bool, webhook: bool) -> str:
    """:func:`finish`'s PostgreSQL statement for the plain columns ``columns`` (in that
    order), built once per shape: a worker ends thousands of attempts with the same few
    shapes, and building the text each time cost more Python than sending it. Its
    parameters: the columns' values, then ``to``, the time, the video id, the attempt, the
    message, the actor, the outcome, the error code, the error message, ``retryable``."""
    p = dialect.Params(postgres=True)
    sets = _video_sets(dict.fromkeys(columns), p)
    status, note = "{to}", "{message}"
    if requeue:
        status = "CASE WHEN cancel_requested THEN 'canceled' ELSE {to} END"
        note = f"CASE WHEN status = 'canceled' THEN '{CANCELED_INSTEAD}' ELSE {{message}} END"
    sql = (
        f"WITH v AS (UPDATE videos SET status = {status}, version = version + 1,"
        " updated_at = {at}, {sets} WHERE id = {id} AND attempt = {attempt}"
        f" AND {still_processing()} RETURNING {{cols}}),"
        " h AS (INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
        " version, at, message, actor) SELECT id, owner_id, 'processing', status, version,"
        f" {{at}}, {note}, {{actor}} FROM v RETURNING id),"
        " a AS (UPDATE video_attempts SET outcome = {outcome}, finished_at = clock_timestamp(),"
        " error_code = {code}, error_message = {error}, retryable = {retryable}"
        " WHERE video_id = {id} AND attempt = {attempt} AND EXISTS (SELECT 1 FROM v))"
        f"{_OUTBOX if webhook else ''}"
        " SELECT v.*, h.id AS event_id FROM v, h"
    )
    # Placeholders are numbered in the order they are made; reuse them by name.
    names = ("to", "at", "id", "attempt", "message", "actor", "outcome", "code", "error")
    named = {name: p(None) for name in (*names, "retryable")}
    return sql.format(sets=", ".join(sets), cols=_returning(webhook), **named)


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
    webhook: bool = True,
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
        webhook: False when the caller knows the video has no webhook URL (its claim
            said so, :attr:`JobSpec.webhook_url`): PostgreSQL's statement then leaves out
            the outbox insert (:mod:`.outbox`), which costs a little even when it inserts
            nothing.

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
        rows = await (runner or _run_alone)(
            _pg_finish_sql(tuple(values), to is S.QUEUED, webhook),
            [
                *(v.value if isinstance(v, enum.Enum) else v for v in values.values()),
                to.value,
                stamp,
                video_id,
                attempt,
                message,
                actor,
                AttemptOutcome(outcome).value,
                error_code,
                error_message,
                retryable,
            ],
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
                f" AND status = 'processing' RETURNING {EVENT_COLUMNS}, webhook_url",
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
            if row["webhook_url"] is not None:
                await outbox.record(tx, video_id, history[0]["id"], stamp)
            await tx.execute_query(
                "UPDATE video_attempts SET outcome = ?, finished_at = ?, error_code = ?,"
                " error_message = ?, retryable = ? WHERE video_id = ? AND attempt = ?",
                [outcome.value, stamp, error_code, error_message, retryable, video_id, attempt],
            )
        event_id = history[0]["id"]
    final = VideoStatus(row["status"])
    event = event_from_row(row, event_id)
    change = Change(video_id, S.PROCESSING, final, row["version"], event)
    await publish(bus, [change.event])
    return change


_PG_STORE_PREDICTION_SQL = (
    "WITH v AS (UPDATE videos SET prediction_id = $1, version = version + 1,"
    f" updated_at = $2 WHERE id = $3 AND attempt = $4 AND {still_processing()}"
    f" RETURNING {EVENT_COLUMNS}, {STATE_COLUMNS}),"
    " a AS (UPDATE video_attempts SET prediction_id = $1 WHERE video_id = $3"
    " AND attempt = $4 AND EXISTS (SELECT 1 FROM v))"
    " SELECT * FROM v"
)
# The same for many jobs at once (the group writer's batch: vidgen.jobs.writer).
_PG_STORE_PREDICTIONS = (
    "WITH j AS (SELECT * FROM unnest($1::varchar[], $2::timestamptz[], $3::int[], $4::int[])"
    " AS j(pid, at, vid, att)),"
    # Locked in id order first, as every statement changing many job rows does.
    " l AS (SELECT q.id FROM videos AS q JOIN j ON q.id = j.vid WHERE q.attempt = j.att"
    f" AND {still_processing('q')} ORDER BY q.id FOR UPDATE OF q),"
    " v AS (UPDATE videos SET prediction_id = j.pid, version = videos.version + 1,"
    " updated_at = j.at FROM j, l WHERE videos.id = j.vid AND l.id = videos.id"
    f" AND videos.attempt = j.att AND {still_processing('videos')} RETURNING "
    + ", ".join(f"videos.{c.strip()}" for c in f"{EVENT_COLUMNS}, {STATE_COLUMNS}".split(","))
    + "),"
    " a AS (UPDATE video_attempts AS t SET prediction_id = j.pid FROM j JOIN v ON v.id = j.vid"
    " WHERE t.video_id = j.vid AND t.attempt = j.att)"
    " SELECT * FROM v"
)
_PG_STORE_PREDICTION = writer.combinable(_PG_STORE_PREDICTION_SQL, _PG_STORE_PREDICTIONS)
# A prediction still running: the job's next step is a poll floor away, so nothing waits on
# this write's latency and two or more of them go as one statement (a worker submitting
# hundreds of jobs sends a statement per batch, not per job).
_PG_STORE_RUNNING_PREDICTION = writer.combinable(
    _PG_STORE_PREDICTION_SQL + " -- running", _PG_STORE_PREDICTIONS, min_rows=2
)


async def store_prediction(
    video_id: int,
    attempt: int,
    prediction_id: str | None,
    *,
    bus: EventBus | None = None,
    runner: Runner | None = None,
    running: bool = False,
) -> VideoEvent:
    """Keep a running job's prediction id on the video and its attempt row, fenced.

    One statement on PostgreSQL. Call it as soon as the provider accepted the submission:
    a job rescued after this point resumes the prediction instead of paying for a new one.
    ``runner`` sends the PostgreSQL statement as in :func:`finish`. ``running``: the
    prediction is still running (nothing of the job waits on this write soon), so the
    group writer combines it with others from two up.

    Raises:
        StaleAttempt: the video is no longer processing under this attempt (nothing written).
    """
    stamp = now()
    if dialect.is_postgres():
        rows = await (runner or _run_alone)(
            _PG_STORE_RUNNING_PREDICTION if running else _PG_STORE_PREDICTION,
            [prediction_id, stamp, video_id, attempt],
            key=video_id,
        )
    else:
        async with in_transaction() as tx:
            rows = await tx.execute_query_dict(
                "UPDATE videos SET prediction_id = ?, version = version + 1, updated_at = ?"
                " WHERE id = ? AND attempt = ? AND status = 'processing'"
                f" RETURNING {EVENT_COLUMNS}, {STATE_COLUMNS}",
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
    event = event_from_row(rows[0], None)
    await publish(bus, [event])
    return event
