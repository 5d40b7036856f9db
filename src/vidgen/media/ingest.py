"""A provider's finished output taken into storage: the job pipeline's media stage.

Every step is blocking, so the whole stage is ONE call in a worker thread
(:meth:`Ingest.run`) when the provider can hand over its output without the event loop
(``download_blocking``, see :mod:`vidgen.providers.base`), and two calls around the
provider's own async download otherwise (:meth:`Ingest.open`, then :meth:`Ingest.finish`).
The files go through the storage's :class:`~vidgen.media.storage.Staging`::

    the download, written to the staging's local file for the video
      (a local folder: a dot-named .part file beside the key, its folder created once;
       an object store: a scratch file)
      ─▶ probe + thumbnail in one pass (vidgen.media.inspect.read, or the ``inspector``
         given, e.g. the same in another process; the image stays in memory)
      ─▶ the thumbnail's local file
      ─▶ prepare: an object store uploads a large video's parts now (nothing visible yet)
      ─▶ commit: a local folder fsyncs both, renames both over their keys, fsyncs the folder
         once; an object store completes the upload and PUTs the thumbnail

Nothing reaches a key unless the whole stage succeeded: on an error the staged files are
removed (and the video's folder, when that leaves it empty; an upload is aborted). A stage
abandoned by its job (canceled, or taken over, meanwhile) commits nothing if it has not
started committing yet. A stage given a ``hold`` that is not set yet when it is ready to
commit stops there, its files kept: the job commits (:meth:`Ingest.commit`) or discards them
once it knows it still holds the video (its prediction id's write was still in flight). A
crash leaves at worst ``.*.part`` or scratch files and incomplete uploads, which
``vidgen purge`` removes (:meth:`~vidgen.media.storage.Storage.purge_incomplete`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidgen.media import inspect
from vidgen.media.probe import VideoInfo
from vidgen.media.storage import Staging, Storage, make_key
from vidgen.media.thumbnails import check_options

# A provider's content type → the stored video's extension.
VIDEO_EXTS = {"video/mp4": "mp4", "video/webm": "webm"}


class Abandoned(Exception):
    """The job gave the stage up (it was canceled) before anything was committed."""


@dataclass(frozen=True)
class Stored:
    """What :class:`Ingest` stored: the two keys, the video's metadata and its size."""

    video_key: str
    thumbnail_key: str
    info: VideoInfo
    file_size: int


