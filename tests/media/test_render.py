from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from PIL import Image

from vidgen.media import render, scenes
from vidgen.media.render import RenderCancelled

from .conftest import image_bytes

PROMPT = "a lighthouse in a storm, waves crashing at night"


def _decode(path: Path) -> tuple[str, int, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return (
            stream.codec_context.name,
            stream.codec_context.width,
            stream.codec_context.height,
            frames,
            float(stream.average_rate),
        )


def _first_frame(path: Path) -> bytes:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return bytes(frame.to_image().tobytes())


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "h264"), ("webm", "vp9")])
@pytest.mark.parametrize(("width", "height"), [(512, 512), (1280, 720)])
def test_text_video_has_requested_shape(
    tmp_path: Path, fmt: str, codec: str, width: int, height: int
) -> None:
    dest = tmp_path / f"out.{fmt}"
    seen: list[float] = []
    render.render_text_video(
        PROMPT,
        width=width,
        height=height,
        duration=1.5,
        fps=12,
        fmt=fmt,
        seed=7,
        dest=dest,
        progress=seen.append,
        cancelled=lambda: False,
    )
    got_codec, got_w, got_h, frames, rate = _decode(dest)
    assert (got_codec, got_w, got_h) == (codec, width, height)
    assert frames == 18  # 1.5 s × 12 fps
    assert rate == 12
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 5


def test_same_prompt_and_seed_give_the_same_video(tmp_path: Path) -> None:
    def make(name: str, seed: int) -> Path:
        dest = tmp_path / name
        render.render_text_video(
            PROMPT,
            width=256,
            height=144,
            duration=1,
            fps=8,
            fmt="mp4",
            seed=seed,
            dest=dest,
            progress=lambda _f: None,
            cancelled=lambda: False,
        )
        return dest

    first, again, other = make("a.mp4", 3), make("b.mp4", 3), make("c.mp4", 4)
    assert _first_frame(first) == _first_frame(again)
    assert _first_frame(first) != _first_frame(other)


def test_scene_frames_are_deterministic_and_animated() -> None:
    def scene(prompt: str) -> scenes.TextScene:
        return scenes.TextScene(prompt, width=320, height=240, fps=10, duration=2, seed=1)

    a, b = scene(PROMPT), scene(PROMPT)
    assert a.frame(5).tobytes() == b.frame(5).tobytes()
    assert a.frame(0).tobytes() != a.frame(10).tobytes()
    assert a.frame(19).tobytes() != scene("a different prompt").frame(19).tobytes()
    # Empty prompts and long words are fine too.
    scene("").frame(0)
    scene("x" * 500).frame(10)


def test_cancellation_stops_and_removes_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.mp4"
    seen: list[float] = []
    with pytest.raises(RenderCancelled):
        render.render_text_video(
            PROMPT,
            width=256,
            height=256,
            duration=30,
            fps=24,
            fmt="mp4",
            seed=0,
            dest=dest,
            progress=seen.append,
            cancelled=lambda: bool(seen) and seen[-1] >= 0.05,
        )
    assert not dest.exists()
    assert seen[-1] < 0.1  # stopped promptly, not after 720 frames


def test_failure_removes_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.webm"

    def boom(fraction: float) -> None:
        if fraction > 0.2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        render.render_text_video(
            PROMPT,
            width=128,
            height=128,
            duration=2,
            fps=10,
            fmt="webm",
            seed=0,
            dest=dest,
            progress=boom,
            cancelled=lambda: False,
        )
    assert not dest.exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 511},
        {"height": 8},
        {"fmt": "avi"},
        {"fps": 0},
        {"duration": 0},
    ],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    params: dict[str, object] = {
        "width": 128,
        "height": 128,
        "duration": 1,
        "fps": 8,
        "fmt": "mp4",
        "seed": 0,
        "dest": tmp_path / "x.mp4",
        "progress": lambda _f: None,
        "cancelled": lambda: False,
    }
    params.update(kwargs)
    with pytest.raises(ValueError):
        render.render_text_video("p", **params)  # type: ignore[arg-type]
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(("fmt", "size"), [("mp4", (400, 300)), ("webm", (90, 300))])
def test_image_video_pans_over_the_image(tmp_path: Path, fmt: str, size: tuple[int, int]) -> None:
    dest = tmp_path / f"pan.{fmt}"
    seen: list[float] = []
    render.render_image_video(
        image_bytes("PNG", size),
        width=320,
        height=180,
        duration=1,
        fps=10,
        fmt=fmt,
        seed=2,
        dest=dest,
        progress=seen.append,
        cancelled=lambda: False,
    )
    _codec, width, height, frames, _rate = _decode(dest)
    assert (width, height, frames) == (320, 180, 10)
    assert seen[-1] == 1.0


def test_ken_burns_moves() -> None:
    scene = scenes.KenBurnsScene(
        image_bytes("JPEG", (640, 480)), width=256, height=256, frames=20, seed=5
    )
    first, last = scene.frame(0), scene.frame(19)
    assert first.size == last.size == (256, 256)
    assert first.tobytes() != last.tobytes()


def test_frame_drawing_error_propagates_and_removes_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.mp4"
    scene = scenes.TextScene(PROMPT, width=64, height=64, fps=8, duration=2, seed=0)

    def frames() -> Iterator[Image.Image]:
        for i in range(16):
            if i == 5:
                raise OSError("font vanished")
            yield scene.frame(i)

    with pytest.raises(OSError, match="font vanished"):
        render.encode_frames(
            frames(),
            total=16,
            dest=dest,
            fmt="mp4",
            width=64,
            height=64,
            fps=8,
            progress=lambda _f: None,
            cancelled=lambda: False,
        )
    assert not dest.exists()
