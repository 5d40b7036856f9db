"""Run one claimed job: provider → storage → probe → thumbnail → one completing transition.

::

    prediction_id set?  ── yes ─▶ poll it (a rescued job never pays twice;
         │                         PredictionLost → forget it and submit again)
         no ─▶ submit ─▶ store prediction_id at once (fenced; when the submission is
                         already done, the result is fetched and the output stored while
                         that write is in flight, committed only once it succeeded)
    poll with the provider's floor and backoff, woken early by the job channel
    (a cancel at once; a webhook as soon as the provider's minimum poll interval
    since the previous poll allows) ─▶ report progress
    succeeded ─▶ download ─▶ probe + thumbnail (one pass) ─▶ save both ─▶ completed
                 (output URL expired: poll once more for a fresh one, download again)
                 (all metadata, status, history and attempt row in one write)
    failed    ─▶ retryable and budget left: queued, scheduled_at = now + backoff
                 otherwise: failed (error_message holds the last error)

Every write is fenced on the claim's ``attempt``: when the job was swept meanwhile the write
raises :class:`~vidgen.jobs.lifecycle.StaleAttempt` and this attempt stops, touching nothing.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from vidgen.events.bus import RESYNC, job_channel
from vidgen.jobs import lifecycle, transient
from vidgen.jobs.lifecycle import Claimed, JobSpec, StaleAttempt, now
from vidgen.jobs.retry import OUTAGE_CODES, RetryPolicy, is_outage, retries_left
from vidgen.jobs.service import CANCEL_MESSAGE, WEBHOOK_MESSAGE
from vidgen.media import ingest
from vidgen.media.probe import ProbeError
from vidgen.media.signing import signed_url
from vidgen.metrics import JOB_DURATION, JOB_RETRIES
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus
from vidgen.providers.base import (
    GenerationRequest,
    InputImage,
    PollResult,
    PredictionLost,
    Provider,
    ProviderError,
    State,
)

if TYPE_CHECKING:
    from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = VideoStatus
POLL_BACKOFF = 1.5
MAX_POLL_ERRORS = 3  # consecutive retryable poll errors tolerated inside one attempt
PROGRESS_STEP = 0.02
MAX_JOB_DELIVERIES = 256  # delivery ids remembered per running job
RATE_LIMITED = "rate_limited"  # the code of a 429 (vidgen.providers.errors)
OUTPUT_EXPIRED = "output_expired"  # a file host refused the output URL (providers.http)
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
_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class JobContext:
    """One claimed job as its worker runs it: the fence, and the nudges from outside."""

    def __init__(
        self,
        runtime: Runtime,
        claimed: Claimed,
        *,
        worker_id: str,
        runner: lifecycle.Runner | None = None,
        on_last_write: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.runner = runner  # sends the job's fenced writes (the worker's group writer)
        # Called once the attempt's last write starts: the worker may fill the slot now.
        self.on_last_write = on_last_write
        self.claimed = claimed
        self.prediction_id = claimed.prediction_id  # the one stored for this job, if any
        self.video_id = claimed.video_id
        self.attempt = claimed.attempt
        self.worker_id = worker_id
        self.cancel_requested = False  # set by the heartbeat from the database
        self.cancel_hint = False  # a cancel message arrived: check the database
        self.spec: JobSpec | None = claimed.spec
        self.finished = False  # the attempt's last write is under way or done
        self.slot_free = False  # no provider work left: the worker may fill the slot
        # The prediction id's write while the output is fetched beside it (see _run); every
        # later database call of the job waits for it first.
        self.pending_write: asyncio.Task[None] | None = None
        # That write went wrong (taken over: StaleAttempt): the output must not be stored.
        self.write_error: BaseException | None = None
        # Set (from the event loop) once that write succeeded: the media stage's hold.
        self.write_done: threading.Event | None = None
        self.ingest: ingest.Ingest | None = None  # the media stage under way, if any
        self.started = time.monotonic()
        self._nudge = asyncio.Event()
        # When this attempt last asked the provider (submit or poll), by the loop's clock.
        self.last_poll: float | None = None
        # Webhook delivery ids already seen by this job (API processes de-duplicate too, but
        # each only its own deliveries).
        self.deliveries: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def log_extra(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "attempt": self.attempt, "worker_id": self.worker_id}

    def nudge(self) -> None:
        """Wake the job's wait (a webhook arrived or a cancel was requested)."""
        self._nudge.set()

    def polled(self) -> None:
        """Note that the provider was just asked (the floor of the next wait counts from here)."""
        self.last_poll = asyncio.get_running_loop().time()

    async def wait(self, seconds: float, *, floor: float = 0.0) -> None:
        """Sleep up to ``seconds``; a nudge ends the sleep early.

        A cancel (``cancel_hint``/``cancel_requested``) ends it at once. Any other nudge (a
        webhook) ends it as soon as ``floor`` seconds have passed since :meth:`polled`, never
        sooner: replayed or duplicate deliveries cannot make the job poll its provider faster
        than the provider allows (nor draw the 429s that would eat the retry budget).
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + max(0.0, seconds)
        since = self.last_poll if self.last_poll is not None else start
        earliest = min(deadline, since + max(0.0, floor))
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._nudge.wait(), timeout=remaining)
            except TimeoutError:
                break
            self._nudge.clear()
            if self.cancel_hint or self.cancel_requested:
                return
            deadline = earliest  # a webhook: poll as soon as the floor allows
        self._nudge.clear()


class _DeadPrediction(ProviderError):
    """The prediction itself failed: a retry must submit a new one."""


async def run_job(ctx: JobContext) -> AttemptOutcome | None:
    """Run one claimed job to an outcome; never raises except for cancellation.

    Returns:
        The attempt's outcome, or None when the job was taken away (stale attempt).
    """
    bus = ctx.runtime.bus
    # Cancels and webhooks are handled as they are dispatched: no listener task per job.
    async with bus.subscribe(
        job_channel(ctx.video_id), on_message=functools.partial(_on_message, ctx)
    ):
        try:
            try:
                return await _run(ctx)
            except ProviderError as exc:
                return await _fail(ctx, exc)
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
                return await _fail(ctx, error)
        except StaleAttempt:
            logger.warning("attempt went stale; stopping", extra=ctx.log_extra)
            return None


def _on_message(ctx: JobContext, message: Any) -> None:
    """A message on the job's channel: a cancel request, a webhook, or the bus's RESYNC (a
    reconnect: messages may have been missed, so check the database for a cancel)."""
    if message is RESYNC:
        ctx.cancel_hint = True
    elif isinstance(message, dict) and message.get("type") == CANCEL_MESSAGE:
        ctx.cancel_hint = True
    elif isinstance(message, dict) and message.get("type") == WEBHOOK_MESSAGE:
        delivery = message.get("delivery_id")
        if delivery:
            if str(delivery) in ctx.deliveries:
                return  # a replay (through another API process): no second nudge
            ctx.deliveries[str(delivery)] = None
            while len(ctx.deliveries) > MAX_JOB_DELIVERIES:
                ctx.deliveries.popitem(last=False)
    ctx.nudge()


async def _cancel_wanted(ctx: JobContext) -> bool:
    if ctx.cancel_requested:
        return True
    if ctx.cancel_hint:
        ctx.cancel_hint = False
        flag = await _db(
            ctx,
            "read cancel flag",
            lambda: Video.filter(id=ctx.video_id).values_list("cancel_requested", flat=True),
        )
        ctx.cancel_requested = bool(flag and flag[0])
    return ctx.cancel_requested


async def _spec(ctx: JobContext) -> JobSpec:
    """The job's request: from the claim, or (a claim made elsewhere) read once, fenced."""
    if ctx.claimed.spec is not None:
        return ctx.claimed.spec
    rows = await _db(
        ctx,
        "read job",
        lambda: Video.filter(id=ctx.video_id, attempt=ctx.attempt, status=S.PROCESSING).values(),
    )
    if not rows:
        raise StaleAttempt(f"video {ctx.video_id}: attempt {ctx.attempt} is not current")
    return JobSpec.from_row(rows[0])


