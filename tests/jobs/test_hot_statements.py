"""The hot path's statements as PostgreSQL gets them: the claim reaches the claimed rows by
their key, and the end of an attempt is built once per shape yet writes each job's values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.jobs.conftest import make_video
from vidgen import dialect
from vidgen.jobs import lifecycle, queue
from vidgen.jobs.lifecycle import claim as claim_module
from vidgen.jobs.lifecycle import fenced
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent

S = VideoStatus


@pytest.mark.postgres_only
async def test_the_claim_updates_the_picked_rows_by_primary_key(db, user) -> None:
    """The claim's UPDATE finds the picked rows through the primary key: joined to the pick
    instead, the planner scanned every queued row (or the whole table) on each claim."""
    await Video.bulk_create(
        [Video(owner=user, prompt="p", provider="test", resolution="64x64") for _ in range(1000)],
        batch_size=500,
    )
    conn = Video._meta.db
    await conn.execute_script("ANALYZE videos")
    stamp = lifecycle.now()
    pick, params = queue._pick_sql(limit=8, stamp=stamp, providers=["test"], excluded=())
    sql = claim_module._pg_claim_sql(pick, len(params))
    lease = stamp + dt.timedelta(seconds=60)
    plan = "\n".join(
        row["QUERY PLAN"]
        for row in await conn.execute_query_dict("EXPLAIN " + sql, [*params, "w", lease, stamp])
    )
    update = plan[plan.index("Update on videos v") :]
    assert "Index Scan using videos_pkey on videos v" in update, plan
    assert "Seq Scan on videos v" not in update, plan
    # The claim itself still takes the head of the queue.
    jobs = await queue.claim(worker_id="w", limit=8, lease_seconds=60)
    first = await Video.all().order_by("id").limit(8).values_list("id", flat=True)
    assert sorted(j.video_id for j in jobs) == list(first)


def _former_finish_sql(
    values: dict[str, Any],
    to: VideoStatus,
    stamp: dt.datetime,
    video_id: int,
    attempt: int,
    message: str | None,
    actor: str,
    outcome: AttemptOutcome,
    error_code: str | None,
    error_message: str | None,
    retryable: bool | None,
    webhook: bool,
) -> tuple[str, list[Any]]:
    """finish()'s statement as it was built on every call before it was cached by shape."""
    p = dialect.Params(postgres=True)
    sets = fenced._video_sets(values, p)
    status, note = "{to}", "{message}"
    if to is S.QUEUED:
        status = "CASE WHEN cancel_requested THEN 'canceled' ELSE {to} END"
        instead = fenced.CANCELED_INSTEAD
        note = f"CASE WHEN status = 'canceled' THEN '{instead}' ELSE {{message}} END"
    sql = (
        f"WITH v AS (UPDATE videos SET status = {status}, version = version + 1,"
        " updated_at = {at}, {sets} WHERE id = {id} AND attempt = {attempt}"
        " AND status || '' = 'processing' RETURNING {cols}),"
        " h AS (INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
        " version, at, message, actor) SELECT id, owner_id, 'processing', status, version,"
        f" {{at}}, {note}, {{actor}} FROM v RETURNING id),"
        " a AS (UPDATE video_attempts SET outcome = {outcome}, finished_at = clock_timestamp(),"
        " error_code = {code}, error_message = {error}, retryable = {retryable}"
        " WHERE video_id = {id} AND attempt = {attempt} AND EXISTS (SELECT 1 FROM v))"
        f"{fenced._OUTBOX if webhook else ''}"
        " SELECT v.*, h.id AS event_id FROM v, h"
    )
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
    return sql.format(sets=", ".join(sets), cols=fenced._returning(webhook), **named), p.values


