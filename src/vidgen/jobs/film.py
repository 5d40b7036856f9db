"""Run one claimed film: check its clips, stitch them (:mod:`vidgen.media.stitch`) in the
CPU pool, store the film with its probe and thumbnail, and complete it in one fenced write.

The queue claims a film only once none of its clips is queued or processing
(:mod:`vidgen.jobs.queue`), so here every clip has ended. One that did not complete fails
the film for good, the error naming its paragraph; ``retryVideo`` on the film retries
such clips and queues the film again (:mod:`vidgen.services.films`). The stitch streams
each clip from the media store: a local folder's file is read in place, an object store's
is copied to a scratch file first. A cancel stops the stitch between frames; a worker that
dies mid-stitch leaves only staged files, and the film's next attempt stitches again.

docs/films.md describes films from the user's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vidgen import eventloop
from vidgen.jobs import cpu, lifecycle, outcomes
from vidgen.jobs.job_context import JobContext
from vidgen.media import ingest, stitch
from vidgen.media.render import CONTENT_TYPES, RenderCancelled
from vidgen.models import AttemptOutcome, FilmClip, VideoStatus
from vidgen.providers.base import ProviderError

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = VideoStatus
DEFAULT_FPS = 24.0
PROGRESS_SECONDS = 0.5  # the stitch's progress is written at most this often


async def run_cpu(fn: Callable[..., T], *args: Any) -> T:
    """Run the CPU-bound ``fn(*args)`` on the process's CPU pool (:mod:`vidgen.jobs.cpu`,
    ``VIDGEN_CPU_WORKERS`` threads), which the local renderer and the media stage share.

    A cancel while it runs leaves the thread to finish (``fn`` polls a flag and stops early).
    """
    return await cpu.run(fn, *args)


@dataclass(frozen=True)
class ClipRow:
    """One clip of the film as the film's job reads it."""

    position: int
    clip_id: int
    status: str
    error_message: str | None
    video_file: str | None
    frame_rate: float | None
    caption: str | None
    transition: str
    deleted: bool


async def read_clips(ctx: JobContext) -> list[ClipRow]:
    rows = await ctx.db(
        "read film clips",
        lambda: (
            FilmClip.filter(film_id=ctx.video_id)
            .order_by("position")
            .values(
                "position",
                "clip_id",
                "caption",
                "transition",
                "clip__status",
                "clip__error_message",
                "clip__video_file",
                "clip__frame_rate",
                "clip__deleted_at",
            )
        ),
    )
    return [
        ClipRow(
            position=r["position"],
            clip_id=r["clip_id"],
            status=str(r["clip__status"]),
            error_message=r["clip__error_message"],
            video_file=r["clip__video_file"],
            frame_rate=r["clip__frame_rate"],
            caption=r["caption"],
            transition=str(r["transition"]),
            deleted=r["clip__deleted_at"] is not None,
        )
        for r in rows
    ]


def clip_problem(clips: list[ClipRow]) -> str | None:
    """Why the film cannot be stitched (the first clip that is not usable), or None."""
    if not clips:
        return "The film has no clips."
    for clip in clips:
        where = f"The clip of paragraph {clip.position} (video {clip.clip_id})"
        if clip.deleted:
            return f"{where} was deleted."
        if clip.status != S.COMPLETED.value:
            reason = f": {clip.error_message}" if clip.error_message else "."
            return f"{where} {clip.status}{reason}"
        if not clip.video_file:
            return f"{where} has no stored file."
    return None


