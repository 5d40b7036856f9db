"""The built-in ``local`` provider: renders real videos on this machine with PyAV.

Text-to-video draws an animated scene from the prompt, image-to-video pans and zooms over the
input image (see :mod:`vidgen.media.render`). Renders run in a bounded thread pool
(``VIDGEN_RENDER_WORKERS``), never on the event loop; their state lives in this process only,
so after a restart :meth:`LocalProvider.poll` raises :class:`PredictionLost` and the engine
simply renders again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vidgen.media import render
from vidgen.media.storage import TMP_DIR_NAME
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    PollResult,
    PredictionLost,
    ProviderError,
    State,
    Submission,
    WebhookEvent,
    WebhookRejected,
)
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

RESOLUTIONS = (
    "256x256",
    "512x512",
    "768x768",
    "1024x1024",
    "1280x720",
    "720x1280",
    "854x480",
    "480x854",
    "1920x1080",
    "1080x1920",
)
MODEL = "scene-v1"
# A finished render that nobody downloads is dropped (and its file removed) after this long.
RESULT_TTL_SECONDS = 3600.0


@dataclass(eq=False)
class _Render:
    """One render's state, written by its worker thread and read by the event loop."""

    id: str
    request: GenerationRequest
    dest: Path
    fps: float
    seed: int
    cancel: threading.Event = field(default_factory=threading.Event)
    state: State = State.QUEUED
    progress: float = 0.0
    error: ProviderError | None = None
    future: concurrent.futures.Future[None] | None = None
    finished_at: float | None = None


