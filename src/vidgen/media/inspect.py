"""A finished video's metadata and its thumbnail in ONE pass over the file.

The same facts as :func:`vidgen.media.probe.probe` and the same image as
:func:`vidgen.media.thumbnails.make_thumbnail` (built from the same pieces), but the container
is opened once, and small videos are decoded and converted on the calling thread: FFmpeg's
frame and slice threads cost more to start (about 1 ms) than a small frame costs to decode,
and the job pipeline runs this for every job. When the caller knows the container format
(from the provider's content type), FFmpeg is told instead of probing for it; a file that is
not what it was said to be is opened again with probing, so the hint never changes a result.
"""

from __future__ import annotations

import os
from pathlib import Path

import av

from vidgen.media.probe import ProbeError, VideoInfo, read_info
from vidgen.media.thumbnails import (
    POSITION,
    SMALL_FRAME_PIXELS,
    check_options,
    encode_thumbnail,
    frame_at,
)

# Container formats worth naming to FFmpeg, by file extension / output format.
CONTAINER_FORMATS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "matroska"}


def read(
    video: Path, *, width: int, fmt: str, container_format: str | None = None
) -> tuple[VideoInfo, bytes]:
    """Probe ``video`` and encode its thumbnail in memory: the metadata and the image's bytes.

    Args:
        video: the file.
        width: the thumbnail's width (never scaled up).
        fmt: the thumbnail's format (``jpeg``/``jpg``/``webp``).
        container_format: the container's FFmpeg name when known (``mp4``, ``webm``, see
            :data:`CONTAINER_FORMATS`): skips format probing; a wrong hint costs a second open.

    Raises:
        ProbeError: the file is not a readable video (no stream, no duration, no frame).
        ValueError: an unknown thumbnail format or a width below 1.
    """
    check_options(width=width, fmt=fmt)
    try:
        with _open(video, container_format) as container:
            info = read_info(container, os.stat(video).st_size)
            stream = container.streams.video[0]
            if info.width * info.height > SMALL_FRAME_PIXELS:
                stream.thread_type = "AUTO"
            else:
                stream.codec_context.thread_count = 1
            image = frame_at(container, stream, info.duration_seconds * POSITION)
    except ProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"The file is not a readable video: {exc}") from exc
    data, _ = encode_thumbnail(image, width=width, fmt=fmt)
    return info, data


def _open(video: Path, container_format: str | None) -> av.container.InputContainer:
    if container_format:
        try:
            return av.open(str(video), mode="r", format=container_format)
        except (av.FFmpegError, ValueError):
            pass  # not what its content type said: let FFmpeg find out what it is
    return av.open(str(video), mode="r")
