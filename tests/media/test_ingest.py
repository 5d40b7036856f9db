"""The pipeline's media stage: one call stores a provider's output, its thumbnail and facts."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import av
import pytest

from vidgen.media import ingest, inspect
from vidgen.media.ingest import Abandoned, Ingest
from vidgen.media.probe import ProbeError, probe
from vidgen.media.storage import InvalidKey, LocalStorage
from vidgen.media.thumbnails import FORMATS, write_thumbnail
from vidgen.providers.base import PollResult, State
from vidgen.providers.testing import TestProvider, tiny_video


def _job(storage: LocalStorage, video_id: int = 7, **kw: object) -> Ingest:
    options: dict = dict(
        owner_id=3,
        video_id=video_id,
        output_format="mp4",
        thumbnail_width=320,
        thumbnail_format="jpeg",
    )
    options.update(kw)
    return Ingest(storage, **options)


def _writer(data: bytes, content_type: str | None = "video/mp4"):
    def fetch(dest: Path) -> str | None:
        dest.write_bytes(data)
        return content_type

    return fetch


def _reference_thumbnail(video: Path, dest: Path, *, width: int, fmt: str) -> None:
    """The thumbnail as it was made before the media stage was optimised: FFmpeg's default
    threads, a fresh swscale context per frame, PIL writing the file itself."""
    target = probe(video).duration_seconds * 0.10
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        container.seek(round(target / stream.time_base), stream=stream, backward=True)
        frame = None
        for candidate in container.decode(stream):
            frame = candidate
            if candidate.time is not None and candidate.time >= target:
                break
        assert frame is not None
        image = frame.to_image()
    target_w = min(width, image.width)
    target_h = max(1, round(image.height * target_w / image.width))
    if (target_w, target_h) != image.size:
        image = image.resize((target_w, target_h), 1, reducing_gap=2.0)  # LANCZOS
    pil_format, options = FORMATS[fmt]
    image.save(dest, pil_format, **options)


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize(("fmt", "content_type"), [("mp4", "video/mp4"), ("webm", "video/webm")])
def test_run_stores_video_thumbnail_and_facts(
    storage: LocalStorage, tmp_path: Path, fmt: str, content_type: str
) -> None:
    data = tiny_video(fmt)
    stored = _job(storage, output_format=fmt).run(_writer(data, content_type))
    assert stored.video_key == f"u3/v7/video.{fmt}"
    assert stored.thumbnail_key == "u3/v7/thumbnail.jpg"
    assert storage.path(stored.video_key).read_bytes() == data
    assert stored.file_size == len(data)
    assert stored.info == probe(storage.path(stored.video_key))
    # Nothing but the two keys: no part file, no temp file.
    assert _listing(storage.root) == ["u3", "u3/v7", "u3/v7/thumbnail.jpg", f"u3/v7/video.{fmt}"]
    reference = tmp_path / "reference.jpg"
    _reference_thumbnail(storage.path(stored.video_key), reference, width=320, fmt="jpeg")
    assert storage.path(stored.thumbnail_key).read_bytes() == reference.read_bytes()


def test_the_content_type_names_the_extension(storage: LocalStorage) -> None:
    # Asked for mp4, the provider sent WebM (and said so): stored as what it is.
    stored = _job(storage).run(_writer(tiny_video("webm"), "video/webm; codecs=vp9"))
    assert stored.video_key == "u3/v7/video.webm"
    assert stored.info.codec == "vp9"


def test_a_wrong_content_type_changes_nothing(storage: LocalStorage) -> None:
    # Said mp4, is WebM: the format hint fails, FFmpeg probes, the facts are the true ones.
    stored = _job(storage).run(_writer(tiny_video("webm"), "video/mp4"))
    assert stored.info == probe(storage.path(stored.video_key))
    assert stored.info.codec == "vp9"


def test_the_test_providers_blocking_download(storage: LocalStorage) -> None:
    provider = TestProvider()
    result = PollResult(state=State.SUCCEEDED, extra={"format": "webm"})
    fetch = partial(provider.download_blocking, result, max_bytes=10_000_000)
    stored = _job(storage).run(fetch)
    assert stored.video_key == "u3/v7/video.webm"
    assert storage.path(stored.video_key).read_bytes() == tiny_video("webm")


def test_an_unreadable_output_leaves_nothing(storage: LocalStorage) -> None:
    with pytest.raises(ProbeError):
        _job(storage).run(_writer(b"not a video at all"))
    assert _listing(storage.root) == ["u3"]  # the video's folder is gone again


def test_a_failed_download_leaves_nothing(storage: LocalStorage) -> None:
    def fetch(dest: Path) -> str:
        dest.write_bytes(b"half")
        raise OSError("connection reset")

    with pytest.raises(OSError):
        _job(storage).run(fetch)
    assert _listing(storage.root) == ["u3"]


def test_a_failure_keeps_the_stored_version(storage: LocalStorage) -> None:
    first = _job(storage).run(_writer(tiny_video("mp4")))
    with pytest.raises(ProbeError):
        _job(storage).run(_writer(b"garbage"))
    assert storage.path(first.video_key).read_bytes() == tiny_video("mp4")
    assert _listing(storage.root) == ["u3", "u3/v7", "u3/v7/thumbnail.jpg", "u3/v7/video.mp4"]


def test_an_abandoned_stage_commits_nothing(storage: LocalStorage) -> None:
    job = _job(storage)

    def fetch(dest: Path) -> str:
        dest.write_bytes(tiny_video("mp4"))
        job.abandoned = True  # the job was canceled while the thread ran
        return "video/mp4"

    with pytest.raises(Abandoned):
        job.run(fetch)
    assert _listing(storage.root) == ["u3"]


def test_two_calls_around_an_async_download(storage: LocalStorage) -> None:
    job = _job(storage)
    dest = job.open()
    assert dest.parent == storage.root / "u3" / "v7" and dest.name.startswith(".video.mp4.")
    dest.write_bytes(tiny_video("mp4"))
    stored = job.finish("video/mp4")
    assert storage.path(stored.video_key).read_bytes() == tiny_video("mp4")


def test_a_bad_thumbnail_format_is_refused_up_front(storage: LocalStorage) -> None:
    with pytest.raises(ValueError):
        _job(storage, thumbnail_format="gif")


def test_a_symlinked_folder_is_refused(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.root.mkdir(parents=True)
    os.symlink(outside, storage.root / "u3")
    with pytest.raises(InvalidKey):
        _job(storage).run(_writer(tiny_video("mp4")))
    assert list(outside.iterdir()) == []


def test_inspect_read_with_a_format_hint_matches_probing(tmp_path: Path) -> None:
    for fmt in ("mp4", "webm"):
        video = tmp_path / f"v.{fmt}"
        video.write_bytes(tiny_video(fmt))
        for hint in (None, "mp4", "webm", "no-such-format"):
            info, image = inspect.read(video, width=32, fmt="jpeg", container_format=hint)
            assert info == probe(video)
            reference = tmp_path / "ref.jpg"
            _reference_thumbnail(video, reference, width=32, fmt="jpeg")
            assert image == reference.read_bytes()


def test_write_thumbnail_bytes_are_pils_own(tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("RGB", (90, 60), (10, 200, 30))
    for fmt in ("jpeg", "webp"):
        ours, theirs = tmp_path / f"ours.{fmt}", tmp_path / f"theirs.{fmt}"
        write_thumbnail(image, ours, width=45, fmt=fmt)
        pil_format, options = FORMATS[fmt]
        image.resize((45, 30), Image.LANCZOS, reducing_gap=2.0).save(theirs, pil_format, **options)
        assert ours.read_bytes() == theirs.read_bytes()


def test_video_exts_cover_the_test_providers_types() -> None:
    assert set(ingest.VIDEO_EXTS.values()) == {"mp4", "webm"}


def test_thumbnail_of_a_rendered_video_is_byte_identical(small_mp4: Path, tmp_path: Path) -> None:
    for width in (64, 320):
        info, image = inspect.read(small_mp4, width=width, fmt="jpeg", container_format="mp4")
        reference = tmp_path / "ref.jpg"
        _reference_thumbnail(small_mp4, reference, width=width, fmt="jpeg")
        assert image == reference.read_bytes()
        assert info == probe(small_mp4)
