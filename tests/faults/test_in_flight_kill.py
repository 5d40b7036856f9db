"""Fault test: a worker process holding 500 remote jobs in flight is SIGKILLed.

Another worker process rescues them all once their leases expire: every job completes, none
is lost, and none is submitted twice (each resumes the prediction id the dead worker stored;
the test provider logs every submission to a file shared by the processes).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vidgen.models import AttemptOutcome, User, Video, VideoAttempt, VideoStatus
from vidgen.settings import Settings

from .checks import assert_each_job_ran_exactly_once, count_terminal, submit_jobs
from .test_worker_kill import wait_for, worker_env

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow, pytest.mark.timeout(240)]

JOBS = 500


def start_worker(env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    # No --concurrency: the default in-flight cap (VIDGEN_WORKER_MAX_IN_FLIGHT).
    return subprocess.Popen(
        [sys.executable, "-m", "vidgen.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / f"{name}.log").open("wb"),
    )


async def test_sigkill_of_a_worker_with_500_jobs_in_flight_loses_and_repays_nothing(
    db: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "submissions.log"
    env = worker_env(db, tmp_path, log)
    env.update(VIDGEN_LEASE_SECONDS="4", VIDGEN_HEARTBEAT_SECONDS="1")
    owner = await User.create(email="inflight@example.com", password_hash="x")
    ids = await submit_jobs(owner, [f"sleep:25 job {i}" for i in range(JOBS)])
    victim = start_worker(env, tmp_path, "victim")
    rescuer: subprocess.Popen[bytes] | None = None
    try:

        async def all_submitted() -> bool:
            return (
                await Video.filter(
                    id__in=ids,
                    status=VideoStatus.PROCESSING,
                    processed_by__contains=f":{victim.pid}:",
                )
                .exclude(prediction_id=None)
                .count()
                == JOBS
            )

        await wait_for(all_submitted, 60, "the victim to hold all 500 jobs with predictions")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        rescuer = start_worker(env, tmp_path, "rescuer")

        async def all_terminal() -> bool:
            return await count_terminal(ids) == JOBS

        await wait_for(all_terminal, 120, "every job to finish")
    finally:
        for proc in (victim, rescuer):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (victim, rescuer):
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert rescuer is not None and rescuer.returncode == 0

    videos = await assert_each_job_ran_exactly_once(ids)
    assert all(v.status == VideoStatus.COMPLETED for v in videos.values()), "none is lost"
    attempts: dict[int, list[VideoAttempt]] = {}
    for row in await VideoAttempt.filter(video_id__in=ids).order_by("video_id", "attempt"):
        attempts.setdefault(row.video_id, []).append(row)
    for video_id, rows in attempts.items():
        # The victim's attempt was rescued holding the prediction; the rescuer's resumed it.
        assert [r.outcome for r in rows] == [AttemptOutcome.RESCUED, AttemptOutcome.SUCCEEDED]
        assert f":{victim.pid}:" in rows[0].worker
        assert rows[0].prediction_id and rows[0].prediction_id == rows[1].prediction_id
        assert videos[video_id].prediction_id == rows[0].prediction_id
    submissions = Counter(line.split("\t")[0] for line in log.read_text().splitlines())
    assert submissions == Counter({f"video-{vid}": 1 for vid in ids}), "a second submit"
