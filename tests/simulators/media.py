"""A real, tiny MP4 (16 frames, 64x64, H.264, yuv420p), generated once with PyAV; and what
the simulators use to look at the images they are sent."""

from __future__ import annotations

import base64
import binascii
import functools
import io

import av
from PIL import Image

FRAMES = 16
SIZE = 64
FPS = 8


@functools.cache
def sample_mp4() -> bytes:
    """The bytes of a playable MP4 (about 2 s of a moving gradient)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = SIZE
        stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for index in range(FRAMES):
            image = Image.new("RGB", (SIZE, SIZE), (index * 16 % 256, 80, 200 - index * 8))
            image.paste((255, 255, 255), (index * 3, 20, index * 3 + 12, 44))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def image_info(data: bytes) -> tuple[str, tuple[int, int]] | None:
    """(format, (width, height)) of an image PIL can read, e.g. ("PNG", (320, 200)); None
    for anything else (vendors decode what they are sent)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return str(image.format), image.size
    except Exception:  # noqa: BLE001 - PIL raises many kinds for garbage
        return None


def data_uri_image(uri: str) -> tuple[str, tuple[int, int]] | None:
    """The image a ``data:image/...;base64,`` URI holds (see :func:`image_info`)."""
    head, _, payload = uri.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        return None
    try:
        return image_info(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None
