"""What the API layer asks of the job engine: cancel, retry, wake the workers, route webhooks.

These are the only job operations the GraphQL and web layers call; every status change still
goes through :mod:`vidgen.jobs.lifecycle`. Owner scoping is the caller's job (the videos
service checks the video belongs to the user before calling in here).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from vidgen import dialect, errors
from vidgen.events import channels, messages
from vidgen.events.bus import EventBus, PublishFailed, publish_or_raise
from vidgen.events.channels import job_channel
from vidgen.jobs import lifecycle, transient
from vidgen.models import Video, VideoStatus
from vidgen.providers.base import WebhookEvent

logger = logging.getLogger(__name__)

S = VideoStatus

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


async def request_cancel(video_id: int, *, actor: str | None, bus: EventBus | None) -> Video:
    """Cancel a video's job.

    A queued job is canceled at once. A processing job is flagged (``cancel_requested``) and
    its worker is nudged on the job channel; the worker cancels the provider's prediction and
    records ``canceled`` (within one heartbeat even when the nudge is lost). Asking again
    while the flag is set is harmless.

    Args:
        video_id: the video.
        actor: who asks (``user:12``), kept in the status history.
        bus: the event bus (the change is published after commit).

    Returns:
        The video after the request (``canceled``, or ``processing`` with the flag set).

    Raises:
        NotFound: no such video.
        IllegalTransition: the video is already completed, failed or canceled (CONFLICT).
    """
    # A claim can race a cancel: if the queued job is claimed in between, flag it instead.
    for _ in range(3):
        video = await Video.get_or_none(id=video_id)
        if video is None:
            raise errors.NotFound("video")
        status = S(video.status)
        if status is S.QUEUED:
            try:
                video, _change = await lifecycle.transition(
                    video_id,
                    S.CANCELED,
                    actor=actor,
                    message="canceled",
                    expect=[S.QUEUED],
                    fields={"scheduled_at": None},
                    bus=bus,
                )
                return video
            except (lifecycle.IllegalTransition, lifecycle.StaleAttempt):
                continue
        if status is S.PROCESSING:
            event = await lifecycle.touch(
                video_id, fields={"cancel_requested": True}, status=S.PROCESSING, bus=bus
            )
            if event is None:
                continue
            if bus is not None:
                await bus.publish(job_channel(video_id), {"type": channels.CANCEL})
            logger.info(
                "cancel requested", extra={"action": "job.cancel_requested", "video_id": video_id}
            )
            return await Video.get(id=video_id)
        raise lifecycle.IllegalTransition(
            f"A {status.value} video cannot be canceled.", status=status.value
        )
    raise lifecycle.StaleAttempt(f"video {video_id} kept changing; try again")


async def retry(video_id: int, *, actor: str | None, bus: EventBus | None) -> Video:
    """Re-queue a failed or canceled video with a fresh retry budget.

    Clears the error, the schedule, the cancel flag and the retry/rescue counters, then
    wakes the workers. A failed video keeps a prediction id it still has (the job failed
    for want of reaching the provider, or on a rejected key: the prediction is live), so the
    retry resumes it and pays nothing; a canceled one drops it (that prediction was canceled
    upstream) and submits anew. Failures that make the prediction useless (it failed, or
    its output did) already dropped the id.

    Raises:
        NotFound: no such video.
        IllegalTransition: the video is queued, processing or completed (CONFLICT).
        Conflict: the video is deleted (checked on the locked row, so a concurrent
            deleteVideo either sees the job queued and cancels it, or makes this refuse).
    """
    try:
        video, _change = await lifecycle.transition(
            video_id,
            S.QUEUED,
            actor=actor,
            message="retry requested",
            expect=[S.FAILED, S.CANCELED],
            where={"deleted_at__isnull": True},
            fields=_RETRY_FIELDS,
            fields_if={S.CANCELED: {"prediction_id": None}},
            bus=bus,
        )
    except lifecycle.StaleAttempt as exc:
        raise errors.Conflict("This video is deleted; restore it first.") from exc
    await wake_workers(bus)
    return video


# What retryVideo resets: a fresh budget, no error, due now.
_RETRY_FIELDS: dict[str, Any] = {
    "retry_count": 0,
    "rescue_count": 0,
    "error_message": None,
    "scheduled_at": None,
    "cancel_requested": False,
    "progress": 0.0,
    "processed_by": None,
    "completed_at": None,
}


async def wake_workers(bus: EventBus | None) -> None:
    """Tell idle workers that a job became due (call after the inserting commit)."""
    if bus is not None:
        await bus.publish(*messages.wakeup())


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