async def _run(ctx: JobContext) -> AttemptOutcome:
    settings = ctx.runtime.settings
    video = await _spec(ctx)
    ctx.spec = video
    ctx.cancel_requested = ctx.cancel_requested or video.cancel_requested
    provider = ctx.runtime.providers.get(ctx.claimed.provider)
    if provider is None or not provider.available:
        raise ProviderError(
            f"The provider {ctx.claimed.provider!r} is not available on this worker.",
            retryable=False,
            code="provider_unavailable",
        )
    if await _cancel_wanted(ctx):
        return await _cancel(ctx, provider, ctx.claimed.prediction_id)

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
            request = await _build_request(ctx, video, provider)
            submission = await provider.submit(request)
            ctx.polled()
            prediction_id = submission.prediction_id
            if submission.state in (State.SUCCEEDED, State.FAILED):
                # Already done: the id's write goes out now, as always, and the result is
                # fetched (and the output stored) while it is in flight; the next database
                # call of this job, at the latest the completing write, waits for it.
                done = ctx.write_done = threading.Event()
                pending = asyncio.create_task(_store_prediction(ctx, prediction_id))
                pending.add_done_callback(functools.partial(_pending_done, ctx, done))
                ctx.pending_write = pending
                result = await provider.poll(prediction_id)
            else:
                # A write in flight that this task's cancellation cannot stop (see
                # _settle_pending): a worker shutting down waits for it before it releases
                # the job, or the id would be lost and the next attempt would pay again.
                ctx.pending_write = asyncio.create_task(_store_prediction(ctx, prediction_id))
                ctx.pending_write.add_done_callback(_retrieve)
                await _settle_pending(ctx)
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
        return await _cancel(ctx, provider, prediction_id)
    try:
        return await _complete(ctx, video, provider, result, settings)
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
            return await _cancel(ctx, provider, prediction_id)
        return await _complete(ctx, video, provider, fresh, settings)


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
    caps = provider.capabilities
    policy = RetryPolicy.from_settings(ctx.runtime.settings)
    delay = caps.min_poll_interval
    last_progress = -1.0
    last_message: str | None = None
    while True:
        if await _cancel_wanted(ctx):
            return None
        if result.state is State.SUCCEEDED:
            return result
        if result.state is State.FAILED:
            error = result.error or ProviderError("The prediction failed.", retryable=False)
            raise _DeadPrediction(
                error.message,
                retryable=error.retryable,
                code=error.code,
                retry_after=error.retry_after,
                status_code=error.status_code,
            )
        if result.state is State.CANCELED:
            raise _DeadPrediction(
                "The provider canceled the prediction.", retryable=False, code="canceled_upstream"
            )
        progressed = (
            result.progress is not None and result.progress - last_progress >= PROGRESS_STEP
        )
        said = result.message is not None and result.message != last_message
        if progressed or said:
            last_progress = result.progress if progressed else last_progress
            last_message = result.message if said else last_message
            await _db(
                ctx,
                "report progress",
                functools.partial(
                    lifecycle.report_progress,
                    ctx.video_id,
                    result.progress if progressed else None,
                    attempt=ctx.attempt,
                    bus=ctx.runtime.bus,
                    message=result.message if said else None,
                ),
            )
        await ctx.wait(
            max(caps.min_poll_interval, delay, result.poll_after or 0.0),
            floor=caps.min_poll_interval,
        )
        delay = min(caps.max_poll_interval, delay * POLL_BACKOFF)
        if await _cancel_wanted(ctx):
            return None
        try:
            ctx.polled()
            result = await provider.poll(prediction_id)
            errors_in_a_row = 0
        except PredictionLost:
            raise
        except ProviderError as exc:
            errors_in_a_row += 1
            delay = max(delay, _tolerable(ctx, exc, errors_in_a_row, policy))


