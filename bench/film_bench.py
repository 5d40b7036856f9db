"""How fast is the film stitcher, next to PyAV re-encoding the same frames alone, and how
much memory does it take?

Ten clips are rendered first (not timed): sizes, frame rates and durations are drawn from a
seeded random generator (the seed is printed), as a story re-rendered across providers
would have. Then, in alternating rounds of the same run:

- ``stitch``: :func:`vidgen.media.stitch.stitch` makes the 1280x720 film (cut, no captions);
- ``baseline``: PyAV alone decodes the film just written and encodes the same frames again
  with the same encoder settings: the same number of 1280x720 frames, nothing but decode
  and encode.

``ratio`` is baseline seconds / stitch seconds (1.0: the stitcher costs nothing beyond
decoding and encoding). The median round and the worst round are reported. A second row
does the same with captions and crossfades.

Peak RSS: the stitcher runs once more in a fresh subprocess (its ``VmHWM``), for the ten
clips and for the same clips twice (twenty): a stitcher that streams stays flat. The same
subprocess with only the imports done gives the floor.

Run: ``.venv/bin/python -m bench.film_bench`` (``--json`` ends with a JSON line).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from vidgen.media import render, stitch

WIDTH, HEIGHT, FPS = 1280, 720, 24.0
SIZES = ((1280, 720), (960, 540), (640, 360))
RATES = (24.0, 25.0, 30.0)


def make_clips(folder: Path, count: int, seed: int) -> list[dict[str, float | int | str]]:
    rng = random.Random(seed)
    clips = []
    for index in range(count):
        width, height = rng.choice(SIZES)
        fps = rng.choice(RATES)
        seconds = round(rng.uniform(0.75, 1.25), 2)
        path = folder / f"clip{index}.mp4"
        render.render_text_video(
            f"paragraph {index} of the benchmark story",
            width=width,
            height=height,
            duration=seconds,
            fps=fps,
            fmt="mp4",
            seed=rng.randrange(1 << 30),
            dest=path,
            progress=lambda _: None,
            cancelled=lambda: False,
        )
        clips.append(
            {"path": str(path), "width": width, "height": height, "fps": fps, "s": seconds}
        )
    return clips


def run_stitch(paths: list[Path], dest: Path, *, dressed: bool) -> float:
    parts = [
        stitch.Part(
            path,
            caption=f"Paragraph {i}: the fox runs on" if dressed else None,
            transition=stitch.CROSSFADE if dressed else stitch.CUT,
        )
        for i, path in enumerate(paths)
    ]
    started = time.perf_counter()
    stitch.stitch(parts, dest, fmt="mp4", width=WIDTH, height=HEIGHT, fps=FPS)
    return time.perf_counter() - started


def run_baseline(film: Path, dest: Path) -> float:
    """PyAV alone: decode the film the stitcher wrote and encode the same frames again."""
    time_base = 1 / render.frame_rate(FPS)
    started = time.perf_counter()
    with render.Encoder(dest, fmt="mp4", width=WIDTH, height=HEIGHT, fps=FPS) as encoder:
        with av.open(str(film)) as container:
            for frame in container.decode(video=0):
                # Drop the source's time base and picture type, as the stitcher does: PyAV
                # cannot encode a decoded frame's timing into another stream as it is.
                frame.time_base = time_base
                frame.pict_type = av.video.frame.PictureType.NONE
                encoder.add_frame(frame)
        encoder.finish()
    return time.perf_counter() - started


def rss_child(paths: list[Path], dest: Path | None) -> int:
    """Peak RSS (KiB) of a fresh process that stitches ``paths`` (or only imports, when
    ``dest`` is None)."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from vidgen.media import stitch\n"
        "args = json.loads(sys.argv[1])\n"
        "if args['dest']:\n"
        "    stitch.stitch([stitch.Part(Path(p)) for p in args['paths']], Path(args['dest']),"
        f" fmt='mp4', width={WIDTH}, height={HEIGHT}, fps={FPS})\n"
        # VmHWM starts afresh at exec; ru_maxrss would carry the parent's peak over.
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    payload = json.dumps({"paths": [str(p) for p in paths], "dest": str(dest) if dest else None})
    done = subprocess.run(
        [sys.executable, "-c", code, payload], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    print(f"film stitch vs PyAV decode+scale+encode, {args.clips} clips to {WIDTH}x{HEIGHT}")
    print(f"seed {seed} (--seed {seed} repeats these clips)")
    result: dict[str, object] = {"name": "film", "seed": seed, "clips": args.clips}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, args.clips, seed)
        for clip in clips:
            print(
                f"  {Path(str(clip['path'])).name}: {clip['width']}x{clip['height']}"
                f" {clip['fps']:g} fps {clip['s']:.2f} s"
            )
        paths = [Path(str(c["path"])) for c in clips]
        out = folder / "out.mp4"
        again = folder / "again.mp4"
        for label, dressed in (("cut", False), ("captions+crossfade", True)):
            ratios, ours, bases = [], [], []
            for _ in range(args.rounds):
                mine = run_stitch(paths, out, dressed=dressed)
                base = run_baseline(out, again)
                bases.append(base)
                ours.append(mine)
                ratios.append(base / mine)
            median = statistics.median(ratios)
            worst = min(ratios)
            print(
                f"{label:<20} stitch {statistics.median(ours):.2f} s  baseline"
                f" {statistics.median(bases):.2f} s  ratio median {median:.2f}"
                f" worst {worst:.2f}  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
            result[label] = {
                "stitch_s": statistics.median(ours),
                "baseline_s": statistics.median(bases),
                "ratio": median,
                "worst": worst,
                "rounds": ratios,
            }
        floor = rss_child(paths, None)
        ten = rss_child(paths, out)
        twenty = rss_child(paths + paths, out)
        print(
            f"peak RSS: imports only {floor / 1024:.0f} MiB, stitch of {len(paths)} clips"
            f" {ten / 1024:.0f} MiB, of {2 * len(paths)} clips {twenty / 1024:.0f} MiB"
        )
        result["rss_mib"] = {
            "floor": floor / 1024,
            "clips": ten / 1024,
            "double": twenty / 1024,
        }
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["bench_process_rss_mib"] = self_peak / 1024
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