class LocalProvider:
    """Renders videos in-process with PyAV; always available, needs no key.

    Args:
        settings: Uses ``render_workers``, ``local_frame_rate`` and ``resolved_media_root``.
        storage_tmp: Folder for finished renders until :meth:`download` moves them; defaults
            to the media root's temp folder, so that move is a rename on the same filesystem.
    """

    name = "local"
    # Its work is this process's CPU, not a wait at a remote service: a worker claims at most
    # render_slots() of its jobs at once (the rest stay queued for other workers).
    cpu_bound = True

    def __init__(self, settings: Settings, *, storage_tmp: Path | None = None) -> None:
        self.settings = settings
        self.tmp_dir = Path(storage_tmp or settings.resolved_media_root / TMP_DIR_NAME)
        self.capabilities = Capabilities(
            text_to_video=True,
            image_to_video=True,
            resolutions=RESOLUTIONS,
            output_formats=render.FORMATS,
            min_duration_seconds=1.0,
            max_duration_seconds=30.0,
            durations=None,
            max_prompt_length=2000,
            models=(MODEL,),
            default_model=MODEL,
            default_resolution="1024x1024",
            webhooks=False,
            cancellable=True,
            min_poll_interval=0.2,
            max_poll_interval=2.0,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=render_slots(settings), thread_name_prefix="vidgen-render"
        )
        self._renders: dict[str, _Render] = {}
        self._closed = False

    @property
    def available(self) -> bool:
        """Always True: the local renderer needs no key."""
        return True

    # --- the job -------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> Submission:
        """Check the request and queue its render on the thread pool.

        Raises:
            ProviderError: ``bad_request`` (permanent) for a request the renderer cannot do;
                ``closed`` (retryable) once the provider is shutting down.
        """
        if self._closed:
            raise ProviderError(
                "The local renderer is shutting down.", retryable=True, code="closed"
            )
        self._check(request)
        self._forget_stale()
        prediction_id = f"local-{uuid.uuid4().hex}"
        job = _Render(
            id=prediction_id,
            request=request,
            dest=self.tmp_dir / f"{prediction_id}.{request.output_format}",
            fps=float(request.frame_rate or self.settings.local_frame_rate),
            seed=request.seed if request.seed is not None else 0,
        )
        self._renders[prediction_id] = job
        job.future = self._executor.submit(self._run, job)
        logger.info(
            "local render queued",
            extra={
                "action": "local.submit",
                "prediction_id": prediction_id,
                "reference": request.reference,
            },
        )
        return Submission(prediction_id=prediction_id, state=State.QUEUED, progress=0.0)

    def _check(self, request: GenerationRequest) -> None:
        caps = self.capabilities

        def bad(message: str) -> ProviderError:
            return ProviderError(message, retryable=False, code="bad_request")

        if request.output_format not in caps.output_formats:
            raise bad(f"The local renderer makes {' or '.join(caps.output_formats)} only.")
        if request.resolution not in caps.resolutions:
            raise bad(f"Unsupported resolution {request.resolution!r}.")
        if not caps.min_duration_seconds <= request.duration_seconds <= caps.max_duration_seconds:
            raise bad(
                f"Duration must be {caps.min_duration_seconds:g} to "
                f"{caps.max_duration_seconds:g} seconds."
            )
        if len(request.prompt) > caps.max_prompt_length:
            raise bad(f"The prompt is longer than {caps.max_prompt_length} characters.")
        if request.model not in (None, *caps.models):
            raise bad(f"Unknown model {request.model!r}; the local renderer has {MODEL!r}.")
        fps = request.frame_rate or self.settings.local_frame_rate
        if not 1 <= fps <= 60:
            raise bad("The frame rate must be 1 to 60 frames per second.")

    def _run(self, job: _Render) -> None:
        """The worker thread's body: render, then record the outcome."""
        if job.cancel.is_set():
            job.state = State.CANCELED
            job.finished_at = time.monotonic()
            return
        job.state = State.RUNNING
        request = job.request

        def progress(fraction: float) -> None:
            job.progress = fraction

        common = {
            "width": request.width,
            "height": request.height,
            "duration": request.duration_seconds,
            "fps": job.fps,
            "fmt": request.output_format,
            "seed": job.seed,
            "dest": job.dest,
            "progress": progress,
            "cancelled": job.cancel.is_set,
        }
        try:
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            if request.input_image is not None:
                render.render_image_video(request.input_image.data, **common)  # type: ignore[arg-type]
            else:
                render.render_text_video(
                    request.prompt,
                    style=request.video_style,
                    **common,  # type: ignore[arg-type]
                )
        except render.RenderCancelled:
            job.state = State.CANCELED
        except Exception as exc:  # every failure becomes a classified ProviderError
            job.error = _classify(exc)
            job.state = State.FAILED
            logger.warning(
                "local render failed",
                extra={"action": "local.failed", "prediction_id": job.id},
                exc_info=exc,
            )
        else:
            job.progress = 1.0
            job.state = State.SUCCEEDED
        finally:
            job.finished_at = time.monotonic()

    async def poll(self, prediction_id: str) -> PollResult:
        """The render's state and progress.

        Raises:
            PredictionLost: For an id this process does not know (e.g. rendered by a process
                that has since died, or already downloaded).
        """
        self._forget_stale()
        job = self._renders.get(prediction_id)
        if job is None:
            raise PredictionLost("The local renderer has no such render (it may have restarted).")
        state = job.state
        if state is State.SUCCEEDED:
            return PollResult(
                state=state,
                progress=1.0,
                extra={
                    "path": str(job.dest),
                    "content_type": render.CONTENT_TYPES[job.request.output_format],
                },
            )
        if state is State.FAILED:
            return PollResult(state=state, progress=job.progress, error=job.error)
        if state is State.CANCELED:
            return PollResult(state=state, progress=job.progress, message="Cancelled.")
        return PollResult(state=state, progress=job.progress, poll_after=0.2)

    async def cancel(self, prediction_id: str) -> None:
        """Ask the render to stop (before its next frame); unknown ids are ignored."""
        job = self._renders.get(prediction_id)
        if job is None:
            return
        job.cancel.set()
        if job.future is not None and job.future.cancel():
            # It had not started: it never will.
            job.state = State.CANCELED
            job.finished_at = time.monotonic()

    async def download(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        """Move the finished render to ``dest`` and return its content type.

        Raises:
            PredictionLost: When the rendered file is gone (the engine renders again).
            ProviderError: ``too_large`` (permanent) when it exceeds ``max_bytes``.
        """
        raw_path = result.extra.get("path")
        if not isinstance(raw_path, str):
            raise ProviderError(
                "The local render reported success without an output.",
                retryable=False,
                code="prediction_failed",
            )
        src = Path(raw_path)
        fmt = src.suffix.lstrip(".")
        content_type = render.CONTENT_TYPES.get(fmt)
        if content_type is None or src.parent != self.tmp_dir:
            raise ProviderError(
                "Not a local render output.", retryable=False, code="prediction_failed"
            )
        prediction_id = src.stem
        try:
            size = (await asyncio.to_thread(src.stat)).st_size
        except FileNotFoundError as exc:
            self._renders.pop(prediction_id, None)
            raise PredictionLost("The local render's output is gone.") from exc
        if size > max_bytes:
            self._renders.pop(prediction_id, None)
            await asyncio.to_thread(src.unlink, True)
            raise ProviderError(
                f"The local render is larger than the {max_bytes} byte limit "
                "(VIDGEN_MAX_OUTPUT_BYTES).",
                retryable=False,
                code="too_large",
            )
        await asyncio.to_thread(_move, src, Path(dest))
        self._renders.pop(prediction_id, None)
        return content_type

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """The local renderer sends no webhooks: every callback is rejected."""
        raise WebhookRejected("The local provider does not take webhooks.")

    async def aclose(self) -> None:
        """Cancel every render, wait for the threads to stop and remove unclaimed outputs."""
        if self._closed:
            return
        self._closed = True
        for job in self._renders.values():
            job.cancel.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        for job in list(self._renders.values()):
            job.dest.unlink(missing_ok=True)
        self._renders.clear()

    # --- housekeeping ---------------------------------------------------------------------
    def _forget_stale(self) -> None:
        cutoff = time.monotonic() - RESULT_TTL_SECONDS
        for job in list(self._renders.values()):
            if job.finished_at is not None and job.finished_at < cutoff:
                self._renders.pop(job.id, None)
                job.dest.unlink(missing_ok=True)


def render_slots(settings: Settings) -> int:
    """Renders at once in one process: ``VIDGEN_RENDER_WORKERS``, else the CPU pool's size
    (``VIDGEN_CPU_WORKERS``, else the cores; :mod:`vidgen.jobs.cpu`)."""
    from vidgen.jobs import cpu

    return max(1, settings.render_workers or cpu.size(settings.cpu_workers))


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError:
        # Another filesystem: copy, then remove the render.
        shutil.move(str(src), str(dest))


def _classify(exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ValueError | UnidentifiedImageError | Image.DecompressionBombError):
        return ProviderError(
            f"The local renderer cannot make this video: {exc}",
            retryable=False,
            code="bad_request",
        )
    if isinstance(exc, OSError):
        # Disk full, too many open files, ...: may well pass on another try.
        return ProviderError(f"The local render failed: {exc}", retryable=True, code="io_error")
    return ProviderError(
        f"The local render failed: {exc}", retryable=False, code="prediction_failed"
    )
