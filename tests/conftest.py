"""Shared fixtures: every database test runs on SQLite AND PostgreSQL, each in a fresh database.

- ``backend`` is parametrised over ``VIDGEN_TEST_BACKENDS`` (default ``sqlite,postgres``).
- A migrated template is built once per session per backend; each test gets its own copy
  (a copied SQLite file, or ``CREATE DATABASE … TEMPLATE`` on PostgreSQL, made ahead of need
  in the background and dropped after the test), so tests are isolated and can also be
  shared with subprocesses (workers, uvicorn) by URL.
- PostgreSQL and Redis are required: when they are down these fixtures ERROR, never skip.
- Two costs of the product's start-up and sign-up are paid once per session here, not per
  test (see :func:`_cheap_per_test_costs`): the collector's set-up of a serving app, and
  argon2's deliberately slow hashing in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tests.live.redis_server import RedisServer
from tests.s3_server import aws_credentials, s3_server  # noqa: F401 - fixtures for every folder
from vidgen import db as vdb
from vidgen.services import users
from vidgen.settings import Settings
from vidgen.web import app as web_app

PG_ADMIN_URL = os.environ.get("VIDGEN_TEST_PG_URL", "postgres://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VIDGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = [b.strip() for b in os.environ.get("VIDGEN_TEST_BACKENDS", "sqlite,postgres").split(",")]
# The session's databases are named vg_tpl_<session> and vg_t_<session>_<n>; the session id
# starts with this process's pid, so a later session can drop what a killed one left.
_SESSION = f"{os.getpid()}x{uuid.uuid4().hex[:6]}"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


async def _drop_orphans() -> None:
    """Drop the databases of earlier sessions whose process is gone (killed by SIGTERM or
    SIGKILL, they never tore down). Only on a server on this host, where pids mean something;
    a session still running (any live pid) keeps its databases."""
    from urllib.parse import urlsplit

    if (urlsplit(PG_ADMIN_URL).hostname or "") not in _LOCAL_HOSTS:
        return
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database"
            " WHERE datname ~ '^vg_(t|tpl)_[0-9]+x[0-9a-f]{6}(_[0-9]+)?$'"
        )
        for row in rows:
            pid = int(row["datname"].split("_")[2].split("x")[0])
            if not _pid_alive(pid):
                await conn.execute(f"DROP DATABASE IF EXISTS {row['datname']} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"vg_tpl_{_SESSION}"

    async def build() -> None:
        await _drop_orphans()
        await _admin(f"DROP DATABASE IF EXISTS {name}")
        await _admin(f"CREATE DATABASE {name}")
        await _migrate_and_close(pg_url(name))

    _run_in_thread(build)
    yield name
    _run_in_thread(lambda: _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class _DatabasePool:
    """Fresh copies of the session's PostgreSQL template, made ahead of need.

    ``CREATE DATABASE … TEMPLATE`` took 20-200 ms here on PostgreSQL 15 (WAL_LOG writes the
    whole template, system catalogs included, to the WAL and flushes it: slow when the disk
    is busy; FILE_COPY was no faster: it forces a checkpoint). A daemon thread with its own
    event loop keeps up to ``ready`` copies made by ``workers`` admin connections (two
    measured no faster than one on 2 cores), so a test takes one at once and the next ones
    are made while tests run; returned databases are dropped there too (``WITH (FORCE)``: a
    test may leave connections, also from subprocesses), but only once ``ready`` copies wait:
    a run of quick tests drains a short stock faster than one connection refills it, so the
    stock is deep and refilling it comes before dropping. Each test still gets a database of
    its own that nothing used before. Names carry the session id; :meth:`close` drops every
    one of them, including after Ctrl-C (pytest still tears session fixtures down).

    When PostgreSQL is down, :meth:`take` raises the connection error (the test ERRORs).
    """

    def __init__(self, template: str, *, ready: int = 6, workers: int = 1) -> None:
        self.template = template
        self.target = ready
        self.prefix = f"vg_t_{_SESSION}_"
        self._numbers = itertools.count()
        # The state below is touched only on the pool's loop.
        self._ready: deque[str] = deque()
        self._waiters: deque[asyncio.Future[str]] = deque()
        self._drops: deque[str] = deque()
        self._creating = 0
        self._healthy = True  # made ahead only while the last CREATE worked
        self._closing = False
        self._wake = asyncio.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vidgen-test-databases", daemon=True
        )
        self._thread.start()
        self._workers = [
            asyncio.run_coroutine_threadsafe(self._work(), self._loop) for _ in range(workers)
        ]

    # --- called from the tests' threads and loops ------------------------------------------

    async def take(self) -> str:
        """A fresh database's name (waits only when none is ready)."""
        future = asyncio.run_coroutine_threadsafe(self._take(), self._loop)
        return await asyncio.wrap_future(future)

    def give_back(self, name: str) -> None:
        """Drop this database (in the background)."""
        self._loop.call_soon_threadsafe(self._drop, name)

    def close(self) -> None:
        """Drop every database of this session (ready, returned or being made)."""
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # --- the pool's loop -------------------------------------------------------------------

    async def _take(self) -> str:
        if self._ready:
            name = self._ready.popleft()
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._wake.set()
            name = await waiter
        self._wake.set()  # make the next one
        return name

    def _drop(self, name: str) -> None:
        self._drops.append(name)
        self._wake.set()

    def _deliver(self, name: str) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(name)
                return
        self._ready.append(name)

    def _next(self) -> tuple[str, str] | None:
        self._waiters = deque(w for w in self._waiters if not w.done())
        if len(self._waiters) > self._creating:
            return "create", f"{self.prefix}{next(self._numbers)}"
        if self._healthy and len(self._ready) + self._creating < self.target:
            return "create", f"{self.prefix}{next(self._numbers)}"
        if self._drops:
            return "drop", self._drops.popleft()
        return None

    async def _work(self) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while not self._closing:
                job = self._next()
                if job is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                kind, name = job
                self._creating += kind == "create"
                try:
                    if conn is None:
                        conn = await asyncpg.connect(PG_ADMIN_URL)
                    if kind == "create":
                        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
                        self._healthy = True
                        self._deliver(name)
                    else:
                        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                except Exception as exc:  # noqa: BLE001 - handed to a waiting test
                    # The database (made or not) is left to close(), which drops by prefix.
                    self._healthy = False
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    waiters = [w for w in self._waiters if not w.done()]
                    if kind == "create" and waiters:
                        self._waiters.remove(waiters[0])
                        waiters[0].set_exception(exc)
                finally:
                    self._creating -= kind == "create"
                    self._wake.set()  # another worker may have a job now
        finally:
            if conn is not None:
                await conn.close()

    async def _close(self) -> None:
        self._closing = True
        self._wake.set()
        for worker in self._workers:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(worker)
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", self.prefix
            )
            for row in rows:
                await conn.execute(f"DROP DATABASE IF EXISTS {row['datname']} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pg_databases(pg_template: str) -> Iterator[_DatabasePool]:
    pool = _DatabasePool(pg_template)
    try:
        yield pool
    finally:
        pool.close()


class SessionGc:
    """The session's own entry into :func:`vidgen.web.app.serving_gc` (see below)."""

    def __init__(self) -> None:
        self._entry: contextlib.AbstractContextManager[None] | None = None

    def enter(self) -> None:
        self._entry = web_app.serving_gc()
        self._entry.__enter__()

    def leave(self) -> None:
        if self._entry is not None:
            self._entry.__exit__(None, None, None)
            self._entry = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The collector as it is in a process where no app serves (for serving_gc's test)."""
        self.leave()
        try:
            yield
        finally:
            self.enter()


@pytest.fixture(scope="session", autouse=True)
def _cheap_per_test_costs() -> Iterator[SessionGc]:
    """Pay two per-process costs once per session instead of once per test.

    - Every app entering ``serving_gc`` while no other app serves collects the whole heap and
      freezes it. In a service that happens once at start-up; here every test's app did it,
      over pytest's large heap: about 0.3 s per API test (a third of those tests' time,
      measured with pyinstrument). Entering it once here makes each app's entry a nested
      one, which changes nothing. ``serving_gc``'s own test pauses this entry
      (:meth:`SessionGc.paused`).
    - argon2 with the library's defaults (64 MiB, 3 passes) takes about 0.19 s per hash or
      verification on these machines, on purpose. In this process, tests hash with the
      smallest parameters argon2 allows (the hashes are still argon2id, verified the same
      way); the cost of the real parameters is not under test. Servers, workers and CLI
      commands that tests start as subprocesses keep the defaults.
    """
    from argon2 import PasswordHasher

    real = users._hasher, users._DUMMY_HASH
    users._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    users._DUMMY_HASH = users._hasher.hash("vidgen-dummy-password")
    gc_entry = SessionGc()
    gc_entry.enter()
    try:
        yield gc_entry
    finally:
        gc_entry.leave()
        users._hasher, users._DUMMY_HASH = real


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
    pool: _DatabasePool = request.getfixturevalue("pg_databases")
    name = await pool.take()
    try:
        yield pg_url(name)
    finally:
        pool.give_back(name)


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
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test (kill it, restart it, count its clients)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL
