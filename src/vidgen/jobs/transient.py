"""Riding out database outages: which errors mean "the database blinked", and the backoff.

A PostgreSQL restart, a failover or a terminated backend surfaces in many shapes: Tortoise's
``DBConnectionError``, asyncpg's connection errors (``ConnectionDoesNotExistError``,
``CannotConnectNowError``, ``AdminShutdownError``, ``InterfaceError`` on a closed connection,
``InternalClientError`` on one terminated mid-statement),
or plain ``OSError``/``ConnectionRefusedError`` from a reconnect, sometimes wrapped in
Tortoise's ``OperationalError``. :func:`is_transient` is the one place that tells them apart
from real errors; the worker's loops and the pipeline retry those with
:func:`vidgen.backoff.delay` and never fail a job because of them. A fenced write that
finally lands after a long outage may find the job swept meanwhile: that is
:class:`~vidgen.jobs.lifecycle.StaleAttempt`, and the attempt just stops.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from tortoise.exceptions import DBConnectionError, OperationalError

from vidgen import backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ASYNCPG_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # ConnectionDoesNotExist, ConnectionFailure...
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 cannot connect
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed", "pool is closing"
    # "cannot switch to state …; another operation is in progress": a connection that the
    # server terminated under a running statement. The pool discards it on release.
    asyncpg.exceptions.InternalClientError,
)
_SQLITE_BUSY = ("database is locked", "database table is locked", "disk i/o error")
# 55000 from a database whose connections are switched off for a while (ALTER DATABASE …
# ALLOW_CONNECTIONS false, as during maintenance): the same wait as a refused connection.
_PG_NOT_ACCEPTING = "is not currently accepting connections"


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) means the database is briefly unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (DBConnectionError, *_ASYNCPG_TRANSIENT, OSError, EOFError)):
            return True
        if isinstance(
            current, asyncpg.exceptions.ObjectNotInPrerequisiteStateError
        ) and _PG_NOT_ACCEPTING in str(current):
            return True
        if isinstance(current, sqlite3.OperationalError | OperationalError) and any(
            text in str(current).lower() for text in _SQLITE_BUSY
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    extra: dict[str, Any] | None = None,
    cap: float = backoff.CAP_SECONDS,
) -> T:
    """Run ``operation`` until it does not fail with a transient database error.

    Every other exception (StaleAttempt included) propagates at once. Cancellation stops it.

    Args:
        operation: makes a fresh awaitable per try (e.g. ``lambda: lifecycle.finish(...)``).
        what: names the operation in the logs.
        extra: structured log fields (job, video, worker ids).
        cap: the longest pause between two tries.
    """
    failures = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = backoff.delay(failures, cap=cap)
            failures += 1
            logger.warning(
                "database unavailable; retrying",
                extra={
                    **(extra or {}),
                    "action": "db.retry",
                    "operation": what,
                    "attempt": failures,
                    "delay": round(delay, 3),
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            await asyncio.sleep(delay)


#: The least pause after a loop step failed with a real (not transient) error.
ERROR_BACKOFF_SECONDS = 1.0


def loop_failed(what: str, exc: Exception, failures: int, worker_id: str) -> float:
    """Log a failed step of a worker's loop (``failures`` before it in a row); returns how
    long to back off before the next one: the backoff of a transient error, at least
    :data:`ERROR_BACKOFF_SECONDS` after any other (logged with its traceback)."""
    if is_transient(exc):
        delay = backoff.delay(failures)
        logger.warning(
            f"{what} failed: database unavailable; retrying",
            extra={
                "action": "db.retry",
                "operation": what,
                "worker_id": worker_id,
                "attempt": failures + 1,
                "delay": round(delay, 3),
                "error": f"{type(exc).__name__}: {exc}",
            },
        )
        return delay
    logger.exception(f"{what} failed", extra={"worker_id": worker_id})
    return max(ERROR_BACKOFF_SECONDS, backoff.delay(failures))
