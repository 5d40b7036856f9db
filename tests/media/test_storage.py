from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidgen.media import storage as storage_mod
from vidgen.media.storage import InvalidKey, LocalStorage, make_key


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
    # overwrite is atomic too
    assert await storage.save_bytes(key, b"bye") == 3
    assert storage.path(key).read_bytes() == b"bye"
    assert list(storage.iter_keys()) == [key]


async def test_delete_is_idempotent_and_prunes_folders(storage: LocalStorage) -> None:
    key = make_key(1, 2, "video", "mp4")
    await storage.save_bytes(key, b"x")
    await storage.delete(key)
    assert not await storage.exists(key)
    assert not (storage.root / "u1").exists()
    await storage.delete(key)  # missing is fine
    assert not await storage.exists(key)


async def test_iter_keys_lists_everything(storage: LocalStorage) -> None:
    keys = [make_key(1, 1, "video", "mp4"), make_key(1, 1, "thumbnail", "jpg"), "u2/v9/x.png"]
    for key in keys:
        await storage.save_bytes(key, b"1")
    # a crash leftover is not a key
    (storage.root / "u1" / "v1" / ".video.mp4.abc.part").write_bytes(b"half")
    # nor is a temporary file
    storage.tmp_dir.mkdir()
    (storage.tmp_dir / "render.mp4").write_bytes(b"t")
    assert sorted(storage.iter_keys()) == sorted(keys)


async def test_purge_temp_removes_stale_leftovers(storage: LocalStorage) -> None:
    key = make_key(1, 1, "video", "mp4")
    await storage.save_bytes(key, b"1")
    part = storage.root / "u1" / "v1" / ".video.mp4.abc.part"
    part.write_bytes(b"half")
    storage.tmp_dir.mkdir()
    tmp = storage.tmp_dir / "render.mp4"  # e.g. a local render never moved
    tmp.write_bytes(b"t")
    old = 1_000_000_000
    os.utime(part, (old, old))
    os.utime(tmp, (old, old))
    assert storage.purge_temp(older_than_seconds=60) == 2
    assert not part.exists() and not tmp.exists()
    assert storage.path(key).exists()


def test_local_storage_is_a_storage(storage: LocalStorage) -> None:
    assert isinstance(storage, storage_mod.Storage)


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


def test_part_names_differ_in_a_forked_child(storage: LocalStorage, tmp_path: Path) -> None:
    out = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # the child names its next part file and exits at once
        try:
            out.write_text(storage.part_path("u1/v2/video.mp4").name)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert out.read_text() != storage.part_path("u1/v2/video.mp4").name


def test_folder_creates_a_missing_root_and_its_parents(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "not" / "yet" / "media")
    assert storage.folder("u1/v2/video.mp4") == storage.root / "u1" / "v2"
    assert (storage.root / "u1" / "v2").is_dir()
