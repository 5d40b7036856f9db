"""Run one claimed job: provider → storage → probe → thumbnail → one completing transition.

::

    prediction_id set?  ── yes ─▶ poll it (a rescued job never pays twice;
         │                         PredictionLost → forget it and submit again)
         no ─▶ submit ─▶ store prediction_id at once (fenced; when the submission is
                         already done, the result is fetched and the output stored while
                         that write is in flight, committed only once it succeeded)
    poll with the provider's floor, backoff and jitter, woken early by the job channel
    (a cancel at once; a webhook as soon as the provider's minimum poll interval
    since the previous poll allows) ─▶ report progress
    succeeded ─▶ download ─▶ probe + thumbnail (one pass) ─▶ save both ─▶ completed
                 (output URL expired: poll once more for a fresh one, download again)
                 (all metadata, status, history and attempt row in one write)
    failed    ─▶ retryable and budget left: queued, scheduled_at = now + backoff
                 otherwise: failed (error_message holds the last error)

Every write is fenced on the claim's ``attempt``: when the job was swept meanwhile the write
raises :class:`~vidgen.jobs.lifecycle.StaleAttempt` and this attempt stops, touching nothing.

The job's context (:mod:`.job_context`), its request to the provider
(:mod:`.provider_request`), its media stage (:mod:`.media_stage`) and how an attempt ends
(:mod:`.outcomes`) are modules of their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
from typing import Any

from vidgen.events.channels import job_channel
from vidgen.jobs import cpu, film, lifecycle, media_stage, outcomes, provider_request, transient
from vidgen.jobs.finish_estimate import FinishEstimate
from vidgen.jobs.job_context import JobContext, retrieve_error
from vidgen.jobs.lifecycle import JobSpec, StaleAttempt
from vidgen.jobs.outcomes import DeadPrediction
from vidgen.jobs.retry import RetryPolicy, is_rate_limited
from vidgen.media.probe import ProbeError
from vidgen.models import AttemptOutcome, VideoStatus
from vidgen.providers.base import PollResult, PredictionLost, Provider, ProviderError, State
from vidgen.providers.http import OUTPUT_EXPIRED

logger = logging.getLogger(__name__)

S = VideoStatus

POLL_BACKOFF = 1.5
MAX_POLL_ERRORS = 3  # consecutive retryable poll errors tolerated inside one attempt
PROGRESS_STEP = 0.02
POLL_JITTER = 0.2  # each poll's wait: the pace ± 20 %
MIN_ETA_PROGRESS = 0.05  # less progress than this predicts nothing
ETA_MARGIN_SECONDS = 0.5


async def run_job(ctx: JobContext) -> AttemptOutcome | None:
    """Run one claimed job to an outcome; never raises except for cancellation.

    Returns:
        The attempt's outcome, or None when the job was taken away (stale attempt).
    """
    bus = ctx.runtime.bus
    # Cancels and webhooks are handled as they are dispatched: no listener task per job.
    async with bus.subscribe(job_channel(ctx.video_id), on_message=ctx.on_message):
        try:
            try:
                return await _run(ctx)
            except ProviderError as exc:
                return await outcomes.fail(ctx, exc)
            except (asyncio.CancelledError, StaleAttempt):
                raise
            except Exception as exc:
                if transient.is_transient(exc):
                    # A blink that escaped the retries (I/O, not a bug): try again later.
                    logger.warning(
                        "job interrupted by a transient error",
                        extra={**ctx.log_extra, "action": "job.transient", "error": repr(exc)},
                    )
                    error = ProviderError(
                        f"interrupted: {type(exc).__name__}: {exc}",
                        retryable=True,
                        code="transient",
                    )
                else:
                    logger.exception("job crashed", extra={**ctx.log_extra, "action": "job.crash"})
                    error = ProviderError(
                        f"internal error: {type(exc).__name__}: {exc}",
                        retryable=False,
                        code="internal",
                    )
                return await outcomes.fail(ctx, error)
        except StaleAttempt:
            logger.warning("attempt went stale; stopping", extra=ctx.log_extra)
            return None


async def _run(ctx: JobContext) -> AttemptOutcome:
    settings = ctx.runtime.settings
    spec = await ctx.read_spec()
    ctx.spec = spec
    ctx.cancel_requested = ctx.cancel_requested or spec.cancel_requested
    if spec.kind == "film":  # stitched from its clips (docs/films.md), no provider call
        return await film.run_film(ctx)
    provider = ctx.runtime.providers.get(ctx.claimed.provider)
    if provider is None or not provider.available:
        raise ProviderError(
            f"The provider {ctx.claimed.provider!r} is not available on this worker.",
            retryable=False,
            code="provider_unavailable",
        )
    if await ctx.cancel_wanted():
        return await outcomes.cancel(ctx, provider, ctx.claimed.prediction_id)

    prediction_id = ctx.claimed.prediction_id
    result: PollResult | None = None
    first_errors = 0
    if prediction_id:
        logger.info("resuming prediction", extra={**ctx.log_extra, "action": "job.resume"})
        try:
            ctx.polled()
            result = await provider.poll(prediction_id)
        except PredictionLost:
            logger.warning("prediction lost; submitting again", extra=ctx.log_extra)
            prediction_id = None
            await _store_prediction(ctx, None)
        except ProviderError as exc:
            # The provider is not answering yet: wait and poll as the loop below does (same
            # tolerance), rather than spend an attempt on the first error after a rescue.
            least = _tolerable(ctx, exc, 1, RetryPolicy.from_settings(settings))
            result = PollResult(state=State.RUNNING, poll_after=least or None)
            first_errors = 1
    resubmitted = False
    while True:
        if prediction_id is None:
            request = await provider_request.build_request(ctx, spec, provider)
            submission = await provider.submit(request)
            ctx.polled()
            prediction_id = submission.prediction_id
            if submission.state in (State.SUCCEEDED, State.FAILED):
                # Already done: the id's write goes out now, as always, and the result is
                # fetched (and the output stored) while it is in flight; the next database
                # call of this job, at the latest the completing write, waits for it.
                done = ctx.write_done = threading.Event()
                pending = asyncio.create_task(_store_prediction(ctx, prediction_id))
                pending.add_done_callback(functools.partial(ctx.pending_done, done))
                ctx.pending_write = pending
                result = await provider.poll(prediction_id)
            else:
                # A write in flight that this task's cancellation cannot stop (see
                # _settle_pending): a worker shutting down waits for it before it releases
                # the job, or the id would be lost and the next attempt would pay again.
                ctx.pending_write = asyncio.create_task(
                    _store_prediction(ctx, prediction_id, running=True)
                )
                ctx.pending_write.add_done_callback(retrieve_error)
                await ctx.settle_pending()
                result = PollResult(state=submission.state, progress=submission.progress)
        assert result is not None
        try:
            result = await _wait_for_result(
                ctx, provider, prediction_id, result, errors_in_a_row=first_errors
            )
            break
        except PredictionLost:
            if resubmitted:
                raise
            resubmitted = True
            logger.warning("prediction lost; submitting again", extra=ctx.log_extra)
            prediction_id = None
            await _store_prediction(ctx, None)
    if result is None:  # canceled while waiting
        return await outcomes.cancel(ctx, provider, prediction_id)
    try:
        return await _complete(ctx, spec, provider, result, settings)
    except ProviderError as exc:
        if exc.code != OUTPUT_EXPIRED:
            raise
        # The file host refused the output URL (a signed URL expired): the prediction is
        # fine, ask for it again (fresh URLs) and download once more. Failing again, the job
        # is re-queued keeping its prediction, so the next attempt polls instead of paying.
        logger.warning(
            "output URL expired; polling for a fresh one",
            extra={**ctx.log_extra, "action": "job.output_expired", "error": exc.message},
        )
        fresh = await _wait_for_result(
            ctx, provider, prediction_id, PollResult(state=State.RUNNING)
        )
        if fresh is None:
            return await outcomes.cancel(ctx, provider, prediction_id)
        return await _complete(ctx, spec, provider, fresh, settings)


async def _wait_for_result(
    ctx: JobContext,
    provider: Provider,
    prediction_id: str,
    result: PollResult,
    *,
    errors_in_a_row: int = 0,
) -> PollResult | None:
    """Poll until the prediction succeeds (the result), is canceled by us (None) or fails.

    ``errors_in_a_row``: failed polls just before this (a resumed job's first poll).
    """
    if result.state is State.SUCCEEDED:  # already done: the loop's first turn, set-up skipped
        return None if await ctx.cancel_wanted() else result
    caps = provider.capabilities
    policy = RetryPolicy.from_settings(ctx.runtime.settings)
    delay = caps.min_poll_interval
    loop = asyncio.get_running_loop()
    started = loop.time()
    estimate = FinishEstimate()
    last_progress = -1.0
    last_message: str | None = None
    while True:
        if await ctx.cancel_wanted():
            return None
        if result.state is State.SUCCEEDED:
            return result
        if result.state is State.FAILED:
            error = result.error or ProviderError("The prediction failed.", retryable=False)
            raise DeadPrediction(
                error.message,
                retryable=error.retryable,
                code=error.code,
                retry_after=error.retry_after,
                status_code=error.status_code,
            )
        if result.state is State.CANCELED:
            raise DeadPrediction(
                "The provider canceled the prediction.", retryable=False, code="canceled_upstream"
            )
        progressed = (
            result.progress is not None and result.progress - last_progress >= PROGRESS_STEP
        )
        said = result.message is not None and result.message != last_message
        if progressed or said:
            last_progress = result.progress if progressed else last_progress
            last_message = result.message if said else last_message
            progress = result.progress if progressed else None
            message = result.message if said else None
            if ctx.progress is not None:  # the worker's batch: one statement for all its jobs
                # After the job's own write in flight (its prediction id), so the batch's
                # version never overtakes that write's publish (vidgen.jobs.progress).
                await ctx.settle_pending()
                ctx.progress.report(ctx.video_id, ctx.attempt, progress, message)
            else:
                await ctx.db(
                    "report progress",
                    functools.partial(
                        lifecycle.report_progress,
                        ctx.video_id,
                        progress,
                        attempt=ctx.attempt,
                        bus=ctx.runtime.bus,
                        message=message,
                    ),
                )
        # Jittered, so that jobs claimed together do not poll (nor report) together: each
        # wait is drawn from ±POLL_JITTER around the pace, never under the provider's floor.
        pace = delay * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
        now = loop.time()
        aim = estimate.seconds_left(now)
        if aim is None:  # one report so far: its progress over this attempt's wait
            eta = _eta(result.progress, now - started)
            if eta is not None:
                aim = eta * random.uniform(1.05, 1.15) + ETA_MARGIN_SECONDS
        if aim is not None and aim - caps.min_poll_interval < pace:
            # The provider's progress says it is done sooner than the backoff would look, or
            # so soon after it that the poll after would have to wait the provider's floor
            # past the end: look just after the end instead (the backoff alone sees a job of
            # a minute up to 30 s late; a poll just before the end, up to a floor late).
            pace = aim
        pace = max(caps.min_poll_interval, pace, result.poll_after or 0.0)
        await ctx.wait(pace, floor=caps.min_poll_interval)
        delay = min(caps.max_poll_interval, delay * POLL_BACKOFF)
        if await ctx.cancel_wanted():
            return None
        try:
            ctx.polled()
            result = await provider.poll(prediction_id)
            estimate.observe(loop.time(), result.progress)
            errors_in_a_row = 0
        except PredictionLost:
            raise
        except ProviderError as exc:
            errors_in_a_row += 1
            delay = max(delay, _tolerable(ctx, exc, errors_in_a_row, policy))


def _eta(progress: float | None, waited: float) -> float | None:
    """Seconds until the provider's progress (0..1) reaches 1 at the pace it reached it over
    ``waited`` seconds (of this attempt's wait: a resumed prediction is seen sooner, never
    later); 0 when it says all is done but the prediction is still running (finishing);
    None when it says too little to go by. Used until two polls of the attempt give a pace
    of their own (:mod:`vidgen.jobs.finish_estimate`), which needs no start time."""
    if progress is None or progress < MIN_ETA_PROGRESS:
        return None
    return max(0.0, waited * (1.0 - progress) / progress)


def _tolerable(ctx: JobContext, exc: ProviderError, errors_in_a_row: int, policy: Any) -> float:
    """After a failed poll: the least wait before the next poll; raises ``exc`` when the
    attempt should end instead (not retryable, too many in a row, or a long lock-out, where
    the slot is given back and the prediction resumed later)."""
    if not exc.retryable or errors_in_a_row > MAX_POLL_ERRORS:
        raise exc
    least = policy.floor(exc.retry_after, rate_limited=is_rate_limited(exc.code))
    if least is not None and least > policy.cap_seconds:
        raise exc
    logger.info("poll failed; retrying", extra={**ctx.log_extra, "error": exc.message})
    return least or 0.0


async def _store_prediction(
    ctx: JobContext, prediction_id: str | None, *, running: bool = False
) -> None:
    """Keep the prediction id at once (fenced) so a rescue resumes instead of resubmitting.

    Always a write of its own, before the output is fetched, even when the submission is
    already finished: folding it into the completing write would leave the download, the
    probe and the thumbnail (seconds for a real video) between the provider taking our money
    and the id being durable, and a worker killed in that window would make its rescuer pay
    again. One statement is the price of never paying twice. ``running``: the prediction
    is still running, so the group writer may combine this write with other jobs' (see
    :func:`vidgen.jobs.lifecycle.store_prediction`).
    """
    await ctx.db(
        "store prediction",
        lambda: lifecycle.store_prediction(
            ctx.video_id,
            ctx.attempt,
            prediction_id,
            bus=ctx.runtime.bus,
            runner=ctx.runner,
            running=running,
        ),
    )
    ctx.prediction_id = prediction_id


async def _complete(
    ctx: JobContext, spec: JobSpec, provider: Provider, result: PollResult, settings: Any
) -> AttemptOutcome:
    try:
        stored = await media_stage.store_output(ctx, spec, provider, result, settings)
    except ProbeError as exc:
        raise ProviderError(
            f"The provider's output is not a readable video: {exc}",
            retryable=False,
            code="bad_output",
        ) from exc
    except cpu.ProcessLost as exc:
        # Killed under the probe (by an operator, out of memory) or stuck on the output past
        # the time limit (ProcessTimedOut): nothing was stored and the prediction is kept,
        # so the next attempt downloads and inspects it again; an output that hangs every
        # probe ends failed after the job's retries.
        timed_out = isinstance(exc, cpu.ProcessTimedOut)
        raise ProviderError(
            f"Inspecting the provider's output took too long: {exc}"
            if timed_out
            else f"The media process inspecting the output ended: {exc}",
            retryable=True,
            code="media_timeout" if timed_out else "media_process_lost",
        ) from exc
    await outcomes.finish(
        ctx,
        S.COMPLETED,
        AttemptOutcome.SUCCEEDED,
        message="completed",
        fields=outcomes.completed_fields(stored),
    )
    logger.info("job completed", extra={**ctx.log_extra, "action": "job.completed"})
    return AttemptOutcome.SUCCEEDED
