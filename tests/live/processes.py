"""Subprocesses for the multi-process live tests: API servers and workers of vidgen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live.redis_server import free_port


def process_env(*, database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict:
    """The environment of a vidgen process sharing this test's database and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
    env.update(
        VIDGEN_DATABASE_URL=database_url,
        VIDGEN_REDIS_URL=redis_url,
        VIDGEN_SECRET_KEY="test-secret-key",
        VIDGEN_DATA_DIR=str(data_dir),
        VIDGEN_MEDIA_ROOT=str(data_dir / "media"),
        VIDGEN_EMBEDDED_WORKER="false",
        VIDGEN_ENABLE_TEST_PROVIDER="true",
        VIDGEN_LOG_LEVEL="WARNING",
        VIDGEN_WORKER_POLL_SECONDS="0.2",
        VIDGEN_HEARTBEAT_SECONDS="0.5",
        VIDGEN_GRAPHIQL="false",
    )
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            args, env=env, cwd=log.parent, stdout=self._out, stderr=subprocess.STDOUT
        )

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class ApiProcess(Process):
    def __init__(self, env: dict, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        env = {**env, "VIDGEN_PORT": str(self.port), "VIDGEN_PUBLIC_URL": self.url}
        super().__init__(
            [sys.executable, "-m", "vidgen.cli", "serve", "--no-worker"],
            env,
            workdir / f"{name}.log",
        )

    def wait_ready(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"API exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"API not ready in {within}s:\n{self.output()}")


class WorkerProcess(Process):
    def __init__(self, env: dict, workdir: Path, name: str = "worker") -> None:
        super().__init__(
            [sys.executable, "-m", "vidgen.cli", "worker", "--concurrency", "2"],
            env,
            workdir / f"{name}.log",
        )
