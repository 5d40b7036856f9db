"""Issue 20's memory bound: a video of several hundred MB stored and served through the S3
backend (against the suite's moto server) never comes near being held in memory: written
from a file and from a stream, read back, served by the media route (ranges too), and taken
in by the job pipeline's media stage (download from a file host, probe, thumbnail, store).

The work runs in a child process (``tests/storage/s3_memory_child.py``) so that its peak
resident memory is its own. With 8 MiB parts and 4 in flight an upload holds about 40 MiB of
parts, and about as much again while the socket's send buffer holds a copy of each part in
flight: 70-115 MiB measured, whatever the object's size (the same for 64 MiB and 640 MiB).
A read holds a chunk or two. The bound asserted is a quarter of the object: above that, and
far below holding the object or a good part of it (holding it measured twice its size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3_server import S3Server, new_bucket_name

pytestmark = pytest.mark.sqlite_only  # no database in this test: once is enough

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
SIZE = 640 * MIB
BOUND = SIZE // 4


def test_a_large_video_is_stored_and_served_in_bounded_memory(
    s3_server: S3Server, aws_credentials: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **aws_credentials, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.storage.s3_memory_child",
            s3_server.url,
            new_bucket_name(),
            str(SIZE),
            str(tmp_path / "scratch"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # The work was really done: both objects whole, the file handed over, every byte served.
    assert report["sizes"] == {"big/file.mp4": SIZE, "big/stream.mp4": SIZE}
    assert report["file_left"] is False
    phases = report["phases"]
    assert phases["read"]["result"] == {"same": True}
    assert phases["serve"]["result"] == {
        "status": 200,
        "bytes": SIZE,
        "range_status": 206,
        "range_bytes": MIB,
    }
    ingested = phases["ingest"]["result"]
    assert ingested["file_size"] == ingested["stored_size"] == SIZE
    assert ingested["thumbnail"] is True and ingested["probed"] == [128, 96, True]
    rises = {name: phase["peak"] - phase["base"] for name, phase in phases.items()}
    print({name: f"{rise / MIB:.1f} MiB" for name, rise in rises.items()})
    for name, rise in rises.items():
        assert rise < BOUND, (
            f"{name}: peak RSS rose {rise / MIB:.0f} MiB for a {SIZE // MIB} MiB object"
        )
