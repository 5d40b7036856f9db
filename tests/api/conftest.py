"""API test fixtures: the real app under uvicorn on a free port, talked to over real HTTP.

Reusable helpers (also for WebSocket tests):

- :func:`serve` — ``async with serve(app) as base_url:`` runs any ASGI app under uvicorn in
  the current event loop on a free 127.0.0.1 port (lifespan on) until the block ends.
- :func:`start_live_server` — ``async with start_live_server(settings, **overrides) as
  server:`` (e.g. a small ``max_request_bytes``); the ``live_server`` fixture is the same with
  the test's settings: ``create_app(settings, manage_database=False,
  embedded_worker=False)`` served by :func:`serve`; a :class:`LiveServer` with ``url``,
  ``ws_url``, ``app``, ``runtime``, ``settings``, an ``httpx.AsyncClient`` (``client``) and
  ``await live_server.gql(QUERY, variables, token=...)`` returning the JSON body.
- ``user_factory`` fixture — ``await user_factory("a@x.io", admin=False)`` makes a user with a
  token through the services (an :class:`Account` with ``user``, ``token``, ``email``).
- :func:`row_counts` — every table's row count (bad input must change none).
- :class:`StatementCounter` / ``count_statements`` fixture — counts SQL statements sent by
  Tortoise (the ``tortoise.db_client`` debug log), for N+1 tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from tortoise.connection import get_connection

from vidgen.providers.http import tls_context
from vidgen.runtime import Runtime
from vidgen.services import users
from vidgen.settings import Settings

TABLES = (
    "users",
    "api_tokens",
    "projects",
    "stories",
    "themes",
    "tags",
    "videos",
    "video_tags",
    "video_status_events",
    "video_attempts",
    "webhook_deliveries",
    "film_clips",
)


class _Server(uvicorn.Server):
    """uvicorn's server, stopping as soon as it is asked to.

    uvicorn checks ``should_exit`` every 0.1 s, then sleeps 0.1 s after asking connections
    to close and polls them (and their tasks) every 0.1 s: ~0.2 s per test server. Here
    :meth:`stop` wakes the main loop at once and the drain polls every 5 ms; the steps, and
    the ``timeout_graceful_shutdown`` bound, are uvicorn's (0.54's ``Server.shutdown``).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # also the date header, once a second
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._drain(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            logging.getLogger("uvicorn.error").error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded",
                len(self.server_state.tasks),
            )
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the connections act on shutdown()
        # uvicorn keeps no event for "connections and their tasks are done": poll, briefly.
        while not self.force_exit:
            if not (self.server_state.connections or self.server_state.tasks):
                break
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()


@contextlib.asynccontextmanager
async def serve(
    app: Any, *, host: str = "127.0.0.1", ws_per_message_deflate: bool = False
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this loop; yields ``http://host:port``. WebSockets as
    ``vidgen serve`` runs them by default: no permessage-deflate (``VIDGEN_WS_COMPRESSION``),
    so the live fan-out writes pre-framed (web/ws_direct.py)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        ws_per_message_deflate=ws_per_message_deflate,
        timeout_graceful_shutdown=3,
        proxy_headers=False,  # as `vidgen serve` runs it: the peer is the real one
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # The start runs the app's lifespan (the runtime opens its database and bus): a
        # loaded machine can stretch it to seconds, so the bound is the clock's, and wide.
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            if server.started or task.done():
                break
            await asyncio.sleep(0.002)
        if task.done():
            task.result()  # raises the start-up error
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()


@dataclass
class LiveServer:
    url: str
    app: Any
    runtime: Runtime
    settings: Settings
    client: httpx.AsyncClient

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return "ws" + self.graphql_url.removeprefix("http")

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={**self.headers(token), **(headers or {})},
        )

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a JSON GraphQL request; the response body (``data``/``errors``)."""
        response = await self.post(query, variables, token=token, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def upload(
        self,
        query: str,
        variables: dict[str, Any],
        files: dict[str, tuple[str, bytes, str]],
        *,
        token: str | None = None,
        preflight: bool = True,
    ) -> httpx.Response:
        """A GraphQL multipart request: ``files`` maps variable paths ("variables.input.x")
        to ``(filename, bytes, content type)``."""
        import json

        file_map = {str(i): [path] for i, path in enumerate(files)}
        parts = {str(i): spec for i, spec in enumerate(files.values())}
        headers = self.headers(token)
        if preflight:
            headers["Apollo-Require-Preflight"] = "true"
        return await self.client.post(
            "/graphql",
            data={
                "operations": json.dumps({"query": query, "variables": variables}),
                "map": json.dumps(file_map),
            },
            files=parts,
            headers=headers,
        )


@contextlib.asynccontextmanager
async def start_live_server(settings: Settings, **overrides: Any) -> AsyncIterator[LiveServer]:
    """``create_app`` on a real port with these settings (``overrides`` applied first).

    The database must already be open in this loop (the ``db`` fixture); no worker runs.
    """
    from vidgen.web.app import create_app

    for name, value in overrides.items():
        setattr(settings, name, value)
    runtime = Runtime.create(settings)
    app = create_app(settings, runtime=runtime, manage_database=False, embedded_worker=False)
    async with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as client:
            yield LiveServer(url=url, app=app, runtime=runtime, settings=settings, client=client)


@pytest_asyncio.fixture
async def live_server(db: Settings) -> AsyncIterator[LiveServer]:
    """The app on a real port (database already opened by ``db``; no worker)."""
    async with start_live_server(db) as server:
        yield server


@dataclass
class Account:
    user: Any
    token: str
    email: str


@pytest_asyncio.fixture
async def user_factory(db: Settings):
    async def make(email: str, *, admin: bool = False, password: str = "password123") -> Account:
        user = await users.create_user(email=email, password=password, is_admin=admin)
        token, _ = await users.issue_token(user=user, name="test")
        return Account(user=user, token=token, email=email)

    return make


@pytest_asyncio.fixture
async def alice(user_factory) -> Account:
    return await user_factory("alice@example.com")


@pytest_asyncio.fixture
async def bob(user_factory) -> Account:
    return await user_factory("bob@example.com")


async def row_counts() -> dict[str, int]:
    """Every table's row count."""
    conn = get_connection("default")
    counts = {}
    for table in TABLES:
        rows = await conn.execute_query_dict(f'SELECT COUNT(*) AS n FROM "{table}"')
        counts[table] = int(rows[0]["n"])
    return counts


def media_files(settings: Settings) -> list[Path]:
    """Every file under the media root (temp files included)."""
    root = settings.resolved_media_root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class StatementCounter(logging.Handler):
    """Counts the SQL statements Tortoise logs (it logs each one at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            self.statements.append(message)

    @contextlib.contextmanager
    def counting(self):
        logger = logging.getLogger("tortoise.db_client")
        previous = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(previous)

    def reset(self) -> None:
        self.statements.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_statements() -> StatementCounter:
    return StatementCounter()