def _tolerable(ctx: JobContext, exc: ProviderError, errors_in_a_row: int, policy: Any) -> float:
    """After a failed poll: the least wait before the next poll; raises ``exc`` when the
    attempt should end instead (not retryable, too many in a row, or a long lock-out, where
    the slot is given back and the prediction resumed later)."""
    if not exc.retryable or errors_in_a_row > MAX_POLL_ERRORS:
        raise exc
    least = policy.floor(exc.retry_after, rate_limited=exc.code == RATE_LIMITED)
    if least is not None and least > policy.cap_seconds:
        raise exc
    logger.info("poll failed; retrying", extra={**ctx.log_extra, "error": exc.message})
    return least or 0.0


async def _store_prediction(ctx: JobContext, prediction_id: str | None) -> None:
    """Keep the prediction id at once (fenced) so a rescue resumes instead of resubmitting.

    Always a write of its own, before the output is fetched, even when the submission is
    already finished: folding it into the completing write would leave the download, the
    probe and the thumbnail (seconds for a real video) between the provider taking our money
    and the id being durable, and a worker killed in that window would make its rescuer pay
    again. One statement is the price of never paying twice.
    """
    await _db(
        ctx,
        "store prediction",
        lambda: lifecycle.store_prediction(
            ctx.video_id, ctx.attempt, prediction_id, bus=ctx.runtime.bus, runner=ctx.runner
        ),
    )
    ctx.prediction_id = prediction_id


# How long a provider may take to fetch an input image by URL (it may queue the job first).
INPUT_URL_TTL_SECONDS = 24 * 3600


