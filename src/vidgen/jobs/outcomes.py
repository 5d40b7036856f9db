"""How an attempt ends: completed (the pipeline's :func:`finish`), canceled, re-queued with
backoff (a retry, or a provider outage that keeps the budget), or failed for good; each in
one fenced write with its attempt row."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from vidgen.jobs import lifecycle
from vidgen.jobs.job_context import JobContext
from vidgen.jobs.lifecycle import StaleAttempt, now
from vidgen.jobs.retry import OUTAGE_CODES, RetryPolicy, is_outage, is_rate_limited, retries_left
from vidgen.metrics import JOB_DURATION, JOB_RETRIES
from vidgen.models import AttemptOutcome, VideoAttempt, VideoStatus
from vidgen.providers.base import PredictionLost, Provider, ProviderError

if TYPE_CHECKING:
    from vidgen.media.ingest import Stored

logger = logging.getLogger(__name__)

S = VideoStatus


# A job failing for good with one of these keeps its prediction id (the prediction is live,
# the provider was out of reach or refused our key), so retryVideo resumes it; any other
# failure drops it, so retryVideo asks for a new generation.
KEEP_PREDICTION_CODES = OUTAGE_CODES | {
    "auth",
    "provider_unavailable",
    "transient",
    "malformed_response",
}


# Statuses by which a provider refuses a request without accepting it (rate limit, load
# shedding): a submission answered so was not paid for.
REFUSED_STATUSES = frozenset({429, 503})


class DeadPrediction(ProviderError):
    """The prediction itself failed: a retry must submit a new one."""


async def cancel(ctx: JobContext, provider: Provider, prediction_id: str | None) -> AttemptOutcome:
    if prediction_id:
        try:
            await provider.cancel(prediction_id)
        except Exception:  # best effort: the job is canceled for us either way
            logger.warning("provider cancel failed", extra=ctx.log_extra, exc_info=True)
    await finish(ctx, S.CANCELED, AttemptOutcome.CANCELED, message="canceled", fields={})
    logger.info("job canceled", extra={**ctx.log_extra, "action": "job.canceled"})
    return AttemptOutcome.CANCELED


async def fail(ctx: JobContext, error: ProviderError) -> AttemptOutcome:
    """Re-queue with backoff when retryable and the budget allows, else fail for good."""
    try:
        await ctx.settle_pending()  # whether the prediction id is stored decides below
    except (asyncio.CancelledError, StaleAttempt):
        raise
    except Exception as exc:
        # The id's write failed (not a blip: those are retried): the job fails as it did
        # when that write came first, with nothing to resume.
        error = ProviderError(
            f"internal error: {type(exc).__name__}: {exc}", retryable=False, code="internal"
        )
    # The claim's counts are current: only a claim or a sweep changes them, and either one
    # makes this attempt's fenced write below fail.
    spec = ctx.spec or await ctx.read_spec()
    retry_count, max_retries = spec.retry_count, spec.max_retries
    fields: dict[str, Any] = {"error_message": error.message, "processed_by": None}
    dead = isinstance(error, DeadPrediction) or isinstance(error, PredictionLost)
    if dead:
        fields["prediction_id"] = None  # the next attempt must submit a new one
    policy = RetryPolicy.from_settings(ctx.runtime.settings)
    # An outage keeps the budget only where waiting it out cannot pay twice: the job has a
    # prediction to resume, or its submission was surely refused (never connected, 429,
    # 503). A submission that timed out or met a 500/502/504 may have been accepted: those
    # spend the budget as before, which bounds how often it can be paid for.
    refused = error.unsent or error.status_code in REFUSED_STATUSES
    if error.retryable and not dead and is_outage(error.code) and (ctx.prediction_id or refused):
        in_a_row = await _outage_so_far(ctx)
        if in_a_row is not None:
            delay = policy.delay(
                in_a_row, retry_after=error.retry_after, rate_limited=is_rate_limited(error.code)
            )
            fields.update(scheduled_at=now() + dt.timedelta(seconds=delay), progress=0.0)
            message = (
                f"provider outage ({in_a_row + 1} in a row, retry budget kept): "
                f"retry in {delay:.1f}s: {error.message}"
            )
            return await _requeue(ctx, error, fields, message, delay, outage=True)
    if error.retryable and retries_left(retry_count, max_retries):
        delay = policy.delay(
            retry_count, retry_after=error.retry_after, rate_limited=is_rate_limited(error.code)
        )
        fields.update(
            retry_count=retry_count + 1,
            scheduled_at=now() + dt.timedelta(seconds=delay),
            progress=0.0,
        )
        message = f"retry {retry_count + 1}/{max_retries} in {delay:.1f}s: {error.message}"
        return await _requeue(ctx, error, fields, message, delay, outage=False)
    if error.retryable:
        fields["error_message"] = f"{error.message} (gave up after {retry_count} retries)"
    if error.code not in KEEP_PREDICTION_CODES:
        # Failed for good because of the prediction or its output (it failed, its output is
        # unusable or gone, a crash): retryVideo must ask for a new generation. Only a
        # failure to reach the provider (or a rejected key) leaves a live prediction that
        # retryVideo resumes, paying nothing.
        fields["prediction_id"] = None
    await finish(
        ctx,
        S.FAILED,
        AttemptOutcome.FAILED,
        message=fields["error_message"],
        fields=fields,
        error=error,
    )
    logger.info("job failed", extra={**ctx.log_extra, "action": "job.failed", "code": error.code})
    return AttemptOutcome.FAILED


async def _requeue(
    ctx: JobContext,
    error: ProviderError,
    fields: dict[str, Any],
    message: str,
    delay: float,
    *,
    outage: bool,
) -> AttemptOutcome:
    """Back to the queue for another attempt; or, when a cancel was requested while it ran
    (the write makes it ``canceled`` then), stop its live prediction too."""
    # The slot is kept through this write: it may end canceled, and then the prediction is
    # canceled upstream, a provider call.
    change = await finish(
        ctx,
        S.QUEUED,
        AttemptOutcome.RETRY,
        message=message,
        fields=fields,
        error=error,
        frees_slot=False,
    )
    if change.to_status is S.CANCELED:
        await _cancel_quietly(ctx, fields.get("prediction_id", ctx.prediction_id))
        return AttemptOutcome.CANCELED
    logger.info(
        "job will retry",
        extra={**ctx.log_extra, "action": "job.retry", "delay": delay, "outage": outage},
    )
    return AttemptOutcome.RETRY


# How many attempts back the outage count looks: at the backoff cap (300 s by default) six
# hours of outage is about 72 attempts.
MAX_OUTAGE_LOOKBACK = 1000


async def _outage_so_far(ctx: JobContext) -> int | None:
    """Failed attempts in a row just before this one that were provider outages, while the
    first of them is less than ``provider_outage_seconds`` old (None once it is older, or
    when the setting is 0: the failure spends the retry budget)."""
    patience = ctx.runtime.settings.provider_outage_seconds
    if patience <= 0:
        return None
    rows = await ctx.db(
        "read outage",
        lambda: (
            VideoAttempt.filter(video_id=ctx.video_id, attempt__lt=ctx.attempt)
            .order_by("-attempt")
            .limit(MAX_OUTAGE_LOOKBACK)
            .values("outcome", "error_code", "started_at")
        ),
    )
    since = now()
    count = 0
    for row in rows:
        if row["outcome"] != AttemptOutcome.RETRY or not is_outage(row["error_code"]):
            break
        count += 1
        since = row["started_at"] or since
    if (now() - since).total_seconds() >= patience:
        return None
    return count


async def finish(
    ctx: JobContext,
    to: VideoStatus,
    outcome: AttemptOutcome,
    *,
    message: str,
    fields: dict[str, Any],
    error: ProviderError | None = None,
    frees_slot: bool = True,
) -> lifecycle.Change:
    """The attempt's last write: one fenced transition with the attempt row; published after.
    ``frees_slot``: the job does no provider work after it, so its slot is free from now."""
    await ctx.settle_pending()
    # From here on the row may stop being ``processing`` at any moment (the write can commit
    # before its reply arrives): the heartbeat must not take that for a lost lease.
    ctx.finished = True
    if frees_slot:
        ctx.slot_free = True
        if ctx.on_last_write is not None:
            ctx.on_last_write()
    change = await ctx.db(
        f"finish ({to.value})",
        lambda: lifecycle.finish(
            ctx.video_id,
            ctx.attempt,
            to,
            outcome,
            actor=f"worker:{ctx.worker_id}",
            message=message,
            fields=fields,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            retryable=error.retryable if error else None,
            bus=ctx.runtime.bus,
            runner=ctx.runner,
            webhook=ctx.spec is None or ctx.spec.webhook_url is not None,
        ),
    )
    _observe(ctx, outcome)
    return change


async def _cancel_quietly(ctx: JobContext, prediction_id: str | None) -> None:
    """Best effort: cancel the provider's prediction of a job that ended canceled."""
    provider = ctx.runtime.providers.get(ctx.claimed.provider)
    if not prediction_id or provider is None:
        return
    try:
        await provider.cancel(prediction_id)
    except Exception:
        logger.warning("provider cancel failed", exc_info=True, extra=ctx.log_extra)


def _observe(ctx: JobContext, outcome: AttemptOutcome) -> None:
    provider = ctx.claimed.provider
    JOB_DURATION.labels(provider=provider, outcome=outcome.value).observe(
        time.monotonic() - ctx.started
    )
    if outcome is AttemptOutcome.RETRY:
        JOB_RETRIES.labels(provider=provider).inc()


def completed_fields(stored: Stored) -> dict[str, Any]:
    """The columns a completing write sets from a stored output (a provider's or a film's)."""
    info = stored.info
    return {
        "video_file": stored.video_key,
        "thumbnail_file": stored.thumbnail_key,
        "duration_seconds": info.duration_seconds,
        "frame_rate": info.frame_rate,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "file_size": info.file_size or stored.file_size,
        "error_message": None,
    }
