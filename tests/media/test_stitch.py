"""The stitcher: durations, frames, sizes and rates, captions and crossfades, decoded and
compared with the clips themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgen.media import render, stitch
from vidgen.media.render import RenderCancelled

from .frames import difference, frame_at, frame_count

# Re-encoding is lossy: the same frame twice stays well under this; different scenes are far
# above it (checked below, so the comparison can fail).
SAME = 12.0


def _clip(
    tmp_path: Path, index: int, *, size: tuple[int, int], fps: float, seconds: float = 1.0
) -> Path:
    dest = tmp_path / f"clip{index}.mp4"
    render.render_text_video(
        f"paragraph {index}: a fox in the snow",
        width=size[0],
        height=size[1],
        duration=seconds,
        fps=fps,
        fmt="mp4",
        seed=index * 7919,
        dest=dest,
        progress=lambda _: None,
        cancelled=lambda: False,
    )
    return dest


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    """Three clips of different sizes and rates (a story re-rendered on another provider)."""
    return [
        _clip(tmp_path, 0, size=(128, 96), fps=24),
        _clip(tmp_path, 1, size=(160, 96), fps=30, seconds=1.5),
        _clip(tmp_path, 2, size=(64, 48), fps=12),
    ]


def _film(
    tmp_path: Path, clips: list[Path], name: str, **part: object
) -> tuple[Path, stitch.Stitched]:
    dest = tmp_path / f"{name}.mp4"
    parts = [stitch.Part(path, **part) for path in clips]  # type: ignore[arg-type]
    done = stitch.stitch(parts, dest, fmt="mp4", width=128, height=96, fps=24)
    return dest, done


def _durations(clips: list[Path]) -> list[float]:
    out = []
    for path in clips:
        frames, fps = frame_count(path)
        out.append(frames / fps)
    return out


@pytest.mark.parametrize("transition", ["cut", "crossfade"])
def test_film_is_the_clips_in_order_at_the_films_size_and_rate(
    tmp_path: Path, clips: list[Path], transition: str
) -> None:
    film, done = _film(tmp_path, clips, transition, transition=transition)
    frames, fps = frame_count(film)
    assert fps == 24
    assert frames == done.frames
    lengths = _durations(clips)
    # The sum of the clips, within one frame per transition.
    assert abs(frames / fps - sum(lengths)) <= (len(clips) - 1) / fps + 1e-9
    start = 0.0
    middles = []
    for path, length, count in zip(clips, lengths, done.part_frames, strict=True):
        middle = length / 2
        expected = frame_at(path, middle, size=(128, 96))
        got = frame_at(film, start + middle)
        middles.append(got)
        assert difference(got, expected) < SAME, path.name
        start += count / fps
    # The comparison tells clips apart: each middle differs from the other clips' middles.
    assert difference(middles[0], middles[1]) > 2 * SAME
    assert difference(middles[1], middles[2]) > 2 * SAME


def test_captions_are_burned_in_at_the_bottom(tmp_path: Path, clips: list[Path]) -> None:
    plain, _ = _film(tmp_path, clips, "plain")
    captioned, _ = _film(tmp_path, clips, "captioned", caption="A fox runs through the snow")
    a, b = frame_at(plain, 0.5), frame_at(captioned, 0.5)
    bottom, top = (0, 80, 128, 96), (0, 0, 128, 40)
    assert difference(a, b, box=bottom) > 2 * SAME
    assert difference(a, b, box=top) < SAME


def test_crossfade_blends_across_the_boundary_only(tmp_path: Path, clips: list[Path]) -> None:
    cut, done = _film(tmp_path, clips[:2], "cut2")
    fade, _ = _film(tmp_path, clips[:2], "fade2", transition="crossfade")
    boundary = done.part_frames[0] / 24
    last_of_first = frame_at(cut, boundary - 1 / 24)
    assert difference(frame_at(fade, boundary - 1 / 24), last_of_first) > SAME / 2
    assert difference(frame_at(fade, 0.5), frame_at(cut, 0.5)) < SAME


def test_stops_when_cancelled(tmp_path: Path, clips: list[Path]) -> None:
    with pytest.raises(RenderCancelled):
        stitch.stitch(
            [stitch.Part(p) for p in clips],
            tmp_path / "stopped.mp4",
            fmt="mp4",
            width=64,
            height=48,
            fps=24,
            cancelled=lambda: True,
        )


def test_webm_film(tmp_path: Path, clips: list[Path]) -> None:
    dest = tmp_path / "film.webm"
    done = stitch.stitch(
        [stitch.Part(p) for p in clips], dest, fmt="webm", width=64, height=48, fps=12
    )
    assert frame_count(dest) == (done.frames, 12.0)