@pytest.mark.postgres_only
@pytest.mark.parametrize("webhook", [False, True])
@pytest.mark.parametrize(
    ("to", "outcome", "fields"),
    [
        (S.COMPLETED, AttemptOutcome.SUCCEEDED, {"codec": "h264", "width": 64}),
        (S.QUEUED, AttemptOutcome.RETRY, {"error_message": "x", "processed_by": None}),
        (S.FAILED, AttemptOutcome.FAILED, {"prediction_id": None}),
        (S.CANCELED, AttemptOutcome.CANCELED, {}),
    ],
)
async def test_the_cached_finish_statement_is_the_one_built_per_call_before(
    db, user, monkeypatch, to, outcome, fields, webhook
) -> None:
    """Differential: for each shape, the statement and parameters that finish() sends are
    exactly those it built on every call before, and each job's row gets its own values."""
    jobs = []
    for _ in range(2):
        await make_video(user)
    jobs = await queue.claim(worker_id="w", limit=2, lease_seconds=30)
    sent: list[tuple[str, list[Any]]] = []
    stamps: list[dt.datetime] = []
    real_now = fenced.now

    def now() -> dt.datetime:
        stamps.append(real_now())
        return stamps[-1]

    async def runner(sql: str, params: list[Any], *, key: int) -> list[dict[str, Any]]:
        sent.append((sql, params))
        return await Video._meta.db.execute_query_dict(sql, params)

    monkeypatch.setattr(fenced, "now", now)
    for n, job in enumerate(jobs):
        own = {k: (f"{v}-{n}" if isinstance(v, str) else v) for k, v in fields.items()}
        change = await lifecycle.finish(
            job.video_id,
            job.attempt,
            to,
            outcome,
            actor="worker:w",
            message=f"note {n}",
            fields=own,
            error_code="code" if to is S.FAILED else None,
            error_message=f"error {n}" if to is S.FAILED else None,
            retryable=False if to is S.FAILED else None,
            runner=runner,
            webhook=webhook,
        )
        values: dict[str, Any] = dict(own)
        if to is S.COMPLETED:
            values.setdefault("completed_at", stamps[-1])
            values.setdefault("progress", 1.0)
        values.setdefault("lease_expires_at", None)
        expected = _former_finish_sql(
            values,
            to,
            stamps[-1],
            job.video_id,
            job.attempt,
            f"note {n}",
            "worker:w",
            outcome,
            "code" if to is S.FAILED else None,
            f"error {n}" if to is S.FAILED else None,
            False if to is S.FAILED else None,
            webhook,
        )
        assert sent[-1] == expected
        video = await Video.get(id=job.video_id)
        assert (video.status, video.version) == (change.to_status, change.version)
        for name, value in own.items():
            assert getattr(video, name) == value
        event = await VideoStatusEvent.get(id=change.event.event_id)
        assert (event.video_id, event.message) == (job.video_id, f"note {n}")
        row = await VideoAttempt.get(video_id=job.video_id, attempt=job.attempt)
        assert row.outcome == outcome
        assert row.error_message == (f"error {n}" if to is S.FAILED else None)
    assert sent[0][0] == sent[1][0]  # one statement text for the shape: one prepared statement


@pytest.mark.postgres_only
async def test_writes_to_running_jobs_use_the_key_when_statistics_predate_a_burst(db, user) -> None:
    """A fenced write to one running job (its prediction id, its end, a progress batch)
    reaches the row by its primary key even when the table's statistics are from before a
    burst of claims: then the partial indexes of running jobs look empty, and the planner
    used to scan one of them, filtering every running job by id (O(jobs in flight) per
    write until the next ANALYZE)."""
    await Video.bulk_create(
        [
            Video(owner=user, prompt="p", provider="test", resolution="64x64", status=S.COMPLETED)
            for _ in range(1200)
        ],
        batch_size=600,
    )
    conn = Video._meta.db
    await conn.execute_script("ANALYZE videos")  # no job running yet
    ids = list(await Video.all().order_by("id").limit(1000).values_list("id", flat=True))
    await Video.filter(id__in=ids).update(status=S.PROCESSING, processed_by="w", attempt=1)
    stamp = lifecycle.now()
    target = ids[500]
    finish_values: dict[str, Any] = {"progress": 1.0, "lease_expires_at": None}
    statements: dict[str, tuple[str, list[Any]]] = {
        "prediction id": (fenced._PG_STORE_PREDICTION_SQL, ["pid", stamp, target, 1]),
        "prediction ids": (
            fenced._PG_STORE_PREDICTIONS,
            [["a", "b"], [stamp, stamp], [target, ids[501]], [1, 1]],
        ),
        "end": (
            fenced._pg_finish_sql(tuple(finish_values), False, False),
            [1.0, None, "completed", stamp, target, 1, "done", "w", "succeeded", None, None, None],
        ),
    }
    for name, (sql, params) in statements.items():
        await conn.execute_script("SET plan_cache_mode = force_generic_plan")
        try:
            rows = await conn.execute_query_dict("EXPLAIN " + sql, params)
        finally:
            await conn.execute_script("RESET plan_cache_mode")
        plan = "\n".join(row["QUERY PLAN"] for row in rows)
        assert "videos_pkey on videos" in plan, (name, plan)
        assert "idx_videos_running" not in plan and "idx_videos_worker" not in plan, (name, plan)