class Ingest:
    """One job's output on its way into storage (see the module docstring).

    Args:
        storage: where the files go.
        owner_id: the video's owner (part of the keys).
        video_id: the video.
        output_format: the format asked for (the extension when the content type is unknown).
        thumbnail_width: the thumbnail's width (never scaled up).
        thumbnail_format: ``jpeg``/``jpg``/``webp``.
        hold: commit only once this is set; until then :meth:`run`/:meth:`finish` stop
            before committing and return None (see the module docstring).
        commit_apart: :meth:`run`/:meth:`finish` always stop before committing and return
            None, as when held: the caller commits (:meth:`commit`) in a call of its own,
            so that the commit's fsyncs can run on another thread than the inspection.
        inspector: probes the download and encodes its thumbnail, as
            :func:`vidgen.media.inspect.read` (the default) does: the job pipeline passes
            one that runs it in the media processes (:func:`vidgen.jobs.cpu.run_in_process`).

    Raises:
        ValueError: an unknown thumbnail format or a width below 1.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        owner_id: int,
        video_id: int,
        output_format: str,
        thumbnail_width: int,
        thumbnail_format: str,
        hold: threading.Event | None = None,
        commit_apart: bool = False,
        inspector: Callable[..., tuple[VideoInfo, bytes]] = inspect.read,
    ) -> None:
        self.storage = storage
        self.hold = hold
        self.commit_apart = commit_apart
        self.inspector = inspector
        self.owner_id = owner_id
        self.video_id = video_id
        self.output_format = output_format
        self.thumbnail_width = thumbnail_width
        self.thumbnail_format = thumbnail_format.lower()
        check_options(width=thumbnail_width, fmt=self.thumbnail_format)
        self.thumbnail_ext = (
            "jpg" if self.thumbnail_format in {"jpeg", "jpg"} else self.thumbnail_format
        )
        self.abandoned = False  # set by the job (from the event loop) when it is canceled
        self._staging: Staging | None = None
        self._parts: list[Path] = []
        self._ready: tuple[dict[str, Path], str, str, VideoInfo] | None = None
        self._held = False  # ready, waiting for the hold; nobody commits it yet
        self._lock = threading.Lock()  # between abandon() and the stage's own checks

    def run(self, fetch: Callable[[Path], str | None]) -> Stored | None:
        """The whole stage in one blocking call; ``fetch(dest)`` writes the download and
        returns its content type. On any error nothing is stored. None: held, ready to
        commit (see ``hold``)."""
        try:
            content_type = fetch(self.open())
        except BaseException:
            self.discard()
            raise
        return self.finish(content_type)

    def open(self) -> Path:
        """Where to write the download (the staging's fresh local file for the video)."""
        key = make_key(self.owner_id, self.video_id, "video", self.output_format)
        return self._part(key)

    def finish(self, content_type: str | None) -> Stored | None:
        """Inspect the download, write the thumbnail and commit both (after :meth:`open`);
        on any error nothing is stored. None: held, ready to commit (see ``hold``).

        Raises:
            ProbeError: the download is not a readable video.
            Abandoned: the job gave up meanwhile; nothing was stored.
        """
        try:
            return self._finish(content_type)
        except BaseException:
            self.discard()
            raise

    def commit(self) -> Stored:
        """Commit a held stage (after :meth:`run`/:meth:`finish` returned None); on any
        error nothing is stored.

        Raises:
            Abandoned: the job gave up meanwhile; nothing was stored.
        """
        try:
            return self._commit()
        except BaseException:
            self.discard()
            raise

    def _finish(self, content_type: str | None) -> Stored | None:
        if self.abandoned:
            raise Abandoned()
        download = self._parts[0]
        ext = VIDEO_EXTS.get((content_type or "").split(";")[0].strip().lower())
        ext = ext or self.output_format
        video_key = make_key(self.owner_id, self.video_id, "video", ext)
        thumbnail_key = make_key(self.owner_id, self.video_id, "thumbnail", self.thumbnail_ext)
        info, image = self.inspector(
            download,
            width=self.thumbnail_width,
            fmt=self.thumbnail_format,
            container_format=inspect.CONTAINER_FORMATS.get(ext),
        )
        thumbnail = self._part(thumbnail_key)
        _write_new(thumbnail, image)
        parts = {video_key: download, thumbnail_key: thumbnail}
        self._ready = (parts, video_key, thumbnail_key, info)
        if self.abandoned:
            raise Abandoned()
        # The slow part of an upload goes ahead of the hold: it overlaps the write in flight.
        self._stage().prepare(parts)
        with self._lock:
            if self.abandoned:
                raise Abandoned()
            if self.commit_apart or (self.hold is not None and not self.hold.is_set()):
                self._held = True
                return None
        return self._commit()

    def abandon(self) -> bool:
        """Give the stage up (from the event loop): it commits nothing it has not started
        committing. True when it is held (ready, not committing): the caller must
        :meth:`discard` it then, as nobody else will."""
        with self._lock:
            self.abandoned = True
            return self._held

    def _commit(self) -> Stored:
        if self._ready is None:
            raise RuntimeError("nothing is ready to commit")
        with self._lock:
            # Checked after the hold: a failed write abandons the stage, never opens it.
            if self.abandoned:
                raise Abandoned()
            self._held = False  # committing: abandon() leaves it alone from here on
        parts, video_key, thumbnail_key, info = self._ready
        sizes = self._stage().commit(parts)
        self._parts.clear()
        self._ready = None
        return Stored(video_key, thumbnail_key, info, sizes[video_key])

    def discard(self) -> None:
        """Remove what the stage wrote (or uploaded) and did not commit (idempotent)."""
        self._parts.clear()
        if self._staging is not None:
            self._staging.discard()

    def _stage(self) -> Staging:
        if self._staging is None:
            self._staging = self.storage.staging()
        return self._staging

    def _part(self, key: str) -> Path:
        part = self._stage().file(key)
        self._parts.append(part)
        return part


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
