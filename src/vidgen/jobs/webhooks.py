"""Provider webhooks: route a verified callback to the worker running its job.

Nothing is written: the nudge on the job's channel makes the worker poll the provider as
soon as its minimum poll interval allows, and the poll stays the one source of truth.
Replayed deliveries are dropped here (per API process) and by the job (per job).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from vidgen import dialect
from vidgen.events import channels
from vidgen.events.bus import EventBus, PublishFailed, publish_or_raise
from vidgen.events.channels import job_channel
from vidgen.jobs import transient
from vidgen.models import Video
from vidgen.providers.base import WebhookEvent

logger = logging.getLogger(__name__)

# Delivery ids remembered per process to drop replays: at a few hundred bytes each, about
# 2 MB. Providers re-send within minutes to hours (fal: 10 tries over 2 h), far fewer
# deliveries than this arrive in between on one API process.
MAX_REMEMBERED_DELIVERIES = 10_000


class RecentDeliveries:
    """The last ``limit`` webhook deliveries seen, by (provider, prediction, delivery id).

    Memory is bounded: the oldest entries are forgotten first (a replay that old only
    costs one extra nudge, which the poll floor makes harmless anyway).
    """

    def __init__(self, limit: int = MAX_REMEMBERED_DELIVERIES) -> None:
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, provider: str, prediction_id: str, delivery_id: str) -> bool:
        """Remember the delivery; False when it was already seen for that prediction."""
        if self.seen(provider, prediction_id, delivery_id):
            return False
        self.remember(provider, prediction_id, delivery_id)
        return True

    def seen(self, provider: str, prediction_id: str, delivery_id: str) -> bool:
        """True when the delivery was already remembered for that prediction."""
        key = (provider, prediction_id, delivery_id)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def remember(self, provider: str, prediction_id: str, delivery_id: str) -> None:
        """Remember a delivery as handled (its replays are then ignored)."""
        self._seen[(provider, prediction_id, delivery_id)] = None
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)


_deliveries = RecentDeliveries()


class LookupUnavailable(Exception):
    """A webhook's prediction could not be looked up: the database is unreachable."""


# The newest video of a provider that holds a prediction id, found through the attempt rows
# (their partial index, migration 0005), which carry every prediction id a job ever had:
# indexing it on the video instead would make the write that stores it (one per job) touch
# every index of the video row. The video must still hold that prediction.
_PREDICTION_LOOKUP = (
    "SELECT v.id FROM videos AS v WHERE v.id IN (SELECT a.video_id FROM video_attempts AS a"
    " WHERE a.prediction_id = {pid}) AND v.provider = {provider} AND v.prediction_id = {pid}"
    " ORDER BY v.id DESC LIMIT 1"
)


def prediction_lookup(provider: str, prediction_id: str) -> tuple[str, list[Any]]:
    """The webhook's lookup of a prediction's video: the SQL and its parameters."""
    if dialect.is_postgres():  # numbered placeholders: the prediction id's is used twice
        return _PREDICTION_LOOKUP.format(pid="$1", provider="$2"), [prediction_id, provider]
    sql = _PREDICTION_LOOKUP.format(pid="?", provider="?")
    return sql, [prediction_id, provider, prediction_id]


async def notify_webhook(
    *,
    provider: str,
    event: WebhookEvent,
    bus: EventBus | None,
    deliveries: RecentDeliveries | None = None,
) -> int | None:
    """Route a verified provider callback to the job it is about.

    Finds the video by ``(provider, prediction_id)`` and nudges its worker on the job
    channel, passing the callback's state so the pipeline polls as soon as the provider's
    minimum poll interval allows. Nothing is written: the worker's poll is the one source of
    truth. A delivery id already seen for the same prediction (a replay, or the provider
    re-sending) is dropped without a nudge. A delivery id counts as seen only once its
    nudge is published: when the bus is down the provider is asked to retry (the caller
    answers 503 on :class:`~vidgen.events.bus.PublishFailed`), and that retry is let through.

    Args:
        provider: The provider's name.
        event: The verified delivery.
        bus: The event bus (None: nothing to nudge).
        deliveries: Where seen delivery ids are remembered (default: this process's).

    Returns:
        The video id (also for an ignored duplicate), or None when no video has that
        prediction (logged, not an error).

    Raises:
        PublishFailed: the nudge could not be published (the event bus is unreachable);
            logged here, and the delivery is not remembered.
        LookupUnavailable: the prediction could not be looked up (the database is
            unreachable); the delivery is not remembered.
    """
    try:
        sql, params = prediction_lookup(provider, event.prediction_id)
        found = [row["id"] for row in await Video._meta.db.execute_query_dict(sql, params)]
    except Exception as exc:
        if transient.is_transient(exc):
            raise LookupUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise
    video_id = found[0] if found else None
    if video_id is None:
        logger.info(
            "webhook for an unknown prediction",
            extra={
                "action": "webhook.unknown",
                "provider": provider,
                "prediction_id": event.prediction_id,
            },
        )
        return None
    seen = deliveries if deliveries is not None else _deliveries
    if event.delivery_id:
        if seen.seen(provider, event.prediction_id, event.delivery_id):
            logger.info(
                "webhook delivery already seen; ignored",
                extra={
                    "action": "webhook.duplicate",
                    "provider": provider,
                    "prediction_id": event.prediction_id,
                    "delivery_id": event.delivery_id,
                },
            )
            return int(video_id)
    message: dict[str, Any] = {"type": channels.WEBHOOK, "prediction_id": event.prediction_id}
    if event.result is not None:
        message["state"] = event.result.state.value
    if event.delivery_id:
        message["delivery_id"] = event.delivery_id
    if bus is not None:
        try:
            await publish_or_raise(bus, job_channel(int(video_id)), message)
        except PublishFailed as exc:
            logger.warning(
                "webhook not delivered: the event bus is unreachable (%s); the provider is "
                "asked to retry, and the job polls meanwhile",
                exc,
                extra={
                    "action": "webhook.undelivered",
                    "provider": provider,
                    "video_id": video_id,
                    "delivery_id": event.delivery_id,
                },
            )
            raise
    if event.delivery_id:
        # Only now: two copies of one delivery racing here both nudge, which is harmless.
        seen.remember(provider, event.prediction_id, event.delivery_id)
    logger.info(
        "webhook delivered",
        extra={"action": "webhook.delivered", "provider": provider, "video_id": video_id},
    )
    return int(video_id)
