"""Fixtures of the live-status tests: private Redis servers, buses and helpers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.api.conftest import Account, LiveServer, serve
from tests.live.redis_server import RedisServer
from vidgen import db as vdb
from vidgen import models
from vidgen.events.feed import Feed
from vidgen.events.redis import RedisBus
from vidgen.jobs import lifecycle
from vidgen.providers.http import tls_context
from vidgen.runtime import Runtime
from vidgen.services import users
from vidgen.settings import Settings


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


# --- the app under uvicorn, on either bus ------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def live_settings(settings: Settings, bus_kind: str, request: pytest.FixtureRequest) -> Settings:
    """The test's settings on the chosen bus (Redis: a private server, so no cross-talk)."""
    if bus_kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return settings.model_copy(update={"redis_url": server.url})
    return settings


@pytest_asyncio.fixture
async def live(live_settings: Settings) -> AsyncIterator[LiveServer]:
    """The app on a real port on the chosen bus (database opened in this loop; no worker)."""
    from vidgen.web.app import create_app

    await vdb.init(live_settings)
    try:
        bus = fast_bus(live_settings.redis_url) if live_settings.redis_url else None
        runtime = Runtime.create(live_settings, bus=bus)
        app = create_app(
            live_settings, runtime=runtime, manage_database=False, embedded_worker=False
        )
        async with serve(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as client:
                yield LiveServer(
                    url=url, app=app, runtime=runtime, settings=live_settings, client=client
                )
    finally:
        await vdb.close()


@pytest_asyncio.fixture
async def accounts(live: LiveServer) -> AsyncIterator[Callable[[str], Awaitable[Account]]]:
    async def make(email: str) -> Account:
        # A token-only account written directly: argon2 hashing would dominate these tests.
        user = await models.User.create(email=email, password_hash="!token-only")
        token, _ = await users.issue_token(user=user, name="test")
        return Account(user=user, token=token, email=email)

    yield make


async def make_video(owner: Any, prompt: str = "a red fox", **fields: Any) -> models.Video:
    """A queued video with its first history row, as the videos service writes it."""
    from tortoise.transactions import in_transaction

    async with in_transaction():
        video = await models.Video.create(
            owner_id=owner.id, prompt=prompt, provider="local", resolution="512x512", **fields
        )
        await lifecycle.record_created(video, actor="test")
    return video


class FeedStarts:
    """How many ``videoUpdates`` feeds of this process are listening.

    A feed opened without ``after`` replays nothing: it hears the changes published once it
    has subscribed to its owner's bus channel, and a change made before the server got that
    far is not the feed's to deliver. The feed reads the event log's head right after that
    subscription (vidgen/graphql/subscriptions.py, ``watch_videos``), so a head read proves
    it listens. GraphQL over WebSocket acknowledges no subscribe: a test waits for this
    count instead of sleeping and hoping the server got that far (a stalled process or
    machine may not have).
    """

    def __init__(self) -> None:
        self.count = 0

    async def wait(self, count: int = 1, within: float = 15.0) -> None:
        """Until ``count`` feeds have started in all (fails after ``within`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.count < count:
            assert loop.time() < deadline, f"{count} feed(s) not started in {within}s"
            await asyncio.sleep(0.005)


@pytest.fixture
def feed_starts(monkeypatch: pytest.MonkeyPatch) -> FeedStarts:
    """Counts the feeds started by the app under test (it serves in this process)."""
    starts = FeedStarts()
    real_head = Feed.head

    async def head(self: Feed) -> int:
        value = await real_head(self)
        starts.count += 1
        return value

    monkeypatch.setattr(Feed, "head", head)
    return starts


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()
