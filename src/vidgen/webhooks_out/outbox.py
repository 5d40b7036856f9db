"""The delivery side of the outbox (:class:`~vidgen.models.WebhookDelivery`): claim what is
due, keep the body sent, and record how each attempt went.

Order per video: only a video's earliest pending event (lowest ``version``) may be claimed,
so its later events wait until that one is delivered or given up, and a claimed one holds
a lease while it is in flight, so at most one event per video is ever on its way. The claim
bumps ``attempts``, which fences the attempt's outcome: a worker whose lease ran out (its
event was claimed again) finds its write matching nothing. A worker killed mid-delivery
leaves a lease that runs out; the event is then claimed again, with the same id and body.

Rows are written by the lifecycle (:mod:`vidgen.jobs.lifecycle.outbox`), never here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from vidgen import db, dialect
from vidgen.models import DeliveryState, User, WebhookDelivery
from vidgen.webhooks_out.signing import new_secret

PENDING = DeliveryState.PENDING.value

# The due events at the head of their video's queue; {lock}: FOR UPDATE … on PostgreSQL.
_PICK = (
    "SELECT d.id FROM webhook_deliveries AS d"
    " WHERE d.state = 'pending' AND d.next_attempt_at <= {now}"
    " AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= {again})"
    " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS e WHERE e.video_id = d.video_id"
    " AND e.state = 'pending' AND e.version < d.version)"
    " ORDER BY d.next_attempt_at, d.id LIMIT {limit}{lock}"
)
_SECRET = "(SELECT u.webhook_secret FROM users AS u WHERE u.id = {t}.owner_id) AS secret"


@dataclass(frozen=True, slots=True)
class Claimed:
    """An event claimed for one attempt (``row.attempts`` counts it) and its owner's secret
    as it is now (a rotated secret signs the next attempt)."""

    row: WebhookDelivery
    secret: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def claim(*, limit: int, lease_seconds: float) -> list[Claimed]:
    """Claim up to ``limit`` due events (oldest due first), each leased for
    ``lease_seconds``, with ``attempts`` bumped."""
    if limit <= 0:
        return []
    stamp = _now()
    # Placeholders made in the order SQLite's statement holds them (its are positional).
    p = dialect.Params()
    lease = p(stamp + dt.timedelta(seconds=lease_seconds))
    now = p(stamp)
    again = now if p.postgres else p(stamp)
    lock = " FOR UPDATE OF d SKIP LOCKED" if p.postgres else ""
    pick = _PICK.format(now=now, again=again, limit=p(limit), lock=lock)
    sets = f"attempts = attempts + 1, lease_expires_at = {lease}"
    if p.postgres:
        sql = (
            f"WITH due AS ({pick}) UPDATE webhook_deliveries AS w SET {sets}"
            f" FROM due WHERE w.id = due.id RETURNING w.*, {_SECRET.format(t='w')}"
        )
    else:  # SQLite serialises writers: no row locks to take
        sql = (
            f"UPDATE webhook_deliveries SET {sets} WHERE id IN ({pick})"
            f" RETURNING *, {_SECRET.format(t='webhook_deliveries')}"
        )
    rows = await WebhookDelivery._meta.db.execute_query_dict(sql, p.values)
    build = db.row_builder(WebhookDelivery)
    claimed = [Claimed(build(row), row["secret"]) for row in rows]
    claimed.sort(key=lambda c: (c.row.next_attempt_at, c.row.id))
    return claimed


async def keep_body(row: WebhookDelivery, body: str) -> str:
    """Store the body of an event's first attempt; returns the body to send (the one stored
    first, should two attempts race after a lease ran out)."""
    p = dialect.Params()
    rows = await WebhookDelivery._meta.db.execute_query_dict(
        f"UPDATE webhook_deliveries SET body = COALESCE(body, {p(body)})"
        f" WHERE id = {p(row.id)} RETURNING body",
        p.values,
    )
    kept = rows[0]["body"] if rows else body
    row.body = kept
    return kept


async def ensure_secret(owner_id: int) -> str:
    """The owner's signing secret, made now if the user has none (users created before
    secrets existed got one from migration 0008; this covers rows written around the ORM)."""
    await User.filter(id=owner_id, webhook_secret__isnull=True).update(webhook_secret=new_secret())
    secret = await User.filter(id=owner_id).values_list("webhook_secret", flat=True)
    return str(secret[0])


def _fenced(row: WebhookDelivery):  # noqa: ANN202 - a Tortoise query set
    return WebhookDelivery.filter(id=row.id, attempts=row.attempts, state=DeliveryState.PENDING)


async def delivered(row: WebhookDelivery) -> bool:
    """The receiver accepted the event. False: the attempt was stale (nothing written)."""
    stamp = _now()
    done = await _fenced(row).update(
        state=DeliveryState.DELIVERED, delivered_at=stamp, lease_expires_at=None
    )
    return bool(done)


async def retry_at(row: WebhookDelivery, when: dt.datetime, error: str) -> bool:
    """The attempt failed; try again at ``when``."""
    done = await _fenced(row).update(next_attempt_at=when, lease_expires_at=None, last_error=error)
    return bool(done)


async def give_up(row: WebhookDelivery, error: str) -> bool:
    """The event will not be delivered; the video's next one may go."""
    done = await _fenced(row).update(
        state=DeliveryState.FAILED, lease_expires_at=None, last_error=error
    )
    return bool(done)


async def release(rows: Sequence[WebhookDelivery]) -> None:
    """Hand attempts back at once (a worker stopping): the events may be claimed again now
    instead of when their leases run out."""
    for row in rows:
        await _fenced(row).update(lease_expires_at=None)
