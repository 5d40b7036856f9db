"""The media processes: a finished output's probe + thumbnail runs in a pool of processes
of its own (``VIDGEN_MEDIA_PROCESSES``), started on first use; a process killed under a call
fails the job with a retryable error (never loses it), a call past its time limit
(``VIDGEN_MEDIA_TIMEOUT_SECONDS``) is killed and fails the attempt retryably too, and shutting
the pool down ends even a call that hangs."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.jobs.conftest import make_video, wait_until
from vidgen.events.memory import MemoryBus
from vidgen.jobs import cpu
from vidgen.jobs.worker import Worker
from vidgen.media import inspect
from vidgen.models import Video, VideoAttempt, VideoStatus
from vidgen.providers.base import PollResult
from vidgen.providers.testing import TestProvider, tiny_video
from vidgen.runtime import Runtime
from vidgen.settings import Settings

S = VideoStatus


@pytest.fixture(autouse=True)
def fresh_pool():
    """Each test starts without a pool, and leaves none running behind it."""
    cpu.shutdown()
    yield
    cpu.shutdown()


def _children() -> list:
    pool = cpu._process_pool
    return list((getattr(pool, "_processes", None) or {}).values()) if pool else []


def _settings(db: Settings, processes: int | None) -> Settings:
    return db.model_copy(update={"media_processes": processes})


async def test_outputs_are_inspected_in_a_pool_started_on_first_use(db, user) -> None:
    runtime = Runtime.create(_settings(db, 2), bus=MemoryBus(), providers={"test": TestProvider()})
    await runtime.open()
    try:
        assert cpu._process_pool is None  # nothing started before a job needs it
        videos = [await make_video(user) for _ in range(3)]
        assert await Worker(runtime, concurrency=3).run_until_idle() == 3
        for video in videos:
            done = await Video.get(id=video.id)
            assert done.status == S.COMPLETED
            assert (done.width, done.height, done.codec) == (64, 64, "h264")
            assert (runtime.storage.root / str(done.thumbnail_file)).stat().st_size > 0
        children = _children()
        assert 1 <= len(children) <= 2
        assert all(c.pid != os.getpid() and c.is_alive() for c in children)
    finally:
        await runtime.close()


async def test_zero_processes_inspects_in_the_worker_itself(db, user) -> None:
    runtime = Runtime.create(_settings(db, 0), bus=MemoryBus(), providers={"test": TestProvider()})
    await runtime.open()
    try:
        video = await make_video(user)
        assert await Worker(runtime, concurrency=1).run_until_idle() == 1
        assert (await Video.get(id=video.id)).status == S.COMPLETED
        assert cpu._process_pool is None and cpu.process_executor() is None
    finally:
        await runtime.close()
        cpu.configure_processes(None)


class FifoProvider(TestProvider):
    """Its first output is a named pipe with no data: the media process probing it blocks
    on it until the test kills that process. Later outputs are real videos."""

    def __init__(self) -> None:
        super().__init__()
        self.fifos: list[Path] = []
        self.downloads = 0

    def download_blocking(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        self.downloads += 1
        if self.downloads > 1:
            return super().download_blocking(result, dest, max_bytes=max_bytes)
        dest.unlink(missing_ok=True)
        os.mkfifo(dest)
        self.fifos.append(dest)
        return "video/mp4"


def _open_writer(fifo: Path) -> int | None:
    """A writer on ``fifo`` once a reader has it open (the media process is in the probe)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return None
        raise


async def test_a_killed_media_process_fails_the_attempt_retryably(db, user) -> None:
    provider = FifoProvider()
    settings = _settings(db, 1).model_copy(
        update={"retry_base_seconds": 0.01, "retry_cap_seconds": 0.05}
    )
    runtime = Runtime.create(settings, bus=MemoryBus(), providers={"test": provider})
    await runtime.open()
    writer: int | None = None
    try:
        video = await make_video(user)
        worker = Worker(runtime, concurrency=1)
        worker.start()

        async def probing() -> bool:
            nonlocal writer
            if provider.fifos and writer is None:
                writer = _open_writer(provider.fifos[0])
            return writer is not None

        await wait_until(probing, seconds=30)  # the media process has the pipe open
        (child,) = _children()
        os.kill(child.pid, signal.SIGKILL)

        async def completed() -> bool:
            return (await Video.get(id=video.id)).status == S.COMPLETED

        await wait_until(completed, seconds=30)
        await worker.stop()
        done = await Video.get(id=video.id)
        # Retried (one of its budget), resuming the same prediction: one submission, two
        # downloads; the killed attempt is on record as failed with the retryable error.
        assert done.retry_count == 1 and done.video_file and done.thumbnail_file
        assert provider.downloads == 2
        assert len(provider.submissions) == 1
        attempts = await VideoAttempt.filter(video_id=video.id).order_by("attempt")
        assert [a.attempt for a in attempts] == [1, 2]
        assert attempts[0].prediction_id == attempts[1].prediction_id == done.prediction_id
        assert attempts[0].error_code == "media_process_lost" and attempts[0].retryable
        assert not provider.fifos[0].exists()  # the first attempt's pipe was discarded
        assert child.pid not in [c.pid for c in _children()]  # a fresh pool took over
    finally:
        if writer is not None:
            os.close(writer)
        await runtime.close()


