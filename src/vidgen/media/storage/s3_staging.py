"""One job's files on their way into an S3 bucket: written to scratch files, uploaded, then
made visible at once when the job commits (see ``S3Storage.staging``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidgen.media.storage.keys import content_type
from vidgen.media.storage.s3_multipart import file_parts

if TYPE_CHECKING:
    from vidgen.media.storage.s3 import S3Storage


class S3Staging:
    """One job's files: written to scratch files, uploaded, then made visible at once.

    :meth:`prepare` uploads every file larger than one part as the parts of a multipart
    upload (nothing is visible yet); :meth:`commit` completes those uploads and PUTs the
    small files (each is atomic), then removes the scratch files; :meth:`discard` aborts the
    uploads and removes the scratch files. Blocking calls, made from a worker thread.
    """

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self._files: list[Path] = []
        self._uploads: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}

    def file(self, key: str) -> Path:
        path = self.storage._scratch_file(key)
        self._files.append(path)
        return path

    def prepare(self, files: Mapping[str, Path]) -> None:
        store = self.storage
        for key, path in files.items():
            if key in self._uploads or path.stat().st_size <= store.part_size:
                continue
            object_key = store._object_key(key)
            upload_id = store._io.run_blocking(store.uploads.create(object_key, content_type(key)))
            self._uploads[key] = (object_key, upload_id, [])
            parts = store._io.run_blocking(
                store.uploads.upload_parts(object_key, upload_id, file_parts(path, store.part_size))
            )
            self._uploads[key] = (object_key, upload_id, parts)

    def commit(self, files: Mapping[str, Path]) -> dict[str, int]:
        self.prepare(files)
        store = self.storage
        sizes: dict[str, int] = {}
        for key, path in files.items():
            upload = self._uploads.pop(key, None)
            if upload is not None:
                object_key, upload_id, parts = upload
                store._io.run_blocking(store.uploads.complete(object_key, upload_id, parts))
                sizes[key] = path.stat().st_size
            else:
                sizes[key] = store._io.run_blocking(
                    store.uploads.upload_path(store._object_key(key), path, content_type(key))
                )
        for path in files.values():
            with contextlib.suppress(OSError):
                path.unlink()
        return sizes

    def discard(self) -> None:
        store = self.storage
        uploads, self._uploads = self._uploads, {}
        for object_key, upload_id, _parts in uploads.values():
            with contextlib.suppress(Exception):
                store._io.run_blocking(store.uploads.abort(object_key, upload_id))
        for path in self._files:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self._files.clear()


def purge_scratch(folder: Path, cutoff: float) -> int:
    """Remove scratch files older than ``cutoff`` (a killed job's); how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in os.scandir(folder):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
