"""The local renderer: real videos made with Pillow (frames) and PyAV (encoding).

Text-to-video encodes an animated scene derived from the prompt, image-to-video a pan and
zoom over the input image (the Ken Burns effect): see :mod:`vidgen.media.scenes` for what
is drawn; the same inputs always give the same frames.

MP4 is H.264 (libx264, yuv420p, ``veryfast``), WebM is VP9 (libvpx-vp9, yuv420p, realtime
with a high ``cpu-used``). Both functions are synchronous and CPU-bound: run them in a worker
thread. They report progress, stop promptly when asked to, and never leave a partial file.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from vidgen.media.scenes import KenBurnsScene, TextScene

FORMATS = ("mp4", "webm")
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}
MAX_SIDE = 4096

Progress = Callable[[float], None]
Cancelled = Callable[[], bool]


class RenderCancelled(Exception):
    """The render was stopped because ``cancelled()`` returned True; no file was left."""


@dataclass(frozen=True)
class CodecSettings:
    """How one output format is encoded."""

    container_format: str
    codec: str
    options: dict[str, str]
    container_options: dict[str, str]


CODECS: dict[str, CodecSettings] = {
    "mp4": CodecSettings(
        container_format="mp4",
        codec="libx264",
        options={"preset": "veryfast", "crf": "23"},
        # moov first, so a browser can start playing (and seeking) before the whole file.
        container_options={"movflags": "+faststart"},
    ),
    "webm": CodecSettings(
        container_format="webm",
        codec="libvpx-vp9",
        options={
            "deadline": "realtime",
            "cpu-used": "8",
            "row-mt": "1",
            "crf": "33",
            "b:v": "0",
        },
        container_options={},
    ),
}


def _check_params(width: int, height: int, duration: float, fps: float, fmt: str) -> int:
    """Validate the output parameters and return the number of frames."""
    if fmt not in CODECS:
        raise ValueError(f"Unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, int) or side < 16 or side > MAX_SIDE or side % 2:
            raise ValueError(f"{name} must be an even number of pixels in 16..{MAX_SIDE}.")
    if not (0 < fps <= 120):
        raise ValueError("fps must be in (0, 120].")
    if not (0 < duration <= 600):
        raise ValueError("duration must be in (0, 600] seconds.")
    return max(1, round(duration * fps))


def frame_rate(fps: float) -> Fraction:
    """The exact rate for ``fps`` (e.g. 29.97 becomes 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


class Encoder:
    """One output file being encoded; use as a context manager, feed it frames.

    Args:
        dest: The file to write.
        fmt: ``"mp4"`` or ``"webm"``.
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        fps: Frames per second.
    """

    def __init__(self, dest: Path, *, fmt: str, width: int, height: int, fps: float) -> None:
        settings = CODECS[fmt]
        rate = frame_rate(fps)
        self.container = av.open(
            str(dest),
            mode="w",
            format=settings.container_format,
            options=dict(settings.container_options),
        )
        try:
            stream = self.container.add_stream(
                settings.codec, rate=rate, options=dict(settings.options)
            )
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / rate
            # A keyframe every 2 s keeps seeking (players, thumbnails) cheap.
            stream.codec_context.gop_size = max(1, round(float(rate) * 2))
        except BaseException:
            self.container.close()
            raise
        self.stream = stream
        self._pts = 0

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    def add_frame(self, frame: av.VideoFrame) -> None:
        """Encode one frame (any pixel format; it is converted to yuv420p)."""
        frame.pts = self._pts
        self._pts += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def finish(self) -> None:
        """Flush the encoder (call once, after the last frame)."""
        for packet in self.stream.encode(None):
            self.container.mux(packet)


_DONE = object()


@contextlib.contextmanager
def _prefetch(images: Iterable[Image.Image], depth: int = 4) -> Iterator[Iterator[av.VideoFrame]]:
    """Draw and convert frames in a helper thread, so drawing overlaps encoding.

    Pillow and PyAV release the GIL in their heavy parts, so this uses a second core while the
    encoder works. The helper stops when the consumer leaves (done, failed or cancelled).
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for image in images:
                if not put(av.VideoFrame.from_image(image)):
                    return
            put(_DONE)
        except BaseException as exc:  # handed over and re-raised in the consumer
            put(exc)

    def consume() -> Iterator[av.VideoFrame]:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    thread = threading.Thread(target=produce, name="vidgen-frames", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def encode_frames(
    frames: Iterable[Image.Image],
    *,
    total: int,
    dest: Path,
    fmt: str,
    width: int,
    height: int,
    fps: float,
    progress: Progress,
    cancelled: Cancelled,
) -> None:
    """Encode ``frames`` into ``dest``, reporting progress and honouring cancellation.

    Raises:
        RenderCancelled: When ``cancelled()`` turned true; ``dest`` is removed.
    """
    dest = Path(dest)
    try:
        with (
            Encoder(dest, fmt=fmt, width=width, height=height, fps=fps) as encoder,
            _prefetch(frames) as ready,
        ):
            last_reported = -1.0
            for index, frame in enumerate(ready):
                if cancelled():
                    raise RenderCancelled("The render was cancelled.")
                encoder.add_frame(frame)
                # The last 2% are the flush; 1.0 is reported only when the file is complete.
                fraction = round(0.98 * (index + 1) / total, 3)
                if fraction - last_reported >= 0.01:
                    progress(fraction)
                    last_reported = fraction
            if cancelled():
                raise RenderCancelled("The render was cancelled.")
            encoder.finish()
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    progress(1.0)


def render_text_video(
    prompt: str,
    *,
    width: int,
    height: int,
    duration: float,
    fps: float,
    fmt: str,
    seed: int,
    dest: Path,
    progress: Progress,
    cancelled: Cancelled,
    style: str | None = None,
) -> None:
    """Render an animated scene for ``prompt`` into ``dest``.

    The same prompt, seed, style and size always give the same frames.

    Args:
        prompt: The text to visualise (its words appear in the video).
        width: Output width in pixels (even).
        height: Output height in pixels (even).
        duration: Length in seconds.
        fps: Frames per second.
        fmt: ``"mp4"`` (H.264) or ``"webm"`` (VP9).
        seed: Varies palette and motion.
        dest: The output file; removed again if the render fails or is cancelled.
        progress: Called with the done fraction (0..1) as frames are encoded.
        cancelled: Polled before every frame; returning True stops the render.
        style: Optional style name, mixed into the scene's hash.

    Raises:
        RenderCancelled: When ``cancelled()`` returned True.
        ValueError: For an unknown format or an unusable size, duration or frame rate.
    """
    total = _check_params(width, height, duration, fps, fmt)
    scene = TextScene(
        prompt, width=width, height=height, fps=fps, duration=duration, seed=seed, style=style
    )
    encode_frames(
        (scene.frame(i) for i in range(total)),
        total=total,
        dest=dest,
        fmt=fmt,
        width=width,
        height=height,
        fps=fps,
        progress=progress,
        cancelled=cancelled,
    )


def render_image_video(
    image_bytes: bytes,
    *,
    width: int,
    height: int,
    duration: float,
    fps: float,
    fmt: str,
    seed: int,
    dest: Path,
    progress: Progress,
    cancelled: Cancelled,
) -> None:
    """Render a pan-and-zoom (Ken Burns) video over an image into ``dest``.

    The image is cropped to fill the frame (no bars), whatever its aspect ratio.

    Args:
        image_bytes: The input image, already checked (see :mod:`vidgen.media.images`).
        width: Output width in pixels (even).
        height: Output height in pixels (even).
        duration: Length in seconds.
        fps: Frames per second.
        fmt: ``"mp4"`` (H.264) or ``"webm"`` (VP9).
        seed: Picks the zoom direction and pan path.
        dest: The output file; removed again if the render fails or is cancelled.
        progress: Called with the done fraction (0..1) as frames are encoded.
        cancelled: Polled before every frame; returning True stops the render.

    Raises:
        RenderCancelled: When ``cancelled()`` returned True.
        ValueError: For an unknown format or an unusable size, duration or frame rate.
        PIL.UnidentifiedImageError: When the bytes are not an image.
    """
    total = _check_params(width, height, duration, fps, fmt)
    scene = KenBurnsScene(image_bytes, width=width, height=height, frames=total, seed=seed)
    encode_frames(
        (scene.frame(i) for i in range(total)),
        total=total,
        dest=dest,
        fmt=fmt,
        width=width,
        height=height,
        fps=fps,
        progress=progress,
        cancelled=cancelled,
    )
