"""A film from clips: decode each clip in turn and encode one video (PyAV, Pillow).

The stitcher streams. It decodes one clip at a time, one frame at a time, and hands each
frame to the encoder before it decodes the next. Memory stays at one decoded frame per input
plus the crossfade's few frames (:data:`FADE_SECONDS`), whatever the film's length.

- **Size and rate**: every clip is scaled to the film's ``width``x``height`` and resampled
  to its ``fps``. Output frame ``n`` of a clip shows the clip's latest frame at or before
  ``n / fps`` (nearest within half an output frame), so a clip keeps its duration to within
  one output frame, whatever its own rate.
- **Captions**: a clip's caption is drawn on a dark band at the bottom of each of its frames.
- **Transitions**: ``cut`` joins clips as they are. ``crossfade`` blends across the
  boundary without shortening the film: the last frames of a clip fade toward the next
  clip's first frame, and the next clip's first frames fade in from this clip's last frame.
  A clip's middle is never touched (a fade takes at most a quarter of a clip).
- Audio is not carried over: a film has one video stream.

:func:`stitch` is synchronous and CPU-bound: run it in the CPU pool (``vidgen.jobs.film``).
"""

from __future__ import annotations

import collections
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

from vidgen.media.render import CONTENT_TYPES, Encoder, RenderCancelled, frame_rate

# How long a crossfade lasts in all: half of it at the end of one clip, half at the start of
# the next.
FADE_SECONDS = 0.5
CUT = "cut"
CROSSFADE = "crossfade"


@dataclass(frozen=True)
class Part:
    """One clip of the film: its file, its caption (None: none) and how it passes into the
    next clip (``cut`` or ``crossfade``; the last clip's is unused)."""

    path: Path
    caption: str | None = None
    transition: str = CUT


