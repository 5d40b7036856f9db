"""Input images, checked by their content (never their name) with Pillow.

Only PNG, JPEG and WebP are accepted. The image is fully decoded, so a truncated or corrupt
file is refused, and its pixel size is checked from the header *before* decoding, so a
decompression bomb never gets the chance to allocate its pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from vidgen import errors

FIELD = "inputImage"

# content type, extension and Pillow's format name for each accepted type
_TYPES = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}


@dataclass(frozen=True)
class CheckedImage:
    """An input image that passed :func:`check_image`."""

    content_type: str
    ext: str
    width: int
    height: int


def _sniff(data: bytes) -> str | None:
    """The format named by the file's magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_unsupported(data: bytes) -> str:
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF"
    if data.startswith(b"BM"):
        return "a BMP"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "an AVIF/HEIC"
    return "of an unrecognised type"


def _refuse(message: str) -> errors.BadUserInput:
    return errors.BadUserInput(message, field=FIELD)


def check_image(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int) -> CheckedImage:
    """Check an uploaded image by content and return its type and size.

    Args:
        data: The file's bytes.
        max_bytes: Largest accepted file size.
        max_pixels: Largest accepted width × height.
        max_side: Largest accepted width or height.

    Returns:
        The image's content type, extension, width and height.

    Raises:
        vidgen.errors.BadUserInput: With ``field="inputImage"`` for an empty, too large,
            unsupported, corrupt, truncated or oversized (in pixels) image.
    """
    if not data:
        raise _refuse("The input image is empty.")
    if len(data) > max_bytes:
        raise _refuse(f"The input image is {len(data)} bytes; the limit is {max_bytes} bytes.")
    fmt = _sniff(data)
    if fmt is None:
        raise _refuse(
            f"The input image is {_describe_unsupported(data)}; "
            "send a PNG, JPEG or WebP image (the file's content decides, not its name)."
        )
    content_type, ext = _TYPES[fmt]
    with warnings.catch_warnings():
        # Pillow warns (then raises) on huge images; either is a refusal here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                width, height = im.size
                _check_dimensions(width, height, max_pixels=max_pixels, max_side=max_side)
                im.verify()
            # verify() leaves the image unusable; decode a fresh one fully to catch truncation.
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                im.load()
        except errors.BadUserInput:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _refuse(
                "The input image has too many pixels to decode safely; "
                f"the limit is {max_pixels} pixels."
            ) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _refuse(
                f"The input image is not a valid {fmt} file (it may be truncated or corrupt)."
            ) from exc
    return CheckedImage(content_type=content_type, ext=ext, width=width, height=height)


def _check_dimensions(width: int, height: int, *, max_pixels: int, max_side: int) -> None:
    if width <= 0 or height <= 0:
        raise _refuse("The input image has no pixels.")
    if width > max_side or height > max_side:
        raise _refuse(
            f"The input image is {width}x{height}; each side must be at most {max_side} pixels."
        )
    if width * height > max_pixels:
        raise _refuse(
            f"The input image is {width}x{height} ({width * height} pixels); "
            f"the limit is {max_pixels} pixels."
        )
