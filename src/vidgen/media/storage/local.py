"""Media files in a local folder: the ``file://`` backend (the default).

Every write is atomic: bytes go to a temp file in the destination folder, are fsynced, and
then ``os.replace`` puts them under the real key. A crash leaves at worst a dot-named
``.*.part`` file (never listed as a key, removed by :meth:`LocalStorage.purge_temp`), never a
half file under a real key.

The job pipeline's hot path writes a video's files straight into their folder
(:class:`LocalStaging`): :meth:`LocalStorage.folder` checks and creates the folder once, the
files are written as ``.part`` files beside their keys (:meth:`LocalStorage.part_path`), and
:meth:`LocalStorage.commit` fsyncs them, renames them all and fsyncs the folder once. These
are blocking calls, made from a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO

from vidgen.media.storage.base import (
    InvalidKey,
    StorageUnavailable,
    StoredObject,
    TooLarge,
)
from vidgen.media.storage.keys import is_valid_key, validate_key

TMP_DIR_NAME = ".tmp"
_WRITE_BUFFER = 1024 * 1024
_READ_CHUNK = 256 * 1024


# Part-file names: a random prefix per process (renewed in a forked child) and a counter,
# unique without a syscall per name.
_PART_PREFIX = ""
_part_counter = itertools.count()


def _new_part_prefix() -> None:
    global _PART_PREFIX
    _PART_PREFIX = uuid.uuid4().hex[:12]


_new_part_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_part_prefix)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalStorage:
    """Media files in a local folder.

    Args:
        root: The media folder; created on first write. Temp files live in ``root/.tmp``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / TMP_DIR_NAME
        self.scratch_dir = self.tmp_dir
        self.description = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # --- life cycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Nothing to start: files are opened as they are used."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def check(self) -> None:
        """The folder exists (created when missing) and takes a new file.

        Raises:
            StorageUnavailable: it cannot be created or written (permissions, a full disk).
        """
        try:
            await asyncio.to_thread(self._check_sync)
        except OSError as exc:
            raise StorageUnavailable(
                f"The media folder {self.root} is not writable ({exc.strerror or exc}); "
                "set VIDGEN_STORAGE_URL (or VIDGEN_MEDIA_ROOT) to a folder this process may "
                "write."
            ) from exc

    def _check_sync(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        probe = self.tmp_dir / f"ready-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()

    # --- paths -----------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        """The file for ``key`` inside the root.

        Raises:
            InvalidKey: When the key is not a safe relative key, or resolves outside the root
                (e.g. through a symlink planted inside it).
        """
        target = self.root / validate_key(key)
        # The root's own realpath is known (resolved once, in __init__): only what lies under
        # it can hide a symlink, so look at those few entries and do the full resolve() only
        # when one is a link. Same answer, 3-4 lstat calls instead of one per path component.
        if self._has_link_below_root(key) and not target.resolve().is_relative_to(self.root):
            raise InvalidKey("Invalid storage key.")
        return target

    def _has_link_below_root(self, key: str) -> bool:
        current = str(self.root)
        for part in ("", *key.split("/")):
            current = f"{current}/{part}" if part else current
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return False  # nothing further exists, so nothing further is a link
            except OSError:
                return True  # cannot tell: let resolve() decide
            if stat.S_ISLNK(mode):
                return True
        return False

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path in ``root/.tmp`` (same filesystem as the keys, so a rename is atomic).

        The folder is created; the file is not. Whoever writes it must move or delete it.
        """
        if suffix and not re.fullmatch(r"\.?[A-Za-z0-9_.-]{1,16}", suffix):
            raise ValueError(f"Invalid temp suffix {suffix!r}.")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{uuid.uuid4().hex}{suffix}"

    def _part_path(self, dest: Path) -> Path:
        return dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")

    # --- a job's files, written in place (blocking: call from a worker thread) -------------
    def folder(self, key: str) -> Path:
        """The folder that ``key`` lives in, checked and created (blocking).

        The check is :meth:`path`'s (no link below the root may lead outside it), done once
        for the folder: files written into it by :meth:`part_path` and :meth:`commit` need
        only their own name checked. The folder's own entry is made durable by
        :meth:`commit` (which fsyncs the folder's parent too, after the files: by then the
        files' fsyncs have usually made it durable already, as ext4's journal commit or, with
        no journal, ext4's sync of a new file's parent folders does, so that fsync is cheap);
        folders created above it are fsynced here.

        Raises:
            InvalidKey: ``key`` is not a safe key, or its folder lies outside the root.
        """
        folder_key, _, _ = validate_key(key).rpartition("/")
        folder = self.path(folder_key) if folder_key else self.root
        self._make_folder(folder, sync_parent=False)
        return folder

    def _make_folder(self, folder: Path, *, sync_parent: bool) -> None:
        try:
            os.mkdir(folder)
        except FileExistsError:
            return
        except FileNotFoundError:
            if folder == self.root or folder.parent == folder:
                folder.mkdir(parents=True, exist_ok=True)  # the root, and what lacks above it
            else:
                self._make_folder(folder.parent, sync_parent=True)
                try:
                    os.mkdir(folder)
                except FileExistsError:
                    return
        if sync_parent:
            _fsync_dir(folder.parent)

    def part_path(self, key: str) -> Path:
        """A fresh dot-named ``.part`` path beside ``key`` (in the folder from :meth:`folder`).

        Write it with exclusive creation (``open(..., "xb")``), then :meth:`commit` it or
        delete it; a crash leaves it to :meth:`purge_temp`.
        """
        folder_key, _, name = validate_key(key).rpartition("/")
        folder = self.root / folder_key if folder_key else self.root
        return folder / f".{name}.{_PART_PREFIX}{next(_part_counter):x}.part"

    def commit(self, parts: Mapping[str, Path]) -> dict[str, int]:
        """Put each finished ``.part`` file under its key, durably and atomically (blocking).

        Each file is fsynced, then renamed over its key; each folder is fsynced once after
        all its renames, and so is its parent (the folder's own entry, see :meth:`folder`):
        every file is durable under its key when this returns. The keys' folders must have
        been checked (and made) with :meth:`folder`; only the files' own names are checked.

        Args:
            parts: key → its ``.part`` file (from :meth:`part_path`, in the key's folder).

        Returns:
            key → size in bytes.

        Raises:
            InvalidKey: a key is invalid, its ``.part`` file is not beside it, or its name
                is a link that leads outside the root.
        """
        moves: list[tuple[Path, Path]] = []
        for key, part in parts.items():
            folder_key, _, name = validate_key(key).rpartition("/")
            folder = self.root / folder_key if folder_key else self.root
            dest = folder / name
            if part.parent != folder or not part.name.endswith(".part"):
                raise InvalidKey("A part file must lie beside its key.")
            # As in path(): a link under the key's name must not lead outside the root.
            if self._is_link(dest) and not dest.resolve().is_relative_to(self.root):
                raise InvalidKey("Invalid storage key.")
            moves.append((part, dest))
        sizes: dict[str, int] = {}
        fds: list[int] = []
        try:
            for part, _dest in moves:
                fds.append(os.open(part, os.O_RDONLY))
            for key, fd in zip(parts, fds, strict=True):
                os.fsync(fd)
                sizes[key] = os.fstat(fd).st_size
        finally:
            for fd in fds:
                os.close(fd)
        for part, dest in moves:
            os.replace(part, dest)
        folders = dict.fromkeys(dest.parent for _part, dest in moves)
        # The renames, then each folder's own entry (see folder()): after the files, so the
        # files' fsyncs have usually made the folder's creation durable already.
        for folder in dict.fromkeys([*folders, *(f.parent for f in folders if f != self.root)]):
            _fsync_dir(folder)
        return sizes

    @staticmethod
    def _is_link(path: Path) -> bool:
        try:
            return stat.S_ISLNK(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    # --- writes ----------------------------------------------------------------------------
    async def save_file(self, key: str, src: Path) -> int:
        """Put a finished file under ``key`` atomically and return its size.

        ``src`` is renamed when it is on the same filesystem (e.g. from :meth:`temp_path`),
        otherwise copied to a temp file beside the destination and then renamed; ``src`` is
        gone afterwards either way.
        """
        dest = self.path(key)
        return await asyncio.to_thread(self._save_file_sync, dest, Path(src))

    def _save_file_sync(self, dest: Path, src: Path) -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.stat(src).st_dev == os.stat(dest.parent).st_dev:
            with open(src, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(src, dest)
        else:
            part = self._part_path(dest)
            try:
                with open(src, "rb") as fin, open(part, "xb") as fout:
                    shutil.copyfileobj(fin, fout, _WRITE_BUFFER)
                    fout.flush()
                    os.fsync(fout.fileno())
                os.replace(part, dest)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            src.unlink(missing_ok=True)
        _fsync_dir(dest.parent)
        return dest.stat().st_size

    async def save_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key`` atomically and return its size."""
        dest = self.path(key)
        return await asyncio.to_thread(self._save_bytes_sync, dest, bytes(data))

    def _save_bytes_sync(self, dest: Path, data: bytes) -> int:
        fh, part = self._open_part(dest)
        try:
            with fh:
                fh.write(data)
            self._commit_part(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return len(data)

    async def save_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Store an async stream of chunks under ``key`` atomically and return its size.

        Raises:
            TooLarge: When the stream passes ``max_bytes``; nothing is stored.
        """
        dest = self.path(key)
        fh, part = await asyncio.to_thread(self._open_part, dest)
        total = 0
        buffer = bytearray()
        try:
            try:
                async for chunk in chunks:
                    total += len(chunk)
                    if total > max_bytes:
                        raise TooLarge(max_bytes)
                    buffer += chunk
                    if len(buffer) >= _WRITE_BUFFER:
                        data, buffer = bytes(buffer), bytearray()
                        await asyncio.to_thread(fh.write, data)
                if buffer:
                    await asyncio.to_thread(fh.write, bytes(buffer))
            finally:
                await asyncio.to_thread(fh.close)
            await asyncio.to_thread(self._commit_part, part, dest)
        except BaseException:
            # Also on cancellation: the partial file must not survive.
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            raise
        return total

    def _open_part(self, dest: Path) -> tuple[IO[bytes], Path]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = self._part_path(dest)
        return open(part, "xb"), part  # closed by the caller

    def _commit_part(self, part: Path, dest: Path) -> None:
        # fsync through a fresh descriptor: the writer may already be closed.
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, dest)
        _fsync_dir(dest.parent)

    # --- reads and deletes -----------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (:meth:`path`): served and read in place."""
        return self.path(key)

    async def presign(self, key: str, *, expires_in: int) -> None:
        """A folder has no URLs of its own: media is served by vidgen's signed route."""
        return None

    async def read_bytes(self, key: str) -> bytes:
        """The whole file. Raises FileNotFoundError when nothing is stored under ``key``."""
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to ``end`` (exclusive) of the file, in a worker thread."""
        fh = await asyncio.to_thread(open, self.path(key), "rb")
        try:
            await asyncio.to_thread(fh.seek, start)
            position = start
            while end is None or position < end:
                want = _READ_CHUNK if end is None else min(_READ_CHUNK, end - position)
                chunk = await asyncio.to_thread(fh.read, want)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def stat(self, key: str) -> StoredObject | None:
        """Size and modification time of a regular file under ``key``; None otherwise."""
        try:
            st = await asyncio.to_thread(os.stat, self.path(key))
        except (InvalidKey, OSError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return StoredObject(key=key, size=st.st_size, modified=st.st_mtime)

    async def exists(self, key: str) -> bool:
        """True when a regular file is stored under ``key``."""
        return await asyncio.to_thread(self.path(key).is_file)

    async def size(self, key: str) -> int:
        """The stored file's size in bytes.

        Raises:
            FileNotFoundError: When nothing is stored under ``key``.
        """
        path = self.path(key)
        return (await asyncio.to_thread(path.stat)).st_size

    async def delete(self, key: str) -> None:
        """Remove ``key`` (a missing file is fine) and any folders it leaves empty."""
        await asyncio.to_thread(self._delete_sync, self.path(key))

    def _delete_sync(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def iter_keys(self) -> Iterator[str]:
        """Yield every stored key, skipping temp and partial files (anything dot-named)."""
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(self.root)
            for name in sorted(filenames):
                key = (rel_dir / name).as_posix() if rel_dir.parts else name
                if is_valid_key(key):
                    yield key

    async def list_objects(self) -> AsyncIterator[StoredObject]:
        """Every stored file under a valid key, with its size and time (see :meth:`iter_keys`)."""
        for found in await asyncio.to_thread(self._list_sync):
            yield found

    def _list_sync(self) -> list[StoredObject]:
        found = []
        for key in self.iter_keys():
            try:
                st = os.stat(self.root / key)
            except OSError:
                continue  # removed meanwhile
            found.append(StoredObject(key=key, size=st.st_size, modified=st.st_mtime))
        return found

    async def purge_incomplete(self, *, older_than_seconds: float) -> int:
        """:meth:`purge_temp` in a worker thread."""
        return await asyncio.to_thread(self.purge_temp, older_than_seconds=older_than_seconds)

    def staging(self) -> LocalStaging:
        """A job's files, written in place beside their keys (see :class:`LocalStaging`)."""
        return LocalStaging(self)

    def purge_temp(self, *, older_than_seconds: float = 3600.0) -> int:
        """Remove temp files and crash leftovers (``.*.part``) older than the given age.

        Returns:
            How many files were removed.
        """
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            in_tmp = Path(dirpath).is_relative_to(self.tmp_dir)
            for name in filenames:
                if not in_tmp and not (name.startswith(".") and name.endswith(".part")):
                    continue
                path = Path(dirpath) / name
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


class LocalStaging:
    """One job's files written straight into their keys' folders (blocking calls).

    :meth:`file` checks and creates a key's folder the first time it is seen and gives a
    fresh ``.part`` path beside the key; :meth:`commit` is :meth:`LocalStorage.commit`
    (fsync, rename, fsync the folder); :meth:`discard` removes the part files and the
    folders they leave empty. There is nothing to do ahead of the commit here.
    """

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage
        self._folders: dict[str, Path] = {}
        self._parts: list[Path] = []

    def file(self, key: str) -> Path:
        folder_key = validate_key(key).rpartition("/")[0]
        if folder_key not in self._folders:
            self._folders[folder_key] = self.storage.folder(key)
        part = self.storage.part_path(key)
        self._parts.append(part)
        return part

    def prepare(self, files: Mapping[str, Path]) -> None:
        """Nothing ahead: the commit's fsyncs and renames are the whole write."""

    def commit(self, files: Mapping[str, Path]) -> dict[str, int]:
        sizes = self.storage.commit(files)
        committed = set(files.values())
        self._parts = [p for p in self._parts if p not in committed]
        return sizes

    def discard(self) -> None:
        for part in self._parts:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
        self._parts.clear()
        for folder in self._folders.values():
            if folder != self.storage.root:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: a stored version stays