async def _input_url(runtime: Runtime, key: str) -> str | None:
    """A URL of the input image that a provider can fetch; adapters use it for images too big
    to send inline (see ``Capabilities.max_inline_image_bytes``). The object store's own
    presigned URL when a setting says the store is reachable from the internet
    (``VIDGEN_S3_PUBLIC``); else a signed media URL when this server has a public https
    address (providers fetch only https); else None."""
    settings = runtime.settings
    if settings.s3_public:
        url = await runtime.storage.presign(key, expires_in=INPUT_URL_TTL_SECONDS)
        if url is not None:
            return url
    public = settings.public_url
    if not public or not public.startswith("https://"):
        return None
    return signed_url(
        public,
        key,
        ttl=max(settings.signed_url_ttl_seconds, INPUT_URL_TTL_SECONDS),
        secret=settings.resolved_secret_key,
    )


async def _build_request(ctx: JobContext, video: JobSpec, provider: Provider) -> GenerationRequest:
    settings = ctx.runtime.settings
    image = None
    if video.input_image:
        data = await ctx.runtime.storage.read_bytes(video.input_image)
        ext = video.input_image.rsplit(".", 1)[-1].lower()
        image = InputImage(
            data=data,
            content_type=_IMAGE_TYPES.get(ext, "image/png"),
            url=await _input_url(ctx.runtime, video.input_image),
        )
    webhook_url = None
    if provider.capabilities.webhooks and settings.public_url:
        webhook_url = f"{settings.resolved_public_url}/webhooks/{provider.name}"
    return GenerationRequest(
        prompt=video.prompt,
        resolution=video.resolution,
        output_format=str(video.output_format),
        duration_seconds=video.duration_seconds or provider.capabilities.min_duration_seconds,
        model=video.model,
        input_image=image,
        video_style=video.video_style,
        seed=video.seed,
        webhook_url=webhook_url,
        reference=f"video-{ctx.video_id}",
    )


async def _complete(
    ctx: JobContext, video: JobSpec, provider: Provider, result: PollResult, settings: Any
) -> AttemptOutcome:
    try:
        stored = await _store_output(ctx, video, provider, result, settings)
    except ProbeError as exc:
        raise ProviderError(
            f"The provider's output is not a readable video: {exc}",
            retryable=False,
            code="bad_output",
        ) from exc
    info = stored.info
    fields = {
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
    await _finish(ctx, S.COMPLETED, AttemptOutcome.SUCCEEDED, message="completed", fields=fields)
    logger.info("job completed", extra={**ctx.log_extra, "action": "job.completed"})
    return AttemptOutcome.SUCCEEDED


async def _store_output(
    ctx: JobContext, video: JobSpec, provider: Provider, result: PollResult, settings: Any
) -> ingest.Stored:
    """Download, probe, thumbnail and store durably (see :mod:`vidgen.media.ingest`).

    One worker-thread call for the whole stage when the provider can download without the
    event loop; otherwise one before and one after its async download. With the prediction
    id's write still in flight the stage commits only once that write succeeded (a job
    taken over meanwhile stores nothing): when the write is not back by then, the stage
    stops before committing and one more thread call commits after it.
    """
    pending = ctx.pending_write
    job = ingest.Ingest(
        ctx.runtime.storage,
        owner_id=video.owner_id,
        video_id=ctx.video_id,
        output_format=str(video.output_format),
        thumbnail_width=settings.thumbnail_width,
        thumbnail_format=settings.thumbnail_format,
        hold=ctx.write_done if pending is not None else None,
    )
    ctx.ingest = job
    job.abandoned = ctx.write_error is not None
    try:
        stored = await _fetch_and_store(job, provider, result, max_bytes=settings.max_output_bytes)
        if stored is None:  # held: wait for the write, then commit
            try:
                await _settle_pending(ctx)
            except BaseException:
                await asyncio.shield(asyncio.to_thread(job.discard))
                raise
            stored = await _in_thread(job, job.commit)
        return stored
    except ingest.Abandoned:
        if ctx.write_error is not None:  # not canceled: the id's write went wrong
            await _settle_pending(ctx)  # raises its error (StaleAttempt: taken over)
            raise ctx.write_error from None
        raise
    finally:
        ctx.ingest = None


async def _fetch_and_store(
    job: ingest.Ingest, provider: Provider, result: PollResult, *, max_bytes: int
) -> ingest.Stored | None:
    download_blocking = getattr(provider, "download_blocking", None)
    if download_blocking is not None:
        fetch = functools.partial(download_blocking, result, max_bytes=max_bytes)
        return await _in_thread(job, job.run, fetch)
    dest = await _in_thread(job, job.open)
    try:
        content_type = await provider.download(result, dest, max_bytes=max_bytes)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(job.discard))
        raise
    return await _in_thread(job, job.finish, content_type)


