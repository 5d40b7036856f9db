"""Purge removes only what was soft-deleted long enough ago, plus old orphaned files."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time

from vidgen.media.retention import purge
from vidgen.media.storage import LocalStorage, make_key
from vidgen.models import User, Video, VideoStatus

NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=40)
RECENT = NOW - dt.timedelta(days=2)


async def _video(storage: LocalStorage, owner: User, **kw) -> Video:
    video = await Video.create(
        owner=owner, prompt="p", provider="local", resolution="512x512", **kw
    )
    key = make_key(owner.id, video.id, "video", "mp4")
    thumb = make_key(owner.id, video.id, "thumbnail", "jpg")
    await storage.save_bytes(key, b"video-bytes")
    await storage.save_bytes(thumb, b"thumb-bytes")
    video.video_file, video.thumbnail_file = key, thumb
    await video.save(update_fields=["video_file", "thumbnail_file"])
    return video


def _age(storage: LocalStorage, key: str, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(storage.path(key), (past, past))


async def _scenario(settings):
    storage = LocalStorage(settings.resolved_media_root)
    owner = await User.create(email="o@x.io", password_hash="x")
    expired = await _video(storage, owner, deleted_at=OLD, status=VideoStatus.COMPLETED)
    recent = await _video(storage, owner, deleted_at=RECENT, status=VideoStatus.COMPLETED)
    alive = await _video(storage, owner, status=VideoStatus.COMPLETED)
    await Video.filter(id=alive.id).update(created_at=OLD)  # old but not deleted: kept
    running = await _video(storage, owner, deleted_at=OLD, status=VideoStatus.PROCESSING)
    old_orphan = make_key(owner.id, 999_999, "video", "mp4")
    new_orphan = make_key(owner.id, 999_998, "video", "mp4")
    await storage.save_bytes(old_orphan, b"x")
    await storage.save_bytes(new_orphan, b"x")
    _age(storage, old_orphan, 7200)
    return storage, expired, recent, alive, running, old_orphan, new_orphan


async def test_dry_run_changes_nothing(db) -> None:
    storage, expired, recent, alive, running, old_orphan, _ = await _scenario(db)
    before = sorted(storage.iter_keys())
    report = await purge(settings=db, storage=storage, dry_run=True, now=NOW)
    assert report.videos == [expired.id]
    assert set(report.files) == {expired.video_file, expired.thumbnail_file}
    assert report.orphans == [old_orphan]
    assert sorted(storage.iter_keys()) == before
    assert await Video.all().count() == 4
    assert any("would remove video" in line for line in report.lines())


async def test_purge_removes_expired_and_orphans_only(db) -> None:
    storage, expired, recent, alive, running, old_orphan, new_orphan = await _scenario(db)
    report = await purge(settings=db, storage=storage, now=NOW)
    assert report.videos == [expired.id]
    assert not await Video.filter(id=expired.id).exists()
    remaining = set(storage.iter_keys())
    assert expired.video_file not in remaining and old_orphan not in remaining
    # Nothing that is not deleted (or deleted too recently, or still running) is purged.
    for kept in (recent, alive, running):
        assert await Video.filter(id=kept.id).exists()
        assert {kept.video_file, kept.thumbnail_file} <= remaining
    assert new_orphan in remaining  # within the grace period
    again = await purge(settings=db, storage=storage, now=NOW)
    assert again.videos == [] and again.orphans == []


async def test_retention_override(db) -> None:
    storage, expired, recent, *_ = await _scenario(db)
    report = await purge(settings=db, storage=storage, older_than_days=1, now=NOW, dry_run=True)
    assert set(report.videos) == {expired.id, recent.id}


async def test_cli_purge_dry_run(db) -> None:
    storage, expired, *_ = await _scenario(db)
    env = {
        **os.environ,
        "VIDGEN_DATABASE_URL": db.resolved_database_url,
        "VIDGEN_MEDIA_ROOT": str(db.resolved_media_root),
        "VIDGEN_SECRET_KEY": "k",
        "VIDGEN_DATA_DIR": str(db.data_dir),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vidgen.cli", "purge", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = result.stdout
    assert f"would remove video {expired.id}" in out
    assert await Video.filter(id=expired.id).exists()


async def test_a_video_restored_during_the_purge_keeps_its_files(db) -> None:
    # The purge reads a batch of expired rows, then handles them one by one; a restore that
    # lands in between (here: while the first video's files are being removed) must win for
    # the second one, files included. Files used to go before the row's re-checked DELETE,
    # leaving a live video whose media answered 404 for good.
    class Storage(LocalStorage):
        restored: Video | None = None

        async def delete(self, key: str) -> None:
            if self.restored is not None:
                await Video.filter(id=self.restored.id).update(deleted_at=None)
                self.restored = None
            await super().delete(key)

    storage = Storage(db.resolved_media_root)
    owner = await User.create(email="r@x.io", password_hash="x")
    first = await _video(storage, owner, deleted_at=OLD, status=VideoStatus.COMPLETED)
    second = await _video(storage, owner, deleted_at=OLD, status=VideoStatus.COMPLETED)
    storage.restored = second
    report = await purge(settings=db, storage=storage, now=NOW)
    assert report.videos == [first.id]
    assert not await Video.filter(id=first.id).exists()
    row = await Video.get(id=second.id)
    assert row.deleted_at is None
    remaining = set(storage.iter_keys())
    assert {second.video_file, second.thumbnail_file} <= remaining
    assert first.video_file not in remaining
