"""Assertions shared by the fault tests: exactly one terminal state, no overlapping runs."""

from __future__ import annotations

from collections import Counter

from tortoise.transactions import in_transaction

from vidgen.jobs import lifecycle
from vidgen.models import TERMINAL_STATUSES, User, Video, VideoAttempt, VideoStatusEvent

TERMINAL = [s.value for s in TERMINAL_STATUSES]


async def submit_jobs(owner: User, prompts: list[str], *, provider: str = "test") -> list[int]:
    """Queue one video per prompt, as generateVideo would (row + first history row)."""
    ids = []
    async with in_transaction():
        for prompt in prompts:
            video = await Video.create(
                owner=owner, prompt=prompt, provider=provider, resolution="64x64", max_retries=8
            )
            await lifecycle.record_created(video, actor="fault-test")
            ids.append(video.id)
    return ids


async def count_terminal(ids: list[int]) -> int:
    return await Video.filter(id__in=ids, status__in=TERMINAL).count()


async def assert_each_job_ran_exactly_once(ids: list[int]) -> dict[int, Video]:
    """Every job has exactly one terminal history row (its current status), its attempts are
    numbered 1..n without gaps, and no attempt began before the previous one ended."""
    videos = {v.id: v for v in await Video.filter(id__in=ids)}
    assert set(videos) == set(ids), "a job row disappeared"
    assert all(v.status in TERMINAL for v in videos.values())
    terminal_rows = Counter(
        await VideoStatusEvent.filter(video_id__in=ids, to_status__in=TERMINAL).values_list(
            "video_id", flat=True
        )
    )
    twice = [i for i in ids if terminal_rows[i] != 1]
    assert not twice, f"jobs without exactly one terminal state: {twice}"
    attempts: dict[int, list[VideoAttempt]] = {}
    for row in await VideoAttempt.filter(video_id__in=ids).order_by("video_id", "attempt"):
        attempts.setdefault(row.video_id, []).append(row)
    for video_id, rows in attempts.items():
        numbers = [r.attempt for r in rows]
        assert numbers == list(range(1, len(rows) + 1)), f"attempt gap on {video_id}: {numbers}"
        for earlier, later in zip(rows, rows[1:], strict=False):
            assert earlier.finished_at is not None, f"unfinished attempt on {video_id}"
            assert earlier.finished_at <= later.started_at, f"overlapping runs on {video_id}"
    return videos
