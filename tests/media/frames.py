"""Decoded frames for tests that compare videos: a frame at a time, and how far apart two
frames are."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image, ImageChops, ImageStat


def frame_at(path: Path, seconds: float, *, size: tuple[int, int] | None = None) -> Image.Image:
    """The decoded frame shown at ``seconds`` (the last one starting at or before it),
    scaled to ``size`` when given."""
    chosen = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = None
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            start = t if start is None else start
            if chosen is not None and t - start > seconds + 1e-6:
                break
            chosen = frame
    assert chosen is not None, f"{path} has no frames"
    image = chosen.to_image()
    return image.resize(size) if size is not None and image.size != size else image


def difference(
    a: Image.Image, b: Image.Image, *, box: tuple[int, int, int, int] | None = None
) -> float:
    """Mean absolute difference of two same-sized RGB frames (0 to 255), in ``box`` if given."""
    if box is not None:
        a, b = a.crop(box), b.crop(box)
    stat = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB")))
    return sum(stat.mean) / len(stat.mean)


def frame_count(path: Path) -> tuple[int, float]:
    """How many frames the video has, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), float(stream.average_rate)
