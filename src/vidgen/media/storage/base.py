"""What every storage backend offers: the interface, the staging of a job's files, errors.

Two backends implement :class:`Storage`: a local folder (:mod:`.local`) and any
S3-compatible object store (:mod:`.s3`); ``VIDGEN_STORAGE_URL`` picks one (:mod:`.location`).
Every byte of media goes through this interface, and every write is atomic from a reader's
point of view: an object appears whole under its key or not at all.

::

    StorageError
    ├── InvalidKey          (also a ValueError) a key that does not match the key pattern
    ├── TooLarge            a stream passed its ``max_bytes``
    └── StorageUnavailable  the store cannot be used: unreachable, a missing bucket, refused
                            credentials (the message says which, and what to set)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """Base of the storage errors."""


class InvalidKey(StorageError, ValueError):
    """A key that does not match the key pattern (it could escape the root)."""


class TooLarge(StorageError):
    """A stream passed its ``max_bytes`` limit; nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit} bytes.")
        self.limit = limit


class StorageUnavailable(StorageError):
    """The store cannot be used (unreachable, missing bucket, refused credentials)."""


@dataclass(frozen=True)
class StoredObject:
    """What a backend knows of one stored object."""

    key: str
    size: int
    modified: float  # seconds since the epoch
    etag: str | None = None  # the store's own entity tag, quoted, when it has one


class Staging(Protocol):
    """One job's files on their way into storage, written locally first (blocking calls,
    made from a worker thread). Nothing is visible under a key before :meth:`commit`.

    ``file(key)`` gives a fresh local path to write; ``prepare(files)`` does the slow part
    ahead of the decision to commit (an object store uploads the parts of large files);
    ``commit(files)`` makes them all visible under their keys (quick); ``discard()`` removes
    whatever was written or uploaded and not committed (idempotent).
    """

    def file(self, key: str) -> Path: ...

    def prepare(self, files: Mapping[str, Path]) -> None: ...

    def commit(self, files: Mapping[str, Path]) -> dict[str, int]: ...

    def discard(self) -> None: ...


@runtime_checkable
class Storage(Protocol):
    """A place to keep media files by key. All writes are atomic."""

    #: Where it is, for messages (``file:///...``, ``s3://bucket/prefix``).
    description: str
    #: A local folder for files on their way in and out (renders, downloads).
    scratch_dir: Path

    async def open(self) -> None:
        """Get ready to serve (an object store starts its client); idempotent."""
        ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless the store exists and takes writes."""
        ...

    async def save_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key``; return its size."""
        ...

    async def save_file(self, key: str, src: Path) -> int:
        """Store a finished local file under ``key`` (``src`` is gone afterwards); its size."""
        ...

    async def save_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Store a stream under ``key`` (at most ``max_bytes``); return its size."""
        ...

    async def read_bytes(self, key: str) -> bytes:
        """The whole object (small ones: input images). FileNotFoundError when missing."""
        ...

    def read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to ``end`` (exclusive; None: the end of the object)."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size, time and tag; None when nothing is stored under ``key``."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is fine."""
        ...

    def list_objects(self) -> AsyncIterator[StoredObject]:
        """Every stored object under a valid key (for the orphan purge)."""
        ...

    async def purge_incomplete(self, *, older_than_seconds: float) -> int:
        """Remove what failed or killed writes left behind, older than the given age
        (partial files, incomplete multipart uploads, scratch files); how many."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The local file behind ``key`` when the backend has one (it may not exist)."""
        ...

    async def presign(self, key: str, *, expires_in: int) -> str | None:
        """A URL of the store itself that reads ``key`` for ``expires_in`` seconds, reachable
        at the store's public endpoint; None when the backend has no such URLs."""
        ...

    def staging(self) -> Staging:
        """A new :class:`Staging` for one job's files."""
        ...
