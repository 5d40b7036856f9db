"""Video thumbnails: one frame from about 10% into the video, scaled to a fixed width."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
from PIL import Image

from vidgen.media.probe import ProbeError

FORMATS = {
    "jpeg": ("JPEG", {"quality": 82, "optimize": True}),
    "jpg": ("JPEG", {"quality": 82, "optimize": True}),
    "webp": ("WEBP", {"quality": 80}),
}
POSITION = 0.10
# Up to this many pixels per frame, one scaling thread beats FFmpeg's slice threads.
SMALL_FRAME_PIXELS = 640 * 360

_local = threading.local()  # one colour converter per thread, kept between frames


def make_thumbnail(
    video_path: Path | str, dest_path: Path | str, *, width: int, fmt: str = "jpeg"
) -> tuple[int, int]:
    """Write a thumbnail of the frame about 10% into the video.

    The frame keeps its aspect ratio and is never scaled up. Synchronous and blocking: run it
    in a thread.

    Args:
        video_path: The video.
        dest_path: Where to write the image.
        width: The thumbnail's width in pixels (at most the video's own width).
        fmt: ``"jpeg"`` (or ``"jpg"``) or ``"webp"``.

    Returns:
        The thumbnail's ``(width, height)``.

    Raises:
        ProbeError: When no frame can be decoded from the video.
        ValueError: For an unknown format or a width below 1.
    """
    check_options(width=width, fmt=fmt)
    try:
        with av.open(str(video_path), mode="r") as container:
            if not container.streams.video:
                raise ProbeError("The file has no video stream.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = None
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            image = frame_at(container, stream, (duration or 0.0) * POSITION)
    except ProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"The file is not a readable video: {exc}") from exc
    return write_thumbnail(image, dest_path, width=width, fmt=fmt)


def check_options(*, width: int, fmt: str) -> None:
    """Refuse an unknown format or a width below 1 (ValueError) before any decoding."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown thumbnail format {fmt!r}; use 'jpeg' or 'webp'.")
    if width < 1:
        raise ValueError("The thumbnail width must be at least 1.")


def frame_at(
    container: av.container.InputContainer, stream: av.VideoStream, target: float
) -> Image.Image:
    """The first frame at or after ``target`` seconds (the first frame when there is none).

    Raises:
        ProbeError: no frame can be decoded.
    """
    frame = None
    if target > 0:
        # Seek to the keyframe before the target (reading may have reached the end), then
        # decode forward to it.
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
    return to_image(frame)


def to_image(frame: av.VideoFrame) -> Image.Image:
    """The frame as an RGB image: the pixels of ``frame.to_image()``, converted cheaper.

    ``frame.to_image()`` sets up a new swscale context (and its threads) for every frame,
    which costs more than converting a small frame; this keeps one converter per thread
    (swscale re-initialises it when the frame's size or format changes) and converts small
    frames on the calling thread. Same pixels either way (tests/media check it).
    """
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    threads = 1 if frame.width * frame.height <= SMALL_FRAME_PIXELS else 0
    return reformatter.reformat(frame, format="rgb24", threads=threads).to_image()


def encode_thumbnail(image: Image.Image, *, width: int, fmt: str) -> tuple[bytes, tuple[int, int]]:
    """Scale ``image`` to ``width`` (never up, aspect kept) and encode it; bytes and size."""
    target_w = min(width, image.width)
    target_h = max(1, round(image.height * target_w / image.width))
    if (target_w, target_h) != image.size:
        image = image.resize((target_w, target_h), Image.LANCZOS, reducing_gap=2.0)
    pil_format, options = FORMATS[fmt]
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **options)
    return buffer.getvalue(), (target_w, target_h)


def write_thumbnail(
    image: Image.Image, dest_path: Path | str, *, width: int, fmt: str
) -> tuple[int, int]:
    """Scale ``image`` to ``width`` (never up, aspect kept) and save it; its final size."""
    data, size = encode_thumbnail(image, width=width, fmt=fmt)
    Path(dest_path).write_bytes(data)
    return size
