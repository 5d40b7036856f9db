"""``VIDGEN_STORAGE_URL``: which backend keeps the media, and where.

``file:///absolute/path`` is a local folder (the default: the media root);
``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` is a bucket of any S3-compatible store (see
docs/storage.md for the settings that go with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from vidgen.media.storage.base import Storage
    from vidgen.settings import Settings

# S3's bucket rules, less the rarely used dotted names' extra cases.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Location:
    scheme: Literal["file", "s3"]
    path: Path | None = None  # file://
    bucket: str = ""  # s3://
    prefix: str = ""  # s3://, without slashes at either end

    def __str__(self) -> str:
        if self.scheme == "file":
            assert self.path is not None
            return self.path.as_uri()
        return f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")


def parse_location(url: str) -> Location:
    """Read a storage URL.

    Raises:
        ValueError: a URL of another scheme, a relative path, a bad bucket name or prefix
            (the message names the setting and the accepted forms).
    """
    parts = urlsplit(url.strip())
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(
                f"VIDGEN_STORAGE_URL={url!r}: a file URL needs an absolute path, "
                "as in file:///var/lib/vidgen/media."
            )
        return Location("file", path=Path(unquote(parts.path)))
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(
                f"VIDGEN_STORAGE_URL={url!r}: {bucket!r} is not a valid bucket name "
                "(3-63 lowercase letters, digits, dots and hyphens)."
            )
        if parts.query or parts.fragment:
            raise ValueError(f"VIDGEN_STORAGE_URL={url!r}: no query or fragment, please.")
        segments = [s for s in parts.path.split("/") if s]
        if any(not _PREFIX_SEGMENT.fullmatch(s) or s.strip(".") == "" for s in segments):
            raise ValueError(
                f"VIDGEN_STORAGE_URL={url!r}: the prefix may hold letters, digits, '.', '_' "
                "and '-' between slashes."
            )
        return Location("s3", bucket=bucket, prefix="/".join(segments))
    raise ValueError(
        f"VIDGEN_STORAGE_URL={url!r}: use file:///absolute/path or s3://BUCKET[/PREFIX]."
    )


def create_storage(settings: Settings) -> Storage:
    """The backend that ``settings`` name (nothing is connected until it is used)."""
    from vidgen.media.storage.local import TMP_DIR_NAME, LocalStorage

    location = parse_location(settings.resolved_storage_url)
    if location.scheme == "file":
        assert location.path is not None
        return LocalStorage(location.path)
    from vidgen.media.storage.s3 import S3Storage

    return S3Storage(
        location.bucket,
        prefix=location.prefix,
        endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url,
        region=settings.s3_region,
        scratch_dir=settings.resolved_media_root / TMP_DIR_NAME,
    )
