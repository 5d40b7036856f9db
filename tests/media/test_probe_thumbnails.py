from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vidgen.media import render, scenes
from vidgen.media.probe import ProbeError, VideoInfo, probe
from vidgen.media.thumbnails import make_thumbnail


def test_probe_mp4(small_mp4: Path) -> None:
    info = probe(small_mp4)
    assert info == VideoInfo(
        duration_seconds=2.0,
        frame_rate=12.0,
        width=256,
        height=256,
        codec="h264",
        file_size=small_mp4.stat().st_size,
    )


def test_probe_webm(tmp_path: Path) -> None:
    dest = tmp_path / "v.webm"
    render.render_text_video(
        "rain",
        width=320,
        height=180,
        duration=1,
        fps=10,
        fmt="webm",
        seed=0,
        dest=dest,
        progress=lambda _f: None,
        cancelled=lambda: False,
    )
    info = probe(dest)
    assert (info.codec, info.width, info.height) == ("vp9", 320, 180)
    assert info.duration_seconds == pytest.approx(1.0, abs=0.05)
    assert info.frame_rate == 10.0


def test_probe_refuses_non_video(tmp_path: Path) -> None:
    bogus = tmp_path / "x.mp4"
    bogus.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ProbeError):
        probe(bogus)
    with pytest.raises(ProbeError):
        probe(tmp_path / "missing.mp4")


@pytest.mark.parametrize(
    ("fmt", "pil_format"), [("jpeg", "JPEG"), ("jpg", "JPEG"), ("webp", "WEBP")]
)
def test_thumbnail(small_mp4: Path, tmp_path: Path, fmt: str, pil_format: str) -> None:
    dest = tmp_path / f"thumb.{fmt}"
    assert make_thumbnail(small_mp4, dest, width=128, fmt=fmt) == (128, 128)
    with Image.open(dest) as im:
        assert im.format == pil_format
        assert im.size == (128, 128)


def test_thumbnail_keeps_aspect_and_never_upscales(tmp_path: Path) -> None:
    video = tmp_path / "wide.mp4"
    render.render_text_video(
        "wide",
        width=320,
        height=180,
        duration=1,
        fps=10,
        fmt="mp4",
        seed=0,
        dest=video,
        progress=lambda _f: None,
        cancelled=lambda: False,
    )
    assert make_thumbnail(video, tmp_path / "a.jpg", width=160) == (160, 90)
    assert make_thumbnail(video, tmp_path / "b.jpg", width=1000) == (320, 180)


def test_thumbnail_is_taken_about_ten_percent_in(small_mp4: Path, tmp_path: Path) -> None:
    # The 2 s, 12 fps video: 10% in is frame 2 or 3, not frame 0.
    make_thumbnail(small_mp4, tmp_path / "t.webp", width=256, fmt="webp")
    scene = scenes.TextScene(
        "a red fox jumps over the moon", width=256, height=256, fps=12, duration=2, seed=1
    )
    with Image.open(tmp_path / "t.webp") as thumb:
        got = thumb.convert("RGB")

    def distance(frame: Image.Image) -> float:
        a, b = got.tobytes(), frame.tobytes()
        return sum(abs(x - y) for x, y in zip(a[::97], b[::97], strict=True)) / len(a[::97])

    distances = [distance(scene.frame(i)) for i in range(6)]
    assert min(range(6), key=distances.__getitem__) in (2, 3)


def test_thumbnail_refuses_non_video(tmp_path: Path) -> None:
    bogus = tmp_path / "x.webm"
    bogus.write_bytes(b"\x1a\x45\xdf\xa3garbage")
    with pytest.raises(ProbeError):
        make_thumbnail(bogus, tmp_path / "t.jpg", width=64)
    with pytest.raises(ValueError):
        make_thumbnail(bogus, tmp_path / "t.gif", width=64, fmt="gif")
