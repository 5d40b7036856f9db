"""Fixtures for the media tests: a storage root, a secret, small images and rendered videos."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from vidgen.media.storage import LocalStorage

SECRET = "test-secret-do-not-use"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


@pytest.fixture
def secret() -> str:
    return SECRET


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real image in ``fmt`` (a Pillow format name)."""
    im = Image.new("RGB", size, (200, 30, 90))
    for x in range(0, size[0], 8):
        im.putpixel((x, x % size[1]), (10, 240, 10))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` × ``height`` built without allocating its pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _noop_progress(_fraction: float) -> None:
    pass


def _never() -> bool:
    return False


@pytest.fixture(scope="session")
def small_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 12 fps, 256x256 MP4 rendered once for the probe and thumbnail tests."""
    from vidgen.media import render

    dest = tmp_path_factory.mktemp("video") / "small.mp4"
    render.render_text_video(
        "a red fox jumps over the moon",
        width=256,
        height=256,
        duration=2,
        fps=12,
        fmt="mp4",
        seed=1,
        dest=dest,
        progress=_noop_progress,
        cancelled=_never,
    )
    return dest
