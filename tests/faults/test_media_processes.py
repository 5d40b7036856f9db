"""Fault test: a real ``vidgen worker`` with its media processes running (probe + thumbnail,
``VIDGEN_MEDIA_PROCESSES``) gets SIGTERM sent to its whole process group, as a terminal's
Ctrl-C or a service manager does. The media processes must not die of it under the jobs
still finishing in the grace period; the worker must stop in time, exit 0, end its media
processes and lose no job: the finished ones completed, the ones still at the provider
handed back to the queue with their predictions kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vidgen.models import User, Video, VideoStatus
from vidgen.settings import Settings

from .checks import submit_jobs
from .conftest import vidgen_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

S = VideoStatus
QUICK = 12  # jobs that end at once (their outputs go through the media processes)
SLOW = 6  # jobs still at the provider when the worker is stopped


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for listing in Path(f"/proc/{pid}").glob("task/*/children"):
        try:
            found.update(int(child) for child in listing.read_text().split())
        except OSError:
            continue
    return found


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vidgen.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,  # its own process group, signalled as a whole
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_group_sigterm_stops_the_worker_and_its_media_processes_losing_nothing(
    db: Settings, tmp_path: Path
) -> None:
    env = vidgen_env(
        VIDGEN_DATABASE_URL=str(db.database_url),
        VIDGEN_SECRET_KEY="media-processes-test",
        VIDGEN_DATA_DIR=str(tmp_path / "data"),
        VIDGEN_MEDIA_ROOT=str(tmp_path / "media"),
        VIDGEN_ENABLE_TEST_PROVIDER="true",
        VIDGEN_MEDIA_PROCESSES="2",
        VIDGEN_WORKER_POLL_SECONDS="0.2",
        VIDGEN_SHUTDOWN_GRACE_SECONDS="3",
        VIDGEN_LOG_LEVEL="WARNING",
        VIDGEN_LOG_JSON="true",
    )
    owner = await User.create(email="media-processes@example.com", password_hash="x")
    quick = await submit_jobs(owner, [f"succeed {i}" for i in range(QUICK)])
    slow = await submit_jobs(owner, [f"sleep:120 slow {i}" for i in range(SLOW)])
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:

        async def quick_done() -> bool:
            return await Video.filter(id__in=quick, status=S.COMPLETED).count() == QUICK

        async def slow_submitted() -> bool:
            return (
                await Video.filter(id__in=slow, status=S.PROCESSING)
                .exclude(prediction_id=None)
                .count()
                == SLOW
            )

        await wait_for(quick_done, 90, "the quick jobs to complete")
        await wait_for(slow_submitted, 30, "the slow jobs to be at the provider")
        media = children(worker.pid)
        # Media processes (and multiprocessing's resource tracker) started on first use.
        assert media, "no media process was started"
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    # multiprocessing's resource tracker ends when it sees the worker's end: give it a moment.
    async def all_gone() -> bool:
        return not any(alive(pid) for pid in media)

    with contextlib.suppress(AssertionError):
        await wait_for(all_gone, 10, "the media processes to end")
    leftover = [pid for pid in media if alive(pid)]
    assert not leftover, f"media processes outlived the worker: {leftover}"
    done = {v.id: v for v in await Video.filter(id__in=quick + slow)}
    assert all(done[i].status == S.COMPLETED and done[i].thumbnail_file for i in quick)
    for i in slow:  # handed back at once, keeping the prediction: nothing lost or repaid
        assert done[i].status == S.QUEUED and done[i].prediction_id, (i, done[i].status)
        assert done[i].retry_count == 0
    assert "Traceback" not in log.read_text()
