"""A provider's finished output: its metadata and its thumbnail in ONE pass over the file.

The same facts as :func:`vidgen.media.probe.probe` and the same image as
:func:`vidgen.media.thumbnails.make_thumbnail` (frame about 10% in, never scaled up, the same
formats), but the container is opened once, in one worker thread, and small videos are
decoded on the calling thread: FFmpeg's frame threads cost more to start (about 1 ms) than a
64x64 frame costs to decode, and the pipeline runs this for every job.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av
from PIL import Image

from vidgen.media.probe import ProbeError, VideoInfo, _duration
from vidgen.media.thumbnails import FORMATS, POSITION

# Up to this many pixels per frame a single decoding thread is faster than FFmpeg's pool.
SMALL_FRAME_PIXELS = 640 * 360


def inspect(video: Path, thumbnail: Path, *, width: int, fmt: str) -> VideoInfo:
    """Probe ``video`` and write its thumbnail to ``thumbnail``. Blocking: see :func:`ainspect`.

    Raises:
        ProbeError: the file is not a readable video (no stream, no duration, no frame).
        ValueError: an unknown thumbnail format or a width below 1.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown thumbnail format {fmt!r}; use 'jpeg' or 'webp'.")
    if width < 1:
        raise ValueError("The thumbnail width must be at least 1.")
    try:
        file_size = os.stat(video).st_size
        with av.open(str(video), mode="r") as container:
            if not container.streams.video:
                raise ProbeError("The file has no video stream.")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frame_w, frame_h, codec = ctx.width, ctx.height, ctx.name
            if not frame_w or not frame_h:
                raise ProbeError("The video's frame size could not be determined.")
            duration = _duration(container, stream)
            if not duration or duration <= 0:
                raise ProbeError("The video's duration could not be determined.")
            if frame_w * frame_h > SMALL_FRAME_PIXELS:
                stream.thread_type = "AUTO"
            image = _frame_at(container, stream, duration * POSITION)
    except ProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"The file is not a readable video: {exc}") from exc
    target_w = min(width, image.width)
    target_h = max(1, round(image.height * target_w / image.width))
    if (target_w, target_h) != image.size:
        image = image.resize((target_w, target_h), Image.LANCZOS, reducing_gap=2.0)
    pil_format, options = FORMATS[fmt]
    image.save(thumbnail, pil_format, **options)
    return VideoInfo(
        duration_seconds=round(duration, 3),
        frame_rate=round(float(rate), 3) if rate else 0.0,
        width=frame_w,
        height=frame_h,
        codec=codec,
        file_size=file_size,
    )


def _frame_at(
    container: av.container.InputContainer, stream: av.VideoStream, target: float
) -> Image.Image:
    frame = None
    if target > 0:
        # _duration may have demuxed to the end: seek back to the keyframe before the target.
        container.seek(round(target / stream.time_base), stream=stream, backward=True)
        for candidate in container.decode(stream):
            frame = candidate
            if candidate.time is not None and candidate.time >= target:
                break
    if frame is None:
        container.seek(0)
        frame = next(container.decode(stream), None)
    if frame is None:
        raise ProbeError("No frame could be decoded from the video.")
    return frame.to_image()


async def ainspect(video: Path, thumbnail: Path, *, width: int, fmt: str) -> VideoInfo:
    """:func:`inspect` in a worker thread, so the event loop never blocks."""
    return await asyncio.to_thread(inspect, video, thumbnail, width=width, fmt=fmt)
