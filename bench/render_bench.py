"""How fast is the local renderer, next to FFmpeg's own encoder on the same frames?

For each size, in the same run and with the same codec settings:

- ``ours``: :func:`vidgen.media.render.render_text_video`, i.e. draw every frame with Pillow,
  convert it and encode it;
- ``ffmpeg``: encode-only of the identical frames, generated and converted to yuv420p
  beforehand, through PyAV (the baseline: what the encoder alone costs).

``ratio`` is ours / ffmpeg: 1.0 would mean frame generation is free.

Run: ``.venv/bin/python -m bench.render_bench`` (or ``python bench/render_bench.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from vidgen.media import render

PROMPT = "a lighthouse on a cliff in a storm, waves crashing, gulls circling at dusk"
SIZES = ((512, 512), (1280, 720))
FPS = 24


def _ours(width: int, height: int, frames: int, fmt: str, dest: Path) -> float:
    started = time.perf_counter()
    render.render_text_video(
        PROMPT,
        width=width,
        height=height,
        duration=frames / FPS,
        fps=FPS,
        fmt=fmt,
        seed=1,
        dest=dest,
        progress=lambda _fraction: None,
        cancelled=lambda: False,
    )
    return time.perf_counter() - started


def _encode_only(width: int, height: int, frames: int, fmt: str, dest: Path) -> float:
    scene = render.TextScene(
        PROMPT, width=width, height=height, fps=FPS, duration=frames / FPS, seed=1
    )
    ready = [
        av.VideoFrame.from_image(scene.frame(i)).reformat(format="yuv420p") for i in range(frames)
    ]
    started = time.perf_counter()
    with render.Encoder(dest, fmt=fmt, width=width, height=height, fps=FPS) as encoder:
        for frame in ready:
            encoder.add_frame(frame)
        encoder.finish()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120, help="frames per run (default 120)")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--formats", default="mp4", help="comma-separated: mp4,webm")
    args = parser.parse_args(argv)

    print(
        f"local renderer vs FFmpeg encode-only, {args.frames} frames at {FPS} fps, best of "
        f"{args.repeat} (PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info})"
    )
    header = f"{'format':<6} {'size':>9} {'ours fps':>9} {'ffmpeg fps':>11} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            for width, height in SIZES:
                dest = Path(tmp) / f"bench.{fmt}"
                ours = min(_ours(width, height, args.frames, fmt, dest) for _ in range(args.repeat))
                base = min(
                    _encode_only(width, height, args.frames, fmt, dest) for _ in range(args.repeat)
                )
                ours_fps, base_fps = args.frames / ours, args.frames / base
                print(
                    f"{fmt:<6} {f'{width}x{height}':>9} {ours_fps:>9.1f} {base_fps:>11.1f} "
                    f"{ours_fps / base_fps:>6.2f}"
                )


if __name__ == "__main__":
    main()
