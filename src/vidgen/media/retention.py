"""Retention: remove for good what was soft-deleted long enough ago, and orphaned files.

Only videos whose ``deleted_at`` is older than the retention period are purged (and never one a
worker may still be running). Orphans are files under ``u{owner}/v{video}/`` whose video row
no longer exists; what failed or killed writes left (partial and scratch files, incomplete
multipart uploads) goes too. A grace period protects files written moments ago by a request
that has not committed yet, and uploads still under way. ``dry_run`` reports without
touching anything. Every file is reached through the storage interface, so this works the
same on a local folder and on an object store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from dataclasses import dataclass, field

from vidgen.media.storage import Storage, create_storage
from vidgen.models import Video, VideoStatus
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

_VIDEO_KEY = re.compile(r"^u(\d+)/v(\d+)/")
ORPHAN_GRACE_SECONDS = 3600.0
BATCH = 500


@dataclass
class PurgeReport:
    videos: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temp_files: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} video {vid}" for vid in self.videos]
        out += [f"{verb} file {key}" for key in self.files]
        out += [f"{verb} orphaned file {key}" for key in self.orphans]
        out.append(
            f"{verb}: {len(self.videos)} video(s), {len(self.files) + len(self.orphans)} "
            f"file(s) ({len(self.orphans)} orphaned)"
            + ("" if self.dry_run else f", {self.temp_files} stale temp file(s)")
        )
        return out


async def purge(
    *,
    settings: Settings,
    storage: Storage,
    dry_run: bool = False,
    older_than_days: float | None = None,
    now: dt.datetime | None = None,
    orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS,
) -> PurgeReport:
    """Purge expired soft-deleted videos and orphaned files.

    Args:
        settings: for the default retention period.
        storage: where the files are.
        dry_run: only report.
        older_than_days: retention override (default ``settings.retention_days``).
        now: the clock (tests).
        orphan_grace_seconds: files younger than this are never treated as orphans.
    """
    now = now or dt.datetime.now(dt.UTC)
    days = settings.retention_days if older_than_days is None else older_than_days
    cutoff = now - dt.timedelta(days=days)
    report = PurgeReport(dry_run=dry_run)

    seen: list[int] = []  # picked already (purged, or restored meanwhile)
    while True:
        batch = (
            await Video.filter(deleted_at__isnull=False, deleted_at__lt=cutoff)
            .exclude(status=VideoStatus.PROCESSING)
            .exclude(id__in=seen)
            .order_by("id")
            .limit(BATCH)
            .values("id", "video_file", "thumbnail_file", "input_image")
        )
        if not batch:
            break
        for row in batch:
            seen.append(row["id"])
            keys = [row[k] for k in ("video_file", "thumbnail_file", "input_image") if row[k]]
            if not dry_run:
                # The row first, its condition re-checked in the DELETE itself: a restore
                # since the batch was read wins, and then its files must stay. Files are
                # removed only once their row is gone (a crash in between leaves orphans,
                # which the orphan pass below removes on a later run).
                removed = await (
                    Video.filter(id=row["id"], deleted_at__isnull=False, deleted_at__lt=cutoff)
                    .exclude(status=VideoStatus.PROCESSING)
                    .delete()
                )
                if not removed:
                    continue
                for key in keys:
                    await storage.delete(key)
            report.videos.append(row["id"])
            report.files.extend(keys)
        if dry_run and len(batch) < BATCH:
            break

    report.orphans = await _orphans(storage, grace=orphan_grace_seconds, now=now.timestamp())
    if not dry_run:
        for key in report.orphans:
            await storage.delete(key)
        report.temp_files = await storage.purge_incomplete(older_than_seconds=orphan_grace_seconds)
    logger.info(
        "purge done",
        extra={
            "action": "purge",
            "dry_run": dry_run,
            "videos": len(report.videos),
            "orphans": len(report.orphans),
        },
    )
    return report


async def _orphans(storage: Storage, *, grace: float, now: float) -> list[str]:
    modified = {found.key: found.modified async for found in storage.list_objects()}
    by_video: dict[int, list[str]] = {}
    orphans: list[str] = []
    for key in modified:
        match = _VIDEO_KEY.match(key)
        if match is None:
            orphans.append(key)  # not a key this service generates
        else:
            by_video.setdefault(int(match.group(2)), []).append(key)
    ids = list(by_video)
    existing: set[int] = set()
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        existing |= set(await Video.filter(id__in=chunk).values_list("id", flat=True))
    orphans += [k for vid, ks in by_video.items() if vid not in existing for k in ks]
    return sorted(key for key in orphans if now - modified[key] >= grace)


def purge_command(settings: Settings, *, dry_run: bool, older_than_days: float | None) -> int:
    """``vidgen purge``: print what was (or would be) removed."""
    from vidgen import db

    async def run() -> PurgeReport:
        await db.init(settings, run_migrations=settings.is_sqlite)
        storage = create_storage(settings)
        try:
            await storage.open()
            return await purge(
                settings=settings,
                storage=storage,
                dry_run=dry_run,
                older_than_days=older_than_days,
            )
        finally:
            await storage.close()
            await db.close()

    report = asyncio.run(run())
    for line in report.lines():
        print(line)
    return 0
