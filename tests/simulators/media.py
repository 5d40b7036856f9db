"""A real, tiny MP4 (16 frames, 64x64, H.264, yuv420p), generated once with PyAV."""

from __future__ import annotations

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
