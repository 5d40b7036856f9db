"""Group commit for the hot path: the fenced single-row writes of a worker's concurrent jobs.

Each running job ends with one fenced statement (store its prediction id, end its attempt).
Sent one by one, every statement pays its own round trip, a pool checkout and a commit (a
WAL flush). The :class:`GroupWriter` sends what its jobs asked for meanwhile as ONE
pipelined batch (``fetchmany``: one round trip, one transaction) per statement shape::

    job ─┐                      ┌─ flush: statements waiting now, grouped by SQL,
    job ─┼─▶ run(sql, params) ─▶│  one fetchmany each; rows handed back by video id
    job ─┘   (awaits its rows)  └─ the next batch forms while this one runs

A statement registered with :func:`combinable` (the prediction id's write) goes further: a
batch of :data:`MIN_COMBINED` or more of it (two or more, for a write that nothing waits on
soon: the id of a prediction still running) is ONE statement over arrays (``unnest``), not
one statement per job.

There is no timer: the first request is sent at once, and the ones that arrive while it is
in flight make the next batch, so an idle worker adds no latency and a busy one amortises.
The writer keeps its pool connection while batches keep coming (no wait for a free
connection between batches, however busy the pool is) and gives it back as soon as nothing
is waiting. A release itself costs no round trip: ``vidgen.db`` turns asyncpg's reset off.
Each statement stays fenced on its own row: a stale job gets no row back (StaleAttempt for
that job alone). A transient error goes to every waiter (each one retries); any other error
makes the writer run that batch's statements one by one, so one bad row fails only its job.
PostgreSQL only: SQLite serialises writers anyway and runs statements directly.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from vidgen import dialect
from vidgen.jobs import transient
from vidgen.models import Video

logger = logging.getLogger(__name__)

MAX_BATCH = 64

# A batch this big or bigger of a statement that has a combined form goes as that one
# statement; a smaller one as a pipelined batch, which the database runs faster than the
# combined form's arrays and joins when there are only a few rows.
MIN_COMBINED = 16

# Statements that have a form for many rows at once (:func:`combinable`): sql → (that form,
# the fewest requests sent as it).
_COMBINED: dict[str, tuple[str, int]] = {}


def combinable(sql: str, combined: str, *, min_rows: int = MIN_COMBINED) -> str:
    """Register ``combined``, the change of ``sql`` for many rows as ONE statement: its k-th
    parameter is the array of every request's k-th value, and it returns the rows that
    matched (each with its ``id``). A batch of ``min_rows`` or more such requests is then
    sent as that one statement instead of one statement per request (a worker with hundreds
    of jobs in flight stores their prediction ids together). A write that nothing waits on
    soon can take ``min_rows=2``: fewer statements, for a little more time in the database
    than a small pipelined batch. Returns ``sql``."""
    _COMBINED[sql] = (combined, max(2, min_rows))
    return sql


@dataclass
class _Request:
    sql: str
    params: list[Any]
    key: int
    future: asyncio.Future[list[dict[str, Any]]] = field(repr=False)


class GroupWriter:
    """Batches fenced single-row statements of one worker's jobs (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # flushed batches (for tests and tuning)
        self.statements = 0
        self.combined = 0  # batches sent as one combined statement

    async def run(self, sql: str, params: list[Any], *, key: int) -> list[dict[str, Any]]:
        """Run ``sql`` (returning at most one row, with an ``id`` column equal to ``key``).

        Returns:
            The row as ``[dict]``, or ``[]`` when the statement matched nothing.
        """
        if not dialect.is_postgres():
            return await Video._meta.db.execute_query_dict(sql, params)
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(sql, params, key, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    @property
    def in_flight(self) -> asyncio.Task[None] | None:
        """The task sending batches, while it runs (wait for it before closing the database)."""
        if self._flusher is not None and not self._flusher.done():
            return self._flusher
        return None

    async def _flush(self) -> None:
        conn = Video._meta.db
        while self._pending:
            # One connection for as long as batches keep coming: the next batch never waits
            # behind other statements (claims, heartbeats) for a free pool connection.
            try:
                async with conn.acquire_connection() as connection:
                    while self._pending:
                        if not await self._send_batch(connection):
                            break  # get a fresh connection for what came meanwhile
            except Exception as exc:
                # No connection to be had (the database is down): every waiter gets the error
                # and retries on its own (see vidgen.jobs.transient), none waits forever.
                waiting, self._pending = self._pending, []
                for request in waiting:
                    _settle(request, exc=exc)

    async def _send_batch(self, connection: Any) -> bool:
        """Send the next batch, one ``fetchmany`` per statement shape; False when the
        connection may be broken."""
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        batch = [r for r in batch if not r.future.done()]  # its job was canceled
        groups: dict[str, list[_Request]] = {}
        # In id order: every statement that changes many job rows at once locks them in
        # that order (the heartbeat, progress), so no two of them can deadlock.
        for request in sorted(batch, key=lambda r: r.key):
            groups.setdefault(request.sql, []).append(request)
        healthy = True
        for sql, requests in groups.items():
            healthy = await self._send(connection, sql, requests) and healthy
        return healthy

    async def _send(self, connection: Any, sql: str, requests: list[_Request]) -> bool:
        """Send one batch and settle its requests; False when the connection may be broken."""
        conn = Video._meta.db
        combined, min_rows = _COMBINED.get(sql, (None, 0))
        if combined is not None and len(requests) >= min_rows:
            columns = [list(values) for values in zip(*(r.params for r in requests), strict=True)]
            try:
                records = await connection.fetch(combined, *columns)
            except Exception as exc:
                if transient.is_transient(exc):
                    for request in requests:
                        _settle(request, exc=exc)
                    return False
                # Not a blink (one bad value?): the batch below, then one by one.
                logger.warning(
                    "combined write failed; sending its statements as a batch",
                    extra={"action": "writer.split", "count": len(requests), "error": repr(exc)},
                )
            else:
                self.batches += 1
                self.statements += 1
                self.combined += 1
                by_key = {record["id"]: dict(record) for record in records}
                for request in requests:
                    row = by_key.get(request.key)
                    _settle(request, rows=[row] if row is not None else [])
                return True
        try:
            records = await connection.fetchmany(sql, [r.params for r in requests])
        except Exception as exc:
            if transient.is_transient(exc) or len(requests) == 1:
                for request in requests:
                    _settle(request, exc=exc)
                return not transient.is_transient(exc)
            logger.warning(
                "batched write failed; running its statements one by one",
                extra={"action": "writer.split", "count": len(requests), "error": repr(exc)},
            )
            for request in requests:
                try:
                    rows = await conn.execute_query_dict(sql, request.params)
                except Exception as single:
                    _settle(request, exc=single)
                else:
                    _settle(request, rows=rows)
            return True
        self.batches += 1
        self.statements += len(requests)
        by_key = {record["id"]: dict(record) for record in records}
        for request in requests:
            row = by_key.get(request.key)
            _settle(request, rows=[row] if row is not None else [])
        return True


def _settle(
    request: _Request,
    *,
    rows: list[dict[str, Any]] | None = None,
    exc: BaseException | None = None,
) -> None:
    if request.future.done():
        return
    if exc is not None:
        request.future.set_exception(exc)
    else:
        request.future.set_result(rows or [])
