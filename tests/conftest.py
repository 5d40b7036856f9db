"""Shared fixtures: every database test runs on SQLite AND PostgreSQL, each in a fresh database.

- ``backend`` is parametrised over ``VIDGEN_TEST_BACKENDS`` (default ``sqlite,postgres``).
- A migrated template is built once per session per backend; each test gets its own copy
  (a copied SQLite file, or ``CREATE DATABASE … TEMPLATE`` on PostgreSQL), so tests are
  isolated and can also be shared with subprocesses (workers, uvicorn) by URL.
- PostgreSQL and Redis are required: when they are down these fixtures ERROR, never skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from vidgen import db as vdb
from vidgen.settings import Settings

PG_ADMIN_URL = os.environ.get("VIDGEN_TEST_PG_URL", "postgres://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VIDGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = [b.strip() for b in os.environ.get("VIDGEN_TEST_BACKENDS", "sqlite,postgres").split(",")]
_SESSION = uuid.uuid4().hex[:8]


def pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _run_in_thread(coro_factory) -> None:
    """Run a coroutine on a private loop in another thread (session set-up only)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro_factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def _migrate_and_close(url: str) -> None:
    await vdb.migrate_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    _run_in_thread(lambda: _migrate_and_close(f"sqlite://{path}"))
    return path


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"vg_tpl_{_SESSION}"

    async def build() -> None:
        await _admin(f"DROP DATABASE IF EXISTS {name}")
        await _admin(f"CREATE DATABASE {name}")
        await _migrate_and_close(pg_url(name))

    _run_in_thread(build)
    yield name
    _run_in_thread(lambda: _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop (not skip) the backend variants a test is not meant for: ``postgres_only``
    tests exist only as ``[postgres]``, ``sqlite_only`` only as ``[sqlite]``."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec else None
        marks = {m.name for m in item.iter_markers()}
        if (backend == "sqlite" and "postgres_only" in marks) or (
            backend == "postgres" and "sqlite_only" in marks
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest_asyncio.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh, migrated database for this test (not opened)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "vidgen.sqlite3"
        shutil.copyfile(template, path)
        yield f"sqlite://{path}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"vg_t_{uuid.uuid4().hex[:12]}"
    await _admin(f"CREATE DATABASE {name} TEMPLATE {template_name}")
    try:
        yield pg_url(name)
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, data folder and media root."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        media_root=tmp_path / "media",
        secret_key="test-secret-key",
        redis_url=None,
        embedded_worker=False,
        retry_base_seconds=0.01,
        retry_cap_seconds=0.05,
        lease_seconds=5,
        heartbeat_seconds=0.5,
        worker_poll_seconds=0.2,
        enable_test_provider=True,
    )


@pytest_asyncio.fixture
async def db(settings: Settings) -> AsyncIterator[Settings]:
    """The test's database, opened for the ORM in this test's loop."""
    await vdb.init(settings)
    try:
        yield settings
    finally:
        await vdb.close()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL
