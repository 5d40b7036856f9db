from __future__ import annotations

import pytest

from vidgen import errors
from vidgen.media.images import CheckedImage, check_image

from .conftest import huge_png, image_bytes

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000, "max_side": 8192}


@pytest.mark.parametrize(
    ("fmt", "content_type", "ext"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")],
)
def test_accepts_png_jpeg_webp(fmt: str, content_type: str, ext: str) -> None:
    checked = check_image(image_bytes(fmt), **LIMITS)
    assert checked == CheckedImage(content_type=content_type, ext=ext, width=64, height=48)


def _refused(data: bytes, **limits: int) -> errors.BadUserInput:
    with pytest.raises(errors.BadUserInput) as info:
        check_image(data, **{**LIMITS, **limits})
    assert info.value.field == "inputImage"
    assert info.value.code == "BAD_USER_INPUT"
    return info.value


def test_text_file_named_png_is_refused() -> None:
    exc = _refused(b"just some text, saved as picture.png\n")
    assert "PNG, JPEG or WebP" in exc.message


def test_gif_is_refused() -> None:
    exc = _refused(image_bytes("GIF"))
    assert "GIF" in exc.message


def test_bmp_is_refused() -> None:
    assert "BMP" in _refused(image_bytes("BMP")).message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_is_refused(fmt: str) -> None:
    data = image_bytes(fmt, (200, 150))
    exc = _refused(data[: len(data) * 2 // 3])
    assert "truncated" in exc.message


def test_corrupt_png_checksum_is_refused() -> None:
    data = bytearray(image_bytes("PNG"))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF
    _refused(bytes(data))


def test_empty_is_refused() -> None:
    assert "empty" in _refused(b"").message


def test_too_many_bytes_is_refused() -> None:
    data = image_bytes("PNG")
    assert "bytes" in _refused(data, max_bytes=len(data) - 1).message


def test_decompression_bomb_is_refused() -> None:
    # 20000 x 20000 = 400 Mpx in ~50 kB; over Pillow's own bomb limit as well as ours.
    bomb = huge_png(20000, 20000)
    assert len(bomb) < 200_000
    assert "pixels" in _refused(bomb).message
    # Even with our limits lifted, Pillow's bomb error becomes a refusal, not a crash.
    assert "pixels" in _refused(bomb, max_pixels=10**10, max_side=10**6).message


def test_pixel_and_side_limits() -> None:
    data = image_bytes("PNG", (300, 200))
    assert "pixels" in _refused(data, max_pixels=300 * 200 - 1).message
    assert "at most 299" in _refused(data, max_side=299).message
    assert check_image(data, **{**LIMITS, "max_pixels": 300 * 200, "max_side": 300}).width == 300


def test_moderately_large_image_below_bomb_limit_is_refused_before_decoding() -> None:
    # 10000 x 5000 = 50 Mpx: under Pillow's warning threshold, over our 40 Mpx limit.
    exc = _refused(huge_png(10000, 5000))
    assert "10000x5000" in exc.message
