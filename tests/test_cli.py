"""The command line, run as a user would: a subprocess with VIDGEN_* in its environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vidgen import db as vdb
from vidgen.graphql.schema import schema, sdl
from vidgen.models import User
from vidgen.services import users


async def vidgen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vidgen.cli", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _env(settings) -> dict[str, str]:
    return {
        "VIDGEN_DATABASE_URL": settings.resolved_database_url,
        "VIDGEN_SECRET_KEY": "cli-secret",
        "VIDGEN_DATA_DIR": str(settings.data_dir),
        "VIDGEN_LOG_LEVEL": "WARNING",
    }


async def test_createuser_prints_a_working_token(db) -> None:
    made = await vidgen("createuser", "Boss@Example.com", "--admin", env=_env(db))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    user = await users.authenticate(token)
    assert user is not None and user.is_admin and user.email == "boss@example.com"
    plain = await vidgen("createuser", "someone@example.com", env=_env(db))
    assert plain.returncode == 0
    assert not (await User.get(email="someone@example.com")).is_admin
    again = await vidgen("createuser", "boss@example.com", env=_env(db))
    assert again.returncode == 1 and "error:" in again.stderr
    assert await User.filter(email="boss@example.com").count() == 1


async def test_export_schema_writes_the_running_sdl(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    done = await vidgen("export-schema", "--output", str(out), env={})
    assert done.returncode == 0, done.stderr
    assert out.read_text() == sdl(schema)


async def test_migrate_builds_an_empty_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'new.sqlite3'}"
    env = {"VIDGEN_DATABASE_URL": url, "VIDGEN_DATA_DIR": str(tmp_path)}
    done = await vidgen("migrate", env=env)
    assert done.returncode == 0, done.stderr
    again = await vidgen("migrate", env=env)
    assert again.returncode == 0
    await vdb.migrate_database(url)  # nothing left to apply


async def test_serve_without_secret_on_postgres_is_a_clear_error(tmp_path: Path) -> None:
    done = await vidgen(
        "serve",
        env={
            "VIDGEN_DATABASE_URL": "postgres://root@127.0.0.1:5432/test",
            "VIDGEN_DATA_DIR": str(tmp_path),
        },
    )
    assert done.returncode != 0
    assert "VIDGEN_SECRET_KEY" in done.stderr


def _worker_start_line(env: dict[str, str]) -> dict:
    """Start ``vidgen worker``, return its ``worker.start`` log record, stop it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidgen.cli", "worker"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}, **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            record = json.loads(line)
            if record.get("action") == "worker.start":
                break
        else:
            raise AssertionError(f"the worker exited ({proc.wait()}) before it started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        return record
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("choice", "loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_worker_runs_on_the_chosen_event_loop(
    tmp_path: Path, choice: str | None, loop: str
) -> None:
    env = {
        "VIDGEN_DATABASE_URL": f"sqlite://{tmp_path / 'w.sqlite3'}",
        "VIDGEN_SECRET_KEY": "cli-secret",
        "VIDGEN_DATA_DIR": str(tmp_path),
        "VIDGEN_LOG_LEVEL": "INFO",
        "VIDGEN_LOG_JSON": "true",
    }
    assert (await vidgen("migrate", env=env)).returncode == 0
    if choice is not None:
        env["VIDGEN_EVENT_LOOP"] = choice
    record = await asyncio.to_thread(_worker_start_line, env)
    assert record["event_loop"] == loop


async def test_serve_asked_for_a_missing_uvloop_is_a_clear_error(tmp_path: Path) -> None:
    # As if uvloop were not installed: the import fails.
    code = "import sys; sys.modules['uvloop'] = None; from vidgen.cli import main; main()"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, "serve", "--port", "0"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")},
            "VIDGEN_DATA_DIR": str(tmp_path),
            "VIDGEN_EVENT_LOOP": "uvloop",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "VIDGEN_EVENT_LOOP=uvloop, but uvloop is not installed" in done.stderr


async def test_worker_serves_its_own_metrics_when_asked(db, tmp_path: Path) -> None:
    """``vidgen worker --metrics-port``: the worker's own counters (here the duration of the
    attempt it ran) on /metrics, /healthz and /readyz beside them, and a SIGTERM stops
    both."""
    import httpx

    from tests.jobs.conftest import make_video
    from tests.s3_server import free_port

    user = await users.create_user(email="metrics@example.com", password="password123")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")},
        **_env(db),
        "VIDGEN_MEDIA_ROOT": str(tmp_path / "media"),
        "VIDGEN_ENABLE_TEST_PROVIDER": "true",
        "VIDGEN_WORKER_POLL_SECONDS": "0.2",
    }
    proc = _start_worker(["--metrics-port", str(port)], env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    metric = 'vidgen_job_duration_seconds_count{outcome="succeeded",provider="test"} 1.0'
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            for _ in range(300):
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            assert (await client.get("/readyz")).json()["checks"]["database"] is True
            before = (await client.get("/metrics")).text
            assert "vidgen_job_duration_seconds" in before and metric not in before
            await make_video(user)
            for _ in range(300):
                if metric in (await client.get("/metrics")).text:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError((await client.get("/metrics")).text)
            assert (await client.get("/graphql")).status_code == 404  # nothing else
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        async with httpx.AsyncClient(base_url=base, timeout=2) as client:
            with pytest.raises(httpx.TransportError):
                await client.get("/healthz")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_worker(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vidgen.cli", "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