async def _in_thread(job: ingest.Ingest, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread. Canceled before it started, it never runs; canceled
    while it runs, it runs on but commits nothing it has not started committing; canceled
    with the stage held (ready, waiting to commit), its files are removed."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, fn, *args)
    except asyncio.CancelledError:
        if job.abandon():
            loop.run_in_executor(None, job.discard)  # held: nobody else would
        raise


async def _cancel(ctx: JobContext, provider: Provider, prediction_id: str | None) -> AttemptOutcome:
    if prediction_id:
        try:
            await provider.cancel(prediction_id)
        except Exception:  # best effort: the job is canceled for us either way
            logger.warning("provider cancel failed", extra=ctx.log_extra, exc_info=True)
    await _finish(ctx, S.CANCELED, AttemptOutcome.CANCELED, message="canceled", fields={})
    logger.info("job canceled", extra={**ctx.log_extra, "action": "job.canceled"})
    return AttemptOutcome.CANCELED


async def _fail(ctx: JobContext, error: ProviderError) -> AttemptOutcome:
    """Re-queue with backoff when retryable and the budget allows, else fail for good."""
    try:
        await _settle_pending(ctx)  # whether the prediction id is stored decides below
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
    spec = ctx.spec or await _spec(ctx)
    retry_count, max_retries = spec.retry_count, spec.max_retries
    fields: dict[str, Any] = {"error_message": error.message, "processed_by": None}
    dead = isinstance(error, _DeadPrediction) or isinstance(error, PredictionLost)
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
                in_a_row, retry_after=error.retry_after, rate_limited=error.code == RATE_LIMITED
            )
            fields.update(scheduled_at=now() + dt.timedelta(seconds=delay), progress=0.0)
            message = (
                f"provider outage ({in_a_row + 1} in a row, retry budget kept): "
                f"retry in {delay:.1f}s: {error.message}"
            )
            return await _requeue(ctx, error, fields, message, delay, outage=True)
    if error.retryable and retries_left(retry_count, max_retries):
        delay = policy.delay(
            retry_count, retry_after=error.retry_after, rate_limited=error.code == RATE_LIMITED
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
    await _finish(
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
    change = await _finish(
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
    rows = await _db(
        ctx,
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


async def _finish(
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
    await _settle_pending(ctx)
    # From here on the row may stop being ``processing`` at any moment (the write can commit
    # before its reply arrives): the heartbeat must not take that for a lost lease.
    ctx.finished = True
    if frees_slot:
        ctx.slot_free = True
        if ctx.on_last_write is not None:
            ctx.on_last_write()
    change = await _db(
        ctx,
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


async def _db(ctx: JobContext, what: str, operation: Callable[[], Awaitable[T]]) -> T:
    """A database call of this job that rides out outages (see :mod:`vidgen.jobs.transient`).

    While the database is down the job waits here; its lease may expire meanwhile, in which
    case a fenced write finds the job taken over (StaleAttempt) and the attempt stops.
    Waits first for the job's write still in flight (:attr:`JobContext.pending_write`), so
    the job's statements run in the order it made them.
    """
    if ctx.pending_write is not None and ctx.pending_write is not asyncio.current_task():
        await _settle_pending(ctx)
    return await transient.retrying(operation, what=what, extra=ctx.log_extra)


async def _settle_pending(ctx: JobContext) -> None:
    """Wait for the job's write in flight, if any; its error (StaleAttempt) is raised here.
    Canceled meanwhile, the write runs on (a worker shutting down waits for it before it
    releases the job, so the id is kept)."""
    pending = ctx.pending_write
    if pending is None:
        return
    try:
        await asyncio.shield(pending)
    finally:
        if pending.done():
            ctx.pending_write = None


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a write's error as seen. The job raises it where it awaits the write; a job
    canceled first never does, and the worker's release then goes by the row, not by it."""
    if not task.cancelled():
        task.exception()


def _pending_done(ctx: JobContext, done: threading.Event, task: asyncio.Task[None]) -> None:
    """The write in flight ended. Succeeded: open the media stage's hold. Otherwise (taken
    over, an error, canceled): the stage must store nothing; the error is raised where the
    job awaits the write, and one that nobody awaits (the job was canceled first) is
    retrieved here rather than reported as lost."""
    error = asyncio.CancelledError() if task.cancelled() else task.exception()
    if error is None:
        done.set()
        return
    ctx.write_error = error
    if ctx.ingest is not None:
        ctx.ingest.abandon()  # a held stage is discarded by the job, which awaits the write
