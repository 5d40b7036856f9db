"""The outbox write: every status change of a video with a webhook URL leaves one row, in
the change's own transaction, holding the video as that change left it; a video without a
URL costs no statement (tests/webhooks_out/test_delivery.py delivers the rows)."""

from __future__ import annotations

import pytest
from tortoise.transactions import in_transaction

from tests.api.conftest import StatementCounter
from vidgen import dialect
from vidgen.jobs import control, lifecycle, queue
from vidgen.models import (
    AttemptOutcome,
    DeliveryState,
    User,
    Video,
    VideoStatus,
    VideoStatusEvent,
    WebhookDelivery,
)

S = VideoStatus
URL = "https://hooks.example.com/vidgen"


class Boom(Exception):
    pass


async def new_video(owner: User, *, hooked: bool = True, prompt: str = "succeed") -> Video:
    video = Video(
        owner_id=owner.id,
        prompt=prompt,
        provider="test",
        resolution="64x64",
        webhook_url=URL if hooked else None,
    )
    await lifecycle.record_created(video, actor="test")
    return video


async def outbox(video_id: int) -> list[WebhookDelivery]:
    return await WebhookDelivery.filter(video_id=video_id).order_by("version")


async def run_job(video_id: int, **fields: object) -> None:
    """Claim the one queued video and complete it."""
    [job] = await queue.claim(worker_id="w", limit=1, lease_seconds=60)
    assert job.video_id == video_id and job.spec is not None
    await lifecycle.finish(
        video_id,
        job.attempt,
        S.COMPLETED,
        AttemptOutcome.SUCCEEDED,
        actor="w",
        message="done",
        fields=fields,
        webhook=job.spec.webhook_url is not None,  # as the worker's finish passes it
    )


@pytest.fixture
async def owner(db) -> User:
    return await User.create(email="owner@example.com", password_hash="x")


async def test_each_status_change_leaves_one_row_with_the_video_as_it_left_it(owner) -> None:
    hooked = await new_video(owner)
    await run_job(hooked.id, video_file="u1/v1/video.mp4", thumbnail_file="u1/v1/thumb.jpg")
    plain = await new_video(owner, hooked=False)
    await run_job(plain.id)

    rows = await outbox(hooked.id)
    events = await VideoStatusEvent.filter(video_id=hooked.id).order_by("id")
    assert [r.video_status for r in rows] == ["queued", "processing", "completed"]
    assert [r.event_id for r in rows] == [e.id for e in events]
    assert [r.version for r in rows] == [e.version for e in events] == [1, 2, 3]
    assert [r.at for r in rows] == [e.at for e in events]
    assert all(r.url == URL and r.owner_id == owner.id for r in rows)
    assert all(r.state is DeliveryState.PENDING and r.attempts == 0 for r in rows)
    assert all(r.next_attempt_at == r.at and r.body is None for r in rows)
    assert len({r.message_id for r in rows}) == 3
    assert all(r.message_id.startswith("msg_") and len(r.message_id) == 36 for r in rows)
    done = rows[-1]
    assert (done.progress, done.video_ref, done.thumbnail_ref) == (
        1.0,
        "u1/v1/video.mp4",
        "u1/v1/thumb.jpg",
    )
    assert rows[0].video_ref is None and rows[0].progress == 0.0
    assert await outbox(plain.id) == []


async def test_transitions_failures_and_retries_leave_rows_too(owner) -> None:
    canceled = await new_video(owner)
    await lifecycle.transition(canceled.id, S.CANCELED, actor="user:1", message="canceled")
    failed = await new_video(owner)
    [job] = await queue.claim(worker_id="w", limit=1, lease_seconds=60)
    assert job.video_id == failed.id
    await lifecycle.finish(
        failed.id,
        job.attempt,
        S.FAILED,
        AttemptOutcome.FAILED,
        actor="w",
        message="the provider said no",
        fields={"error_message": "the provider said no"},
    )
    await control.retry(failed.id, actor="user:1", bus=None)

    assert [r.video_status for r in await outbox(canceled.id)] == ["queued", "canceled"]
    rows = await outbox(failed.id)
    assert [r.video_status for r in rows] == ["queued", "processing", "failed", "queued"]
    assert rows[2].error_message == "the provider said no"


async def test_a_video_inserted_before_its_history_row_gets_its_row(owner) -> None:
    # The input-image path: the row first (its key needs the id), then the history row.
    video = Video(
        owner_id=owner.id, prompt="p", provider="test", resolution="64x64", webhook_url=URL
    )
    async with in_transaction():
        await lifecycle.record_created(video, actor="test", with_id=lambda vid: _image_key(vid))
    [row] = await outbox(video.id)
    assert row.video_status == "queued" and row.version == 1


async def _image_key(video_id: int) -> dict[str, str]:
    return {"input_image": f"u1/v{video_id}/input.png"}


async def test_a_change_rolled_back_leaves_no_row(owner) -> None:
    video = await new_video(owner)
    with pytest.raises(Boom):
        async with in_transaction():
            await lifecycle.transition(video.id, S.CANCELED, actor="user:1")
            raise Boom
    assert (await Video.get(id=video.id)).status == S.QUEUED
    assert [r.video_status for r in await outbox(video.id)] == ["queued"]
    with pytest.raises(Boom):
        async with in_transaction():
            await new_video(owner)
            raise Boom
    assert await WebhookDelivery.all().count() == 1


async def test_a_video_without_a_url_costs_no_statement(owner) -> None:
    """Create, claim and finish, counted: on PostgreSQL the same statements with a URL or
    without (the row rides in each one), and only the claim, which cannot know before it
    runs, carries the insert for a video without one; on SQLite one statement more per
    change, only with a URL."""
    counts = {}
    for hooked in (False, True):
        counter = StatementCounter()
        with counter.counting():
            video = await new_video(owner, hooked=hooked)
            await run_job(video.id)
        counts[hooked] = counter.statements
    carrying = [sql for sql in counts[False] if "webhook_deliveries" in sql]
    if dialect.is_postgres():
        assert len(counts[True]) == len(counts[False]), counts
        assert len(carrying) == 1 and "attempts AS (" in carrying[0], carrying
    else:
        assert len(counts[True]) == len(counts[False]) + 3, counts
        assert carrying == []
