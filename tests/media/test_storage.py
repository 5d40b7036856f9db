from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vidgen.media import storage as storage_mod
from vidgen.media.storage import InvalidKey, LocalStorage, TooLarge, make_key
from vidgen.media.storage import local as local_mod


def test_make_key_shape() -> None:
    assert make_key(3, 42, "video", "mp4") == "u3/v42/video.mp4"
    assert make_key(0, 1, "thumbnail", "jpg") == "u0/v1/thumbnail.jpg"


@pytest.mark.parametrize(
    ("owner", "video", "kind", "ext"),
    [
        (-1, 1, "video", "mp4"),
        (1, -1, "video", "mp4"),
        (True, 1, "video", "mp4"),
        (1, 1, "../x", "mp4"),
        (1, 1, "video", "mp4/../../x"),
        (1, 1, "Video", "mp4"),
        (1, 1, "", "mp4"),
        (1, 1, "video", ""),
    ],
)
def test_make_key_refuses_bad_parts(owner: int, video: int, kind: str, ext: str) -> None:
    with pytest.raises(InvalidKey):
        make_key(owner, video, kind, ext)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "..",
        "../etc/passwd",
        "u1/../../etc/passwd",
        "u1/v1/../../../x",
        "/etc/passwd",
        "u1\\v1\\video.mp4",
        "u1//video.mp4",
        "u1/v1/",
        ".tmp/abc",
        "u1/.hidden",
        "u1/v1/video.mp4\x00",
        "u1/v1/vid eo.mp4",
        "u1/v1/vidéo.mp4",
        "C:/x",
        "a" * 300,
    ],
)
def test_path_refuses_escaping_keys(storage: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        storage.path(key)


def test_path_refuses_symlink_escape(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.root.mkdir(parents=True)
    os.symlink(outside, storage.root / "u1")
    with pytest.raises(InvalidKey):
        storage.path("u1/secret.txt")


async def test_save_bytes_and_read_back(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    assert await storage.save_bytes(key, b"hello") == 5
    assert storage.path(key).read_bytes() == b"hello"
    assert storage.path(key).is_relative_to(storage.root)
    assert await storage.exists(key)
    assert await storage.size(key) == 5
    # overwrite is atomic too
    assert await storage.save_bytes(key, b"bye") == 3
    assert storage.path(key).read_bytes() == b"bye"
    assert list(storage.iter_keys()) == [key]


async def _chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, part in enumerate(parts):
        if fail_after is not None and i == fail_after:
            raise ConnectionError("upstream went away")
        yield part


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_save_stream_stores_all_chunks(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    size = await storage.save_stream(key, _chunks(b"a" * 10, b"b" * 5), max_bytes=100)
    assert size == 15
    assert storage.path(key).read_bytes() == b"a" * 10 + b"b" * 5
    assert _files_under(storage.root) == [storage.path(key)]


async def test_failed_stream_leaves_no_file(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    with pytest.raises(ConnectionError):
        await storage.save_stream(key, _chunks(b"a", b"b", b"c", fail_after=2), max_bytes=100)
    assert not await storage.exists(key)
    assert _files_under(storage.root) == []
    assert list(storage.iter_keys()) == []


async def test_failed_stream_keeps_previous_version(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    await storage.save_bytes(key, b"old")
    with pytest.raises(ConnectionError):
        await storage.save_stream(key, _chunks(b"new", b"x", fail_after=1), max_bytes=100)
    assert storage.path(key).read_bytes() == b"old"
    assert _files_under(storage.root) == [storage.path(key)]


async def test_stream_over_limit_is_refused(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    with pytest.raises(TooLarge) as info:
        await storage.save_stream(key, _chunks(b"a" * 60, b"b" * 60), max_bytes=100)
    assert info.value.limit == 100
    assert _files_under(storage.root) == []


async def test_large_stream_is_buffered_and_written(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "webm")
    block = os.urandom(256 * 1024)
    size = await storage.save_stream(key, _chunks(*[block] * 9), max_bytes=10 * 1024 * 1024)
    assert size == 9 * len(block)
    assert storage.path(key).read_bytes() == block * 9


async def test_save_file_moves_temp_file(storage: LocalStorage) -> None:
    tmp = storage.temp_path(".mp4")
    assert tmp.parent == storage.tmp_dir
    tmp.write_bytes(b"video-bytes")
    key = make_key(5, 6, "video", "mp4")
    assert await storage.save_file(key, tmp) == 11
    assert not tmp.exists()
    assert storage.path(key).read_bytes() == b"video-bytes"
    # temp files never count as keys
    storage.temp_path(".x").write_bytes(b"x")
    assert list(storage.iter_keys()) == [key]


async def test_save_file_copies_across_filesystems(
    storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "elsewhere.mp4"
    src.write_bytes(b"z" * 1000)
    real_stat = os.stat

    class FakeStat:
        def __init__(self, st: os.stat_result, dev: int) -> None:
            self.st_dev = dev
            self.st_size = st.st_size

    def fake_stat(path: object, *args: object, **kwargs: object) -> object:
        st = real_stat(path, *args, **kwargs)  # type: ignore[arg-type]
        return FakeStat(st, 999) if Path(str(path)) == src else st

    monkeypatch.setattr(local_mod.os, "stat", fake_stat)
    key = make_key(1, 1, "video", "mp4")
    assert await storage.save_file(key, src) == 1000
    monkeypatch.undo()
    assert not src.exists()
    assert storage.path(key).read_bytes() == b"z" * 1000
    assert _files_under(storage.root) == [storage.path(key)]


async def test_delete_is_idempotent_and_prunes_folders(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    await storage.save_bytes(key, b"x")
    await storage.delete(key)
    assert not await storage.exists(key)
    assert not (storage.root / "u1").exists()
    await storage.delete(key)  # missing is fine
    with pytest.raises(FileNotFoundError):
        await storage.size(key)


async def test_iter_keys_lists_everything(storage: LocalStorage) -> None:
    keys = [make_key(1, 1, "video", "mp4"), make_key(1, 1, "thumbnail", "jpg"), "u2/v9/x.png"]
    for key in keys:
        await storage.save_bytes(key, b"1")
    # a crash leftover is not a key
    (storage.root / "u1" / "v1" / ".video.mp4.abc.part").write_bytes(b"half")
    assert sorted(storage.iter_keys()) == sorted(keys)


async def test_purge_temp_removes_stale_leftovers(storage: LocalStorage) -> None:
    key = make_key(1, 1, "video", "mp4")
    await storage.save_bytes(key, b"1")
    part = storage.root / "u1" / "v1" / ".video.mp4.abc.part"
    part.write_bytes(b"half")
    tmp = storage.temp_path(".mp4")
    tmp.write_bytes(b"t")
    old = 1_000_000_000
    os.utime(part, (old, old))
    os.utime(tmp, (old, old))
    assert storage.purge_temp(older_than_seconds=60) == 2
    assert not part.exists() and not tmp.exists()
    assert storage.path(key).exists()


def test_local_storage_is_a_storage(storage: LocalStorage) -> None:
    assert isinstance(storage, storage_mod.Storage)


def test_temp_path_refuses_odd_suffix(storage: LocalStorage) -> None:
    with pytest.raises(ValueError):
        storage.temp_path("/../x")


def test_folder_creates_and_checks_once(storage: LocalStorage) -> None:
    folder = storage.folder("u1/v2/video.mp4")
    assert folder == storage.root / "u1" / "v2" and folder.is_dir()
    assert storage.folder("u1/v2/thumbnail.jpg") == folder  # already there: fine


def test_folder_refuses_a_symlink_escape(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.root.mkdir(parents=True)
    os.symlink(outside, storage.root / "u1")
    with pytest.raises(InvalidKey):
        storage.folder("u1/v2/video.mp4")
    assert list(outside.iterdir()) == []


def test_commit_puts_parts_under_their_keys(storage: LocalStorage) -> None:
    storage.folder("u1/v2/video.mp4")
    video, thumb = storage.part_path("u1/v2/video.mp4"), storage.part_path("u1/v2/thumb.jpg")
    assert video != thumb and video.name.startswith(".") and video.name.endswith(".part")
    video.write_bytes(b"v" * 10)
    thumb.write_bytes(b"t" * 3)
    sizes = storage.commit({"u1/v2/video.mp4": video, "u1/v2/thumb.jpg": thumb})
    assert sizes == {"u1/v2/video.mp4": 10, "u1/v2/thumb.jpg": 3}
    assert sorted(storage.iter_keys()) == ["u1/v2/thumb.jpg", "u1/v2/video.mp4"]
    assert not video.exists() and not thumb.exists()


def test_commit_refuses_a_part_elsewhere(storage: LocalStorage) -> None:
    storage.folder("u1/v2/video.mp4")
    part = storage.part_path("u1/v3/video.mp4")
    with pytest.raises(InvalidKey):
        storage.commit({"u1/v2/video.mp4": part})


def test_commit_refuses_a_key_that_links_outside(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("keep")
    folder = storage.folder("u1/v2/video.mp4")
    os.symlink(outside, folder / "video.mp4")
    part = storage.part_path("u1/v2/video.mp4")
    part.write_bytes(b"new")
    with pytest.raises(InvalidKey):
        storage.commit({"u1/v2/video.mp4": part})
    assert outside.read_text() == "keep"


def test_part_names_differ_in_a_forked_child(tmp_path: Path) -> None:
    """A forked child names its part files with a prefix of its own (its counter starts where
    the parent's was, so only the prefix tells them apart). The fork happens in a fresh
    interpreter: forking the test process itself, with the threads of earlier tests running,
    can leave the child waiting forever on a lock one of them held at the fork."""
    script = """
import os, sys
from pathlib import Path
from vidgen.media.storage import LocalStorage
storage = LocalStorage(Path(sys.argv[1]))
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, storage.part_path("u1/v2/video.mp4").name.encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
print(os.read(read, 4096).decode(), storage.part_path("u1/v2/video.mp4").name)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "media")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    child, parent = done.stdout.split()
    assert child.startswith(".video.mp4.") and child.endswith(".part")
    assert len(child) == len(parent) and child != parent


def test_folder_creates_a_missing_root_and_its_parents(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "not" / "yet" / "media")
    assert storage.folder("u1/v2/video.mp4") == storage.root / "u1" / "v2"
    assert (storage.root / "u1" / "v2").is_dir()
