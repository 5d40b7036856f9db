"""A real S3-protocol server for the tests and the benchmarks: moto's server mode, in a
subprocess on 127.0.0.1 (the ``moto[server]`` test dependency; nothing to start by hand).

``auth=True`` makes it check every request's signature against the access keys it knows,
which are none: any credentials are then refused (InvalidAccessKeyId), as a real store
refuses wrong ones. Without it, any credentials are taken.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

ACCESS_KEY = "vidgen-test-access-key"
SECRET_KEY = "vidgen-test-secret-key"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws_env() -> dict[str, str]:
    """The AWS variables a vidgen process needs to use the test server."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def new_bucket_name() -> str:
    return f"vidgen-test-{uuid.uuid4().hex[:16]}"


class S3Server:
    """``python -m moto.server`` on a free port, owned by the test session."""

    def __init__(self, log: Path, *, auth: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.auth = auth
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 30) -> S3Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited at start:\n{self.log.read_text()}")
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server not up in {within}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


# Fixtures, made visible to every test folder by tests/conftest.py.
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """One moto S3 server for the whole session, started by the first test that asks."""
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test server's credentials in this process's environment (for botocore)."""
    env = aws_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