async def run_film(ctx: JobContext) -> AttemptOutcome:
    """Stitch a claimed film (see the module docstring); the outcome of its attempt."""
    spec = ctx.spec or await ctx.read_spec()
    if await ctx.cancel_wanted():
        return await _canceled(ctx)
    clips = await read_clips(ctx)
    problem = clip_problem(clips)
    if problem is not None:
        raise ProviderError(problem, retryable=False, code="clip_failed")
    settings = ctx.runtime.settings
    width, height = (int(side) for side in spec.resolution.split("x"))
    fps = float(clips[0].frame_rate or DEFAULT_FPS)
    job = ingest.Ingest(
        ctx.runtime.storage,
        owner_id=spec.owner_id,
        video_id=ctx.video_id,
        output_format=spec.output_format,
        thumbnail_width=settings.thumbnail_width,
        thumbnail_format=settings.thumbnail_format,
    )
    ctx.ingest = job
    try:
        async with _local_files(ctx, [c.video_file for c in clips if c.video_file]) as paths:
            parts = [
                stitch.Part(path, caption=clip.caption, transition=clip.transition)
                for path, clip in zip(paths, clips, strict=True)
            ]

            progress = _Progress()

            def fetch(dest: Path) -> str:
                stitch.stitch(
                    parts,
                    dest,
                    fmt=spec.output_format,
                    width=width,
                    height=height,
                    fps=fps,
                    cancelled=lambda: job.abandoned or ctx.cancel_requested,
                    progress=progress.set,
                )
                return CONTENT_TYPES[spec.output_format]

            reporter = asyncio.create_task(progress.report(ctx))
            try:
                stored = await run_cpu(job.run, fetch)
            except asyncio.CancelledError:
                job.abandon()
                reporter.cancel()
                raise
            finally:
                # Its last progress write lands before the film's last write is sent.
                progress.done.set()
                await asyncio.gather(reporter, return_exceptions=True)
    except RenderCancelled:
        return await _canceled(ctx)
    finally:
        ctx.ingest = None
    if stored is None:  # only a held stage returns None, and this one has no hold
        raise RuntimeError("the film's media stage did not commit")
    await outcomes.finish(
        ctx,
        S.COMPLETED,
        AttemptOutcome.SUCCEEDED,
        message="completed",
        fields=outcomes.completed_fields(stored),
    )
    logger.info(
        "film completed",
        extra={**ctx.log_extra, "action": "film.completed", "clips": len(clips)},
    )
    return AttemptOutcome.SUCCEEDED


class _Progress:
    """The stitch's progress, set from its thread and written (fenced, published) from the
    event loop at most every :data:`PROGRESS_SECONDS`."""

    def __init__(self) -> None:
        self.value = 0.0
        self.done = asyncio.Event()

    def set(self, fraction: float) -> None:
        self.value = fraction  # one float: the loop reads whole values

    async def report(self, ctx: JobContext) -> None:
        written = 0.0
        while not self.done.is_set():
            await eventloop.wait_event(self.done, PROGRESS_SECONDS)
            value = min(self.value, 0.99)  # 1.0 is the completing write's
            if self.done.is_set() or value - written < 0.01:
                continue
            written = value
            await ctx.db(
                "report progress",
                functools.partial(
                    lifecycle.report_progress,
                    ctx.video_id,
                    value,
                    attempt=ctx.attempt,
                    bus=ctx.runtime.bus,
                ),
            )


async def _canceled(ctx: JobContext) -> AttemptOutcome:
    await outcomes.finish(ctx, S.CANCELED, AttemptOutcome.CANCELED, message="canceled", fields={})
    logger.info("film canceled", extra={**ctx.log_extra, "action": "job.canceled"})
    return AttemptOutcome.CANCELED


@contextlib.asynccontextmanager
async def _local_files(ctx: JobContext, keys: list[str]) -> AsyncIterator[list[Path]]:
    """Local paths of the stored clips: a local folder's own files, else scratch copies
    (removed afterwards)."""
    storage = ctx.runtime.storage
    paths: list[Path] = []
    scratch: Path | None = None
    try:
        for index, key in enumerate(keys):
            local = storage.local_path(key)
            if local is not None and local.exists():
                paths.append(local)
                continue
            if scratch is None:
                scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="vidgen-film-"))
            dest = scratch / f"{index}{Path(key).suffix}"
            with dest.open("wb") as fh:
                async for chunk in storage.read(key):
                    await asyncio.to_thread(fh.write, chunk)
            paths.append(dest)
        yield paths
    finally:
        if scratch is not None:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
