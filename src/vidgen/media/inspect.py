"""A finished video's metadata and its thumbnail in ONE pass over the file.

The same facts as :func:`vidgen.media.probe.probe` and the same image as
:func:`vidgen.media.thumbnails.make_thumbnail` (built from the same pieces), but the container
is opened once, and small videos are decoded on the calling thread: FFmpeg's frame threads
cost more to start (about 1 ms) than a small frame costs to decode, and the job pipeline runs
this for every job.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av

from vidgen.media.probe import ProbeError, VideoInfo, read_info
from vidgen.media.thumbnails import POSITION, check_options, frame_at, write_thumbnail

# Up to this many pixels per frame a single decoding thread is faster than FFmpeg's pool.
SMALL_FRAME_PIXELS = 640 * 360


def inspect(video: Path, thumbnail: Path, *, width: int, fmt: str) -> VideoInfo:
    """Probe ``video`` and write its thumbnail to ``thumbnail``. Blocking: see :func:`ainspect`.

    Raises:
        ProbeError: the file is not a readable video (no stream, no duration, no frame).
        ValueError: an unknown thumbnail format or a width below 1.
    """
    check_options(width=width, fmt=fmt)
    try:
        with av.open(str(video), mode="r") as container:
            info = read_info(container, os.stat(video).st_size)
            stream = container.streams.video[0]
            if info.width * info.height > SMALL_FRAME_PIXELS:
                stream.thread_type = "AUTO"
            image = frame_at(container, stream, info.duration_seconds * POSITION)
    except ProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"The file is not a readable video: {exc}") from exc
    write_thumbnail(image, thumbnail, width=width, fmt=fmt)
    return info


async def ainspect(video: Path, thumbnail: Path, *, width: int, fmt: str) -> VideoInfo:
    """:func:`inspect` in a worker thread, so the event loop never blocks."""
    return await asyncio.to_thread(inspect, video, thumbnail, width=width, fmt=fmt)