async def test_a_probe_past_its_time_limit_is_killed_and_the_attempt_retried(db, user) -> None:
    provider = FifoProvider()  # its first output blocks the probe until the process dies
    settings = _settings(db, 1).model_copy(
        update={
            "retry_base_seconds": 0.01,
            "retry_cap_seconds": 0.05,
            "media_timeout_seconds": 2.0,
        }
    )
    runtime = Runtime.create(settings, bus=MemoryBus(), providers={"test": provider})
    await runtime.open()
    try:
        video = await make_video(user)
        worker = Worker(runtime, concurrency=1)
        worker.start()

        async def probing() -> bool:
            return bool(_children())

        await wait_until(probing, seconds=60)
        (child,) = _children()

        async def timed_out() -> bool:
            return await VideoAttempt.filter(video_id=video.id, error_code="media_timeout").exists()

        await wait_until(timed_out, seconds=60)
        assert cpu.ended(child, 10)  # the stuck process was killed (the retry has its own)
        # The next attempt's pool starts a process (spawn) under no limit: on a loaded
        # machine that alone may take seconds.
        cpu.configure_processes(1, None)

        async def completed() -> bool:
            return (await Video.get(id=video.id)).status == S.COMPLETED

        await wait_until(completed, seconds=60)
        await worker.stop()
        done = await Video.get(id=video.id)
        assert done.retry_count == 1 and done.video_file and done.thumbnail_file
        assert provider.downloads == 2 and len(provider.submissions) == 1
        attempts = await VideoAttempt.filter(video_id=video.id).order_by("attempt")
        assert [a.error_code for a in attempts] == ["media_timeout", None]
        assert attempts[0].retryable
        assert attempts[0].prediction_id == attempts[1].prediction_id == done.prediction_id
        assert not provider.fifos[0].exists()  # the first attempt's pipe was discarded
    finally:
        await runtime.close()
        cpu.configure_processes(None)


def test_a_call_past_its_limit_raises_and_the_next_call_gets_a_fresh_process() -> None:
    cpu.configure_processes(1, 1.0)
    try:
        first_pid = cpu.run_in_process(os.getpid)  # the process is up (spawn is not timed here)
        (child,) = _children()
        started = time.monotonic()
        with pytest.raises(cpu.ProcessTimedOut):
            cpu.run_in_process(time.sleep, 3600)
        assert time.monotonic() - started < 30
        assert cpu.ended(child, 10) and cpu._process_pool is None
        cpu.configure_processes(1, None)
        assert cpu.run_in_process(os.getpid) not in (first_pid, os.getpid())
        # A call within the limit is untouched by it.
        cpu.configure_processes(1, 30.0)
        assert cpu.run_in_process(sum, [1, 2, 3]) == 6
    finally:
        cpu.configure_processes(None)


def test_a_process_killed_while_idle_costs_no_call() -> None:
    cpu.configure_processes(1)
    try:
        video = Path(os.environ.get("TMPDIR", "/tmp")) / f"idle-kill-{os.getpid()}.mp4"
        video.write_bytes(tiny_video("mp4"))
        first = cpu.run_in_process(inspect.read, video, width=32, fmt="jpeg")
        (child,) = _children()
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        # The pool notices the death (broken); the next call never ran there, so it runs
        # in a fresh pool instead of failing.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not getattr(cpu._process_pool, "_broken", False):
            time.sleep(0.01)
        assert cpu.run_in_process(inspect.read, video, width=32, fmt="jpeg") == first
        video.unlink()
    finally:
        cpu.configure_processes(None)


def test_shutdown_ends_a_hung_call_and_its_caller_sees_the_loss() -> None:
    cpu.configure_processes(1)
    try:
        outcome: list[BaseException | object] = []

        def call() -> None:
            try:
                outcome.append(cpu.run_in_process(time.sleep, 3600))
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _children():
            time.sleep(0.01)
        (child,) = _children()
        time.sleep(0.5)  # the call is in the process now (or queued for it: same outcome)
        started = time.monotonic()
        cpu.shutdown(timeout=0.5)
        assert time.monotonic() - started < 10
        # Not is_alive(): the pool's thread may have reaped the process and not yet recorded it.
        assert cpu.ended(child, 10)
        caller.join(10)
        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], cpu.ProcessLost)
        assert cpu._process_pool is None
    finally:
        cpu.configure_processes(None)


def test_the_processes_ignore_a_signal_sent_to_the_whole_group() -> None:
    """SIGTERM/SIGINT to every process (as a terminal's Ctrl-C or a service manager does)
    reaches the media processes too: they must outlive it, so the worker's graceful stop
    can still finish the jobs it waits for."""
    cpu.configure_processes(1)
    try:
        video = Path(os.environ.get("TMPDIR", "/tmp")) / f"group-signal-{os.getpid()}.mp4"
        video.write_bytes(tiny_video("mp4"))
        first = cpu.run_in_process(inspect.read, video, width=32, fmt="jpeg")
        (child,) = _children()
        os.kill(child.pid, signal.SIGTERM)
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.3)
        assert child.is_alive()
        again = cpu.run_in_process(inspect.read, video, width=32, fmt="jpeg")
        assert again == first and _children() == [child]
        video.unlink()
    finally:
        with contextlib.suppress(Exception):
            cpu.configure_processes(None)
