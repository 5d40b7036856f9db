"""Films through the job engine, on both backends: renderStory's clips run as ordinary jobs,
the film waits for them, then its worker stitches them; reuse, paragraph edits, a failed
clip and its retry, cancels, and clips of another size than the film."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.media.frames import difference, frame_at, frame_count
from vidgen import errors
from vidgen.events.memory import MemoryBus
from vidgen.jobs import queue
from vidgen.jobs.worker import Worker
from vidgen.models import FilmClip, Story, User, Video, VideoAttempt, VideoKind, VideoStatus
from vidgen.providers.local import LocalProvider
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.services import catalog, films, videos
from vidgen.settings import Settings

S = VideoStatus
SAME = 12.0  # mean absolute difference of one frame decoded twice after re-encoding

PARAGRAPHS = [
    "A red fox wakes in a snowy forest.",
    "It runs across a frozen river at dawn.",
    "At dusk it curls up under a pine tree.",
]


@pytest_asyncio.fixture
async def runtime(db: Settings, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = db.model_copy(update={"max_retries": 0})
    providers = {
        "local": LocalProvider(settings, storage_tmp=tmp_path / "renders"),
        "test": TestProvider(),
    }
    rt = Runtime.create(settings, bus=MemoryBus(), providers=providers)
    await rt.open()
    try:
        yield rt
    finally:
        await rt.close()


@pytest_asyncio.fixture
async def user(db: Settings) -> User:
    return await User.create(email="films@example.com", password_hash="x")


async def _story(user: User, paragraphs: list[str]) -> Story:
    return await catalog.create_story(viewer=user, title="The fox", paragraphs=paragraphs)


async def _render(runtime: Runtime, user: User, story: Story, **options: object) -> Video:
    values: dict[str, object] = {"resolution": "256x256", "duration_seconds_per_paragraph": 1.0}
    values.update(options)
    return await films.render_story(
        runtime=runtime,
        viewer=user,
        story_id=story.id,
        **values,  # type: ignore[arg-type]
    )


async def _run(runtime: Runtime) -> int:
    return await Worker(runtime, concurrency=2).run_until_idle()


def _file(runtime: Runtime, video: Video) -> Path:
    assert video.video_file is not None
    path = runtime.storage.local_path(video.video_file)
    assert path is not None and path.exists()
    return path


async def _clips_of(film: Video) -> list[Video]:
    ids = await films.film_clip_ids(film.id)
    by_id = {v.id: v for v in await Video.filter(id__in=ids)}
    return [by_id[i] for i in ids]


async def test_a_story_renders_to_one_film_of_its_clips(runtime: Runtime, user: User) -> None:
    story = await _story(user, PARAGRAPHS)
    film = await _render(runtime, user, story)
    assert film.kind == VideoKind.FILM and film.status == S.QUEUED
    assert film.story_id == story.id and film.paragraph_index is None

    # The film waits for its clips: a claim takes the three clips, never the film.
    claimed = await queue.claim(worker_id="probe", limit=10, lease_seconds=30)
    assert sorted(c.video_id for c in claimed) == sorted(await films.film_clip_ids(film.id))
    assert all(c.spec is not None and c.spec.kind == "clip" for c in claimed)
    await _release(claimed)

    await _run(runtime)
    await film.refresh_from_db()
    assert film.status == S.COMPLETED, film.error_message
    clips = await _clips_of(film)
    assert [c.paragraph_index for c in clips] == [0, 1, 2]
    assert all(c.kind == VideoKind.CLIP and c.status == S.COMPLETED for c in clips)
    assert (film.width, film.height) == (256, 256)
    assert film.thumbnail_file is not None

    path = _file(runtime, film)
    frames, fps = frame_count(path)
    lengths = [frame_count(_file(runtime, c)) for c in clips]
    total = sum(n / rate for n, rate in lengths)
    assert abs(frames / fps - total) <= (len(clips) - 1) / fps + 1e-9
    assert film.duration_seconds == pytest.approx(total, abs=len(clips) / fps)
    start = 0.0
    for clip, (n, rate) in zip(clips, lengths, strict=True):
        middle = n / rate / 2
        want = frame_at(_file(runtime, clip), middle)
        assert difference(frame_at(path, start + middle), want) < SAME
        start += n / rate
    first_middle = frame_at(path, lengths[0][0] / lengths[0][1] / 2)
    assert difference(first_middle, frame_at(_file(runtime, clips[1]), 0.5)) > 2 * SAME

    # Captions asked for: the same clips (no new job), their text burned in at the bottom.
    jobs_before = await Video.filter(kind=VideoKind.CLIP).count()
    captioned = await _render(runtime, user, story, captions=True, transition="crossfade")
    assert await films.film_clip_ids(captioned.id) == [c.id for c in clips]
    assert await Video.filter(kind=VideoKind.CLIP).count() == jobs_before
    assert await _run(runtime) == 1  # the film alone
    await captioned.refresh_from_db()
    assert captioned.status == S.COMPLETED
    plain = frame_at(path, 0.5)
    with_text = frame_at(_file(runtime, captioned), 0.5)
    assert difference(plain, with_text, box=(0, 216, 256, 256)) > 2 * SAME
    assert difference(plain, with_text, box=(0, 0, 256, 120)) < SAME

    assert (await films.story_film(story)).id == captioned.id  # type: ignore[union-attr]
    assert [c.id for c in await films.story_clips(story)] == [c.id for c in clips]


async def _release(claimed: list) -> None:
    from vidgen.jobs import leases

    for job in claimed:
        await leases.release(job.video_id, job.attempt, worker_id="probe", bus=None)


async def test_an_edited_paragraph_regenerates_only_its_clip(runtime: Runtime, user: User) -> None:
    story = await _story(user, ["succeed one", "succeed two", "succeed three"])
    first = await _render(runtime, user, story, provider="test", resolution="64x64")
    await _run(runtime)
    await first.refresh_from_db()
    assert first.status == S.COMPLETED
    old = await films.film_clip_ids(first.id)

    await catalog.update_story(
        viewer=user, story_id=story.id, paragraphs=["succeed one", "succeed 2", "succeed three"]
    )
    second = await _render(runtime, user, story, provider="test", resolution="64x64")
    new = await films.film_clip_ids(second.id)
    assert new[0] == old[0] and new[2] == old[2] and new[1] != old[1]
    assert await Video.filter(kind=VideoKind.CLIP, status=S.QUEUED).count() == 1
    assert await _run(runtime) == 2  # the new clip, then the film
    await second.refresh_from_db()
    assert second.status == S.COMPLETED
    # The untouched clips ran once, ever.
    assert await VideoAttempt.filter(video_id__in=[old[0], old[2]]).count() == 2


async def test_a_failed_clip_fails_the_film_and_retry_reruns_only_it(
    runtime: Runtime, user: User
) -> None:
    story = await _story(user, ["succeed one", "fail-times:1 two", "succeed three"])
    film = await _render(runtime, user, story, provider="test", resolution="64x64")
    await _run(runtime)
    await film.refresh_from_db()
    clips = await _clips_of(film)
    assert [c.status for c in clips] == [S.COMPLETED, S.FAILED, S.COMPLETED]
    assert film.status == S.FAILED
    assert film.error_message is not None and "paragraph 1" in film.error_message
    assert f"video {clips[1].id}" in film.error_message

    # The film's retry is one job for the quotas, whatever clips it retries.
    user.max_active_jobs = 1
    await user.save()
    retried = await videos.retry_video(runtime=runtime, viewer=user, video_id=film.id)
    assert retried.status == S.QUEUED
    assert [c.status for c in await _clips_of(film)] == [S.COMPLETED, S.QUEUED, S.COMPLETED]
    assert await _run(runtime) == 2  # the failed clip again, then the film
    await film.refresh_from_db()
    assert film.status == S.COMPLETED, film.error_message
    attempts = {c.id: await VideoAttempt.filter(video_id=c.id).count() for c in clips}
    assert attempts == {clips[0].id: 1, clips[1].id: 2, clips[2].id: 1}


async def test_cancelling_the_film_cancels_its_pending_clips(runtime: Runtime, user: User) -> None:
    story = await _story(user, ["succeed one", "succeed two"])
    done = await _render(runtime, user, story, provider="test", resolution="64x64")
    await _run(runtime)
    await catalog.update_story(viewer=user, story_id=story.id, paragraphs=["succeed one", "hang"])
    film = await _render(runtime, user, story, provider="test", resolution="64x64")
    kept, pending = await films.film_clip_ids(film.id)
    assert kept == (await films.film_clip_ids(done.id))[0]

    canceled = await videos.cancel_video(runtime=runtime, viewer=user, video_id=film.id)
    assert canceled.status == S.CANCELED
    statuses = dict(await Video.filter(id__in=[kept, pending]).values_list("id", "status"))
    assert statuses == {kept: S.COMPLETED, pending: S.CANCELED}
    assert await _run(runtime) == 0


async def test_clips_of_another_size_are_scaled_to_the_film(runtime: Runtime, user: User) -> None:
    # The test provider's output is 64x64 whatever was asked: the film is 640x360 anyway.
    story = await _story(user, ["succeed one", "succeed two"])
    film = await _render(runtime, user, story, provider="test", resolution="640x360")
    await _run(runtime)
    await film.refresh_from_db()
    assert film.status == S.COMPLETED, film.error_message
    clips = await _clips_of(film)
    assert {(c.width, c.height) for c in clips} == {(64, 64)}
    assert (film.width, film.height) == (640, 360)
    clip_frame = frame_at(_file(runtime, clips[0]), 0.0, size=(640, 360))
    assert difference(frame_at(_file(runtime, film), 0.0), clip_frame) < SAME


async def test_bad_requests_write_nothing(runtime: Runtime, user: User) -> None:
    empty = await _story(user, [])
    with pytest.raises(errors.BadUserInput) as info:
        await _render(runtime, user, empty)
    assert info.value.field == "storyId"
    story = await _story(user, PARAGRAPHS)
    with pytest.raises(errors.BadUserInput) as info:
        await _render(runtime, user, story, resolution="13x7")
    assert info.value.field == "resolution"
    with pytest.raises(errors.BadUserInput) as info:
        await _render(runtime, user, story, duration_seconds_per_paragraph=500.0)
    assert info.value.field == "durationSecondsPerParagraph"
    other = await User.create(email="other@example.com", password_hash="x")
    with pytest.raises(errors.NotFound):
        await _render(runtime, other, story)
    assert await Video.all().count() == 0
    assert await FilmClip.all().count() == 0


async def test_the_film_is_live_like_any_job_and_counts_as_one_for_quotas(
    runtime: Runtime, user: User
) -> None:
    from vidgen.events.channels import owner_channel
    from vidgen.models import WebhookDelivery

    runtime.settings.webhook_allow_private = True
    user.max_active_jobs = 1  # renderStory needs one free slot, whatever the story's length
    await user.save()
    story = await _story(user, ["succeed one", "succeed two", "succeed three"])
    async with runtime.bus.subscribe(owner_channel(user.id), maxsize=256) as sub:
        film = await _render(
            runtime,
            user,
            story,
            provider="test",
            resolution="64x64",
            webhook_url="http://127.0.0.1:9/hook",
        )
        # Its clips are the user's active jobs: nothing more fits until they end.
        with pytest.raises(errors.QuotaExceeded):
            await _render(runtime, user, story, provider="test", resolution="256x256")
        with pytest.raises(errors.QuotaExceeded):
            await videos.generate_video(
                runtime=runtime, viewer=user, prompt="succeed", provider="test"
            )
        await _run(runtime)
        seen = []
        while not sub.queue.empty():
            message = await sub.get()
            seen.append(message)
    film_statuses = [m["status"] for m in seen if m.get("video_id") == film.id]
    assert film_statuses == ["queued", "processing", "completed"], seen
    clip_ids = set(await films.film_clip_ids(film.id))
    assert {m["video_id"] for m in seen} == clip_ids | {film.id}
    # Its status changes go to its webhook, as generateVideo's do.
    rows = await WebhookDelivery.filter(video_id=film.id).order_by("version")
    assert [r.video_status for r in rows] == ["queued", "processing", "completed"]
    assert not await WebhookDelivery.filter(video_id__in=clip_ids).exists()


async def test_a_film_whose_worker_died_is_stitched_by_the_next(
    runtime: Runtime, user: User
) -> None:
    import asyncio

    story = await _story(user, ["succeed one", "succeed two"])
    await _render(runtime, user, story, provider="test", resolution="64x64")
    assert await _run(runtime) == 3
    # The clips are done: a captioned film of them is due at once, and a worker that dies
    # right after claiming it leaves it processing until its lease runs out.
    film = await _render(runtime, user, story, provider="test", resolution="64x64", captions=True)
    await Video.filter(id=film.id).update(max_retries=3)  # this runtime's default is 0
    claimed = await queue.claim(worker_id="doomed", limit=5, lease_seconds=0.05)
    assert [c.video_id for c in claimed] == [film.id]
    assert claimed[0].spec is not None and claimed[0].spec.kind == "film"
    await asyncio.sleep(0.2)
    assert await _run(runtime) == 1  # swept back to the queue, then stitched
    await film.refresh_from_db()
    assert film.status == S.COMPLETED and film.rescue_count == 1
    assert await VideoAttempt.filter(video_id=film.id).count() == 2


async def test_cancelling_a_film_while_it_is_stitched_stops_the_stitch(
    runtime: Runtime, user: User
) -> None:
    import asyncio

    from tests.jobs.conftest import wait_until

    # A large film: its stitch takes long enough to be canceled midway.
    story = await _story(user, PARAGRAPHS)
    film = await _render(
        runtime, user, story, resolution="1280x720", duration_seconds_per_paragraph=3.0
    )
    worker = Worker(runtime, concurrency=2)
    worker.start()
    try:

        async def stitching() -> bool:
            return await Video.filter(id=film.id, status=S.PROCESSING).exists()

        await wait_until(stitching, seconds=120)
        await videos.cancel_video(runtime=runtime, viewer=user, video_id=film.id)

        async def ended() -> bool:
            await film.refresh_from_db()
            return film.status != S.PROCESSING

        await wait_until(ended, seconds=30)
    finally:
        await worker.stop()
    assert film.status == S.CANCELED, film.error_message
    assert film.video_file is None
    assert [c.status for c in await _clips_of(film)] == [S.COMPLETED] * 3
    media = runtime.settings.resolved_media_root
    assert not await asyncio.to_thread(lambda: list(media.rglob("*.part")))  # nothing left
