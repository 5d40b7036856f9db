"""Technical metadata of a video file, read with PyAV (FFmpeg's demuxers, no decoding)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av


class ProbeError(Exception):
    """The file is not a readable video (no container, no video stream, no duration)."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file."""

    duration_seconds: float
    frame_rate: float
    width: int
    height: int
    codec: str  # FFmpeg's codec name, e.g. "h264", "vp9", "av1"
    file_size: int


def probe(path: Path | str) -> VideoInfo:
    """Read a video's duration, frame rate, size and codec.

    Synchronous and blocking: run it in a thread.

    Args:
        path: The video file.

    Returns:
        The video's metadata.

    Raises:
        ProbeError: When the file cannot be opened as a video or has no video stream.
    """
    path = Path(path)
    try:
        file_size = os.stat(path).st_size
        with av.open(str(path), mode="r") as container:
            return read_info(container, file_size)
    except ProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"The file is not a readable video: {exc}") from exc


def read_info(container: av.container.InputContainer, file_size: int) -> VideoInfo:
    """The metadata of an open container's first video stream.

    Raises:
        ProbeError: no video stream, or no duration or frame size.
    """
    if not container.streams.video:
        raise ProbeError("The file has no video stream.")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    duration = _duration(container, stream)
    if not duration or duration <= 0:
        raise ProbeError("The video's duration could not be determined.")
    if not ctx.width or not ctx.height:
        raise ProbeError("The video's frame size could not be determined.")
    return VideoInfo(
        duration_seconds=round(duration, 3),
        frame_rate=round(float(rate), 3) if rate else 0.0,
        width=ctx.width,
        height=ctx.height,
        codec=ctx.name,
        file_size=file_size,
    )


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:  # e.g. WebM keeps it on the container only
        return container.duration / av.time_base
    # Last resort: the end of the last packet, read without decoding.
    end = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            stop = (packet.pts + (packet.duration or 0)) * packet.time_base
            end = stop if end is None else max(end, stop)
    return float(end) if end is not None else None
