"""Fixtures of the live-status tests: private Redis servers, buses and helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.live.redis_server import RedisServer
from vidgen.events.redis import RedisBus


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test (kill it, restart it, count its clients)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def redis_bus(redis_server: RedisServer) -> AsyncIterator[RedisBus]:
    """A started RedisBus on the private server with fast timings."""
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


def fast_bus(url: str, **overrides: object) -> RedisBus:
    options: dict[str, object] = dict(
        backoff_base=0.05,
        backoff_cap=0.3,
        health_interval=0.5,
        liveness_timeout=2.0,
        read_timeout=0.2,
        connect_timeout=0.5,
        start_timeout=3.0,
    )
    options.update(overrides)
    return RedisBus(url, **options)  # type: ignore[arg-type]
