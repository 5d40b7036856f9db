"""Video thumbnails: one frame from about 10% into the video, scaled to a fixed width."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
from PIL import Image

from vidgen.media.probe import ProbeError

FORMATS = {
    "jpeg": ("JPEG", {"quality": 82, "optimize": True}),
    "jpg": ("JPEG", {"quality": 82, "optimize": True}),
    "webp": ("WEBP", {"quality": 80}),
}
POSITION = 0.10


def make_thumbnail(
    video_path: Path | str, dest_path: Path | str, *, width: int, fmt: str = "jpeg"
) -> tuple[int, int]:
    """Write a thumbnail of the frame about 10% into the video.

    The frame keeps its aspect ratio and is never scaled up. Synchronous and blocking: run it
    in a thread (see :func:`amake_thumbnail`).

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
    if fmt not in FORMATS:
        raise ValueError(f"Unknown thumbnail format {fmt!r}; use 'jpeg' or 'webp'.")
    if width < 1:
        raise ValueError("The thumbnail width must be at least 1.")
    image = _grab_frame(Path(video_path))
    target_w = min(width, image.width)
    target_h = max(1, round(image.height * target_w / image.width))
    if (target_w, target_h) != image.size:
        image = image.resize((target_w, target_h), Image.LANCZOS, reducing_gap=2.0)
    pil_format, options = FORMATS[fmt]
    image.save(dest_path, pil_format, **options)
    return target_w, target_h


def _grab_frame(path: Path) -> Image.Image:
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise ProbeError("The file has no video stream.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = None
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            target = (duration or 0.0) * POSITION
            frame = None
            if target > 0:
                # Seek to the keyframe before the target, then decode forward to it.
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
    except ProbeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"The file is not a readable video: {exc}") from exc


async def amake_thumbnail(
    video_path: Path | str, dest_path: Path | str, *, width: int, fmt: str = "jpeg"
) -> tuple[int, int]:
    """:func:`make_thumbnail` in a worker thread, so the event loop never blocks."""
    return await asyncio.to_thread(make_thumbnail, video_path, dest_path, width=width, fmt=fmt)
