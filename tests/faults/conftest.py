"""Fixtures for the fault suite: PRIVATE PostgreSQL and Redis servers that a test may stop
and restart without disturbing the shared ones (or other tests), and process helpers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live.redis_server import RedisServer

PG_BIN = Path(
    os.environ.get("VIDGEN_TEST_PG_BIN")
    or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/"))
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@dataclass
class PrivatePostgres:
    datadir: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgres://root@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgres://root@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.datadir.parent} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._ctl("-o", options, "-l", str(self.datadir.parent / "pg.log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL cluster of our own (stopped and restarted by fault tests)."""
    # Not under pytest's tmp folder: that one is private to root, and the server runs as the
    # postgres user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="vidgen-pg-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    datadir = root / "data"
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "root", "--no-sync"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    pg = PrivatePostgres(datadir=datadir, port=free_port())
    pg.start()
    try:
        yield pg
    finally:
        try:
            pg.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(root, ignore_errors=True)


class PrivateRedis(RedisServer):
    """A private redis-server (tests/live/redis_server.py: it makes sure the Redis on its port
    is its own, and moves to another free port if the first one was taken meanwhile)."""

    def kill(self) -> None:
        self.stop()  # SIGKILL, as a crash


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


def vidgen_env(**values: str) -> dict[str, str]:
    """The parent's environment without any VIDGEN_* variable, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
    env.update(values)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 20) -> list[int]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


async def wait_for(predicate, seconds: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return
        except Exception as exc:  # noqa: BLE001 - the service may be down on purpose
            last_error = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")