@dataclass(frozen=True)
class Stitched:
    """What :func:`stitch` wrote: the film's frame count and each clip's."""

    frames: int
    part_frames: tuple[int, ...]
    fps: float

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def stitch(
    parts: list[Part],
    dest: Path,
    *,
    fmt: str,
    width: int,
    height: int,
    fps: float,
    cancelled: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
) -> Stitched:
    """Write the film of ``parts`` to ``dest`` (see the module docstring).

    Args:
        parts: the clips in order (at least one).
        dest: the file to write (``fmt``: ``mp4`` or ``webm``).
        width, height, fps: the film's size and rate.
        cancelled: polled between frames; True stops the stitch (RenderCancelled).
        progress: called with the fraction of clips done.

    Raises:
        ValueError: no parts, or a clip without a video stream.
        RenderCancelled: ``cancelled()`` said so; ``dest`` may hold a partial file.
        av.FFmpegError: a clip could not be decoded.
    """
    if not parts:
        raise ValueError("a film needs at least one clip")
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown output format {fmt!r}")
    rate = frame_rate(fps)
    out_fps = float(rate)
    time_base = 1 / rate
    fade = max(1, round(FADE_SECONDS * out_fps / 2))
    counts: list[int] = []
    with Encoder(dest, fmt=fmt, width=width, height=height, fps=out_fps) as encoder:
        previous_last: Image.Image | None = None  # the last clip's last frame, unblended
        for index, part in enumerate(parts):
            fade_in = index > 0 and parts[index - 1].transition == CROSSFADE
            fade_out = index + 1 < len(parts) and part.transition == CROSSFADE
            caption = _caption_band(part.caption, width, height) if part.caption else None
            next_first: Image.Image | None = None
            if fade_out:
                nxt = parts[index + 1]
                band = _caption_band(nxt.caption, width, height) if nxt.caption else None
                next_first = _first_frame(nxt.path, width, height, band)
            estimate = _estimated_frames(part.path, out_fps)
            part_fade = min(fade, estimate // 4)
            held: collections.deque[Image.Image | av.VideoFrame] = collections.deque()
            count = 0
            last: Image.Image | av.VideoFrame | None = None
            for frame in _resampled(part.path, out_fps, width, height, caption, cancelled):
                if fade_in and count < part_fade and previous_last is not None:
                    weight = (part_fade + count + 1) / (2 * part_fade + 1)
                    frame = Image.blend(previous_last, _image(frame), weight)
                count += 1
                last = frame
                if fade_out and part_fade:
                    held.append(frame)
                    if len(held) <= part_fade:
                        continue
                    frame = held.popleft()
                _emit(encoder, frame, time_base)
            if last is None:
                raise ValueError(f"clip {index} has no video frames")
            tail = min(len(held), count // 4)
            while len(held) > tail:
                _emit(encoder, held.popleft(), time_base)
            for j, frame in enumerate(held):
                assert next_first is not None
                weight = (j + 1) / (2 * tail + 1)
                _emit(encoder, Image.blend(_image(frame), next_first, weight), time_base)
            previous_last = _image(last)
            counts.append(count)
            if progress is not None:
                progress((index + 1) / len(parts))
        encoder.finish()
    return Stitched(sum(counts), tuple(counts), out_fps)


def _resampled(
    path: Path,
    fps: float,
    width: int,
    height: int,
    caption: Image.Image | None,
    cancelled: Callable[[], bool] | None,
) -> Iterator[Image.Image | av.VideoFrame]:
    """The clip's frames at ``fps``, scaled, captioned (an image when captioned, else a
    frame). One decoded frame is held at a time."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        in_step = 1.0 / float(stream.average_rate or stream.guessed_rate or fps)
        start: float | None = None
        held: av.VideoFrame | None = None
        shown: Image.Image | av.VideoFrame | None = None  # ``held`` converted, once
        n = 0
        last_t = 0.0
        half = 0.5 / fps
        for frame in container.decode(stream):
            if cancelled is not None and cancelled():
                raise RenderCancelled()
            t = _time(frame, stream)
            if start is None:
                start = t
            t -= start
            while held is not None and n / fps + half < t:
                if shown is None:
                    shown = _convert(held, width, height, caption)
                yield shown
                n += 1
            held, shown, last_t = frame, None, t
        if held is None:
            return
        end = last_t + in_step
        while n / fps + half < end:
            if shown is None:
                shown = _convert(held, width, height, caption)
            yield shown
            n += 1


def _time(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> float:
    if frame.time is not None:
        return float(frame.time)
    if frame.pts is not None and stream.time_base is not None:
        return float(frame.pts * stream.time_base)
    return 0.0


def _convert(
    frame: av.VideoFrame, width: int, height: int, caption: Image.Image | None
) -> Image.Image | av.VideoFrame:
    if caption is None:
        return frame.reformat(width=width, height=height, format="yuv420p")
    image = frame.to_image(width=width, height=height)
    image.paste(caption, (0, height - caption.height), caption)
    return image


def _image(frame: Image.Image | av.VideoFrame) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame
    return frame.to_image()


def _emit(encoder: Encoder, frame: Image.Image | av.VideoFrame, time_base: Fraction) -> None:
    if isinstance(frame, Image.Image):
        frame = av.VideoFrame.from_image(frame)
    else:
        # A decoded (or scaled) frame keeps its clip's time base and picture type: PyAV would
        # rescale the film's frame numbers from that time base (packets the muxer refuses),
        # and the encoder would force the type. The film's own time base makes the first a
        # no-op; the second is dropped.
        frame.time_base = time_base
        frame.pict_type = av.video.frame.PictureType.NONE
    encoder.add_frame(frame)


def _first_frame(path: Path, width: int, height: int, caption: Image.Image | None) -> Image.Image:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return _image(_convert(frame, width, height, caption))
    raise ValueError(f"{path.name} has no video frames")


def _estimated_frames(path: Path, fps: float) -> int:
    """The clip's length in output frames, from its header (0 when it does not say)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if container.streams.video else None
        if stream is None:
            return 0
        if stream.duration is not None and stream.time_base is not None:
            return int(float(stream.duration * stream.time_base) * fps)
        if container.duration is not None:
            return int(container.duration / av.time_base * fps)
        return int(stream.frames or 0)


def _caption_band(text: str, width: int, height: int) -> Image.Image:
    """The caption as an RGBA band (translucent dark background, white text) as wide as the
    film, at most a third of its height."""
    size = max(10, height // 18)
    font = ImageFont.load_default(size=size)
    chars = max(8, int(width / (size * 0.55)))
    lines = textwrap.wrap(" ".join(text.split()), chars)[: max(1, height // (3 * size) - 1)]
    pad = max(2, size // 3)
    band_height = min(height // 3, len(lines) * (size + pad) + 2 * pad)
    band = Image.new("RGBA", (width, band_height), (0, 0, 0, 150))
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        left, _, right, _ = draw.textbbox((0, 0), line, font=font)
        x = max(pad, (width - (right - left)) // 2)
        draw.text((x, pad + i * (size + pad)), line, font=font, fill=(255, 255, 255, 255))
    return band
