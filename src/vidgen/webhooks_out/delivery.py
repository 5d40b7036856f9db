"""Delivering the outbox: the loop every worker runs, and one event's attempt.

The loop (:meth:`Deliveries.run`) claims due events while it has free slots
(``webhook_concurrency``), runs each attempt in a task of its own, and otherwise sleeps
until an attempt ends (the video's next event may be due then) or ``webhook_poll_seconds``
pass: with no webhook anywhere it costs one indexed statement per poll and per worker,
nothing per job.

An attempt: the body (made at the first attempt and kept, :mod:`.payload`), the owner's
current secret, fresh Standard Webhooks headers (:mod:`.signing`), one POST
(:mod:`.sender`), then its outcome, written even through a database outage (the receiver
has the event; sending it again would be a duplicate): delivered; or tried again after
``webhook_retry_base_seconds``·2ⁿ with equal jitter, at most ``webhook_retry_cap_seconds``
and at least what a ``Retry-After`` asked for; or given up, when the receiver refused it
(3xx, 4xx other than 429, an address not allowed) or when the next attempt would come
later than ``webhook_retry_window_seconds`` after the change. A worker stopping gives its
attempts in flight a moment to end, then hands the others back
(:func:`~vidgen.webhooks_out.outbox.release`); a killed one leaves leases that run out
after the timeout and a margin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from vidgen import backoff, eventloop
from vidgen.jobs import transient
from vidgen.metrics import WEBHOOK_DELIVERIES, WEBHOOK_FAILURES, WEBHOOK_RETRIES
from vidgen.models import WebhookDelivery
from vidgen.runtime import Runtime
from vidgen.webhooks_out import outbox, payload, sender, signing

logger = logging.getLogger(__name__)

#: A claimed event's lease: the attempt's timeout and this, for writing its outcome.
LEASE_MARGIN_SECONDS = 5.0
#: At shutdown, how long the attempts in flight may take to end, then to be handed back.
STOP_GRACE_SECONDS = 2.0
RELEASE_SECONDS = 2.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Deliveries:
    """One process's deliveries (see the module docstring).

    Args:
        runtime: the process's settings (the rest is not used).
        worker_id: names the process in the logs.
    """

    def __init__(self, runtime: Runtime, *, worker_id: str) -> None:
        self.settings = runtime.settings
        self.worker_id = worker_id
        self.http = sender.client(
            concurrency=self.settings.webhook_concurrency,
            timeout=self.settings.webhook_timeout_seconds,
        )
        self._sending: dict[asyncio.Task[None], WebhookDelivery] = {}
        self._wake = asyncio.Event()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run(self) -> None:
        """Deliver until canceled; then hand the attempts in flight back."""
        settings = self.settings
        failures = 0
        try:
            while True:
                self._wake.clear()
                free = settings.webhook_concurrency - len(self._sending)
                if free > 0:
                    try:
                        started = await self._claim(free)
                        failures = 0
                    except Exception as exc:
                        pause = transient.loop_failed(
                            "webhook claim", exc, failures, self.worker_id
                        )
                        failures += 1
                        await asyncio.sleep(pause)
                        continue
                    if started == free:  # as many were due as there were slots: maybe more
                        continue
                await eventloop.wait_event(self._wake, settings.webhook_poll_seconds)
        finally:
            await self._hand_back()

    def _lease_seconds(self) -> float:
        return self.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS

    async def _claim(self, free: int) -> int:
        claimed = await outbox.claim(limit=free, lease_seconds=self._lease_seconds())
        for item in claimed:
            task = asyncio.create_task(self.attempt(item), name=f"webhook {item.row.id}")
            self._sending[task] = item.row
            task.add_done_callback(self._ended)
        return len(claimed)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        self._wake.set()

    async def _hand_back(self) -> None:
        """Let the attempts in flight end for a moment (one whose answer is in records it,
        instead of being sent again), then stop the rest and hand them back."""
        sending = dict(self._sending)
        if sending:
            await asyncio.wait(list(sending), timeout=STOP_GRACE_SECONDS)
        left = [task for task in sending if not task.done()]
        rows = [sending[task] for task in left]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        if rows:
            try:
                async with asyncio.timeout(RELEASE_SECONDS):
                    await outbox.release(rows)
            except Exception:  # noqa: BLE001 - their leases run out instead
                logger.warning("could not hand webhook attempts back", exc_info=True)

    async def attempt(self, item: outbox.Claimed) -> None:
        """One attempt of a claimed event, its outcome recorded (see the module docstring).
        Whatever goes wrong here, the event's lease runs out and it is claimed again."""
        row = item.row
        log = {"video_id": row.video_id, "webhook_id": row.message_id, "attempt": row.attempts}
        try:
            await self._attempt(item, log)
        except Exception as exc:
            transient.loop_failed("webhook attempt", exc, 0, self.worker_id)

    async def _attempt(self, item: outbox.Claimed, log: dict[str, Any]) -> None:
        row = item.row
        body = row.body or await outbox.keep_body(row, payload.body(row, self.settings))
        secret = item.secret or await outbox.ensure_secret(row.owner_id)
        data = body.encode()
        result = await sender.send(
            self.http,
            row.url,
            data,
            signing.headers(secret, row.message_id, int(time.time()), data),
            allow_private=self.settings.webhook_allow_private,
            seconds=self.settings.webhook_timeout_seconds,
        )
        await transient.retrying(
            lambda: self._record(row, result, log), what="webhook outcome", extra=log
        )

    async def _record(
        self, row: WebhookDelivery, result: sender.Result, log: dict[str, Any]
    ) -> None:
        settings = self.settings
        if result.delivered:
            if await outbox.delivered(row):
                WEBHOOK_DELIVERIES.inc()
                logger.info("webhook delivered", extra={**log, "action": "webhook.delivered"})
            return
        error = result.error or "failed"
        if not result.retry:
            if await outbox.give_up(row, error):
                WEBHOOK_FAILURES.labels(reason="refused").inc()
                logger.warning(
                    "webhook refused; not retrying",
                    extra={**log, "action": "webhook.refused", "error": error},
                )
            return
        cap = settings.webhook_retry_cap_seconds
        wait = backoff.delay(row.attempts - 1, base=settings.webhook_retry_base_seconds, cap=cap)
        if result.retry_after is not None:
            wait = max(wait, min(result.retry_after, cap))
        when = _now() + dt.timedelta(seconds=wait)
        window = dt.timedelta(seconds=settings.webhook_retry_window_seconds)
        if when > row.at + window:
            if await outbox.give_up(row, f"{error} (still failing after {_hours(window)})"):
                WEBHOOK_FAILURES.labels(reason="expired").inc()
                logger.warning(
                    "webhook given up", extra={**log, "action": "webhook.expired", "error": error}
                )
            return
        if await outbox.retry_at(row, when, error):
            WEBHOOK_RETRIES.inc()
            logger.info(
                "webhook failed; retrying",
                extra={**log, "action": "webhook.retry", "error": error, "delay": round(wait, 3)},
            )


def _hours(span: dt.timedelta) -> str:
    seconds = span.total_seconds()
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


async def run(runtime: Runtime, *, worker_id: str) -> None:
    """A worker's delivery loop, until canceled."""
    deliveries = Deliveries(runtime, worker_id=worker_id)
    try:
        await deliveries.run()
    finally:
        await deliveries.aclose()
