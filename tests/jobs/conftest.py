"""Fixtures for the job engine: a runtime with the test provider, users and queued videos."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest_asyncio
from tortoise.transactions import in_transaction

from vidgen.events.memory import MemoryBus
from vidgen.jobs import lifecycle
from vidgen.models import User, Video, VideoAttempt
from vidgen.providers.testing import TestProvider
from vidgen.runtime import Runtime
from vidgen.settings import Settings


@pytest_asyncio.fixture
async def provider() -> TestProvider:
    return TestProvider()


@pytest_asyncio.fixture
async def runtime(db: Settings, provider: TestProvider) -> AsyncIterator[Runtime]:
    """The test's runtime: in-process bus, only the test provider, a private media root."""
    rt = Runtime.create(db, bus=MemoryBus(), providers={"test": provider})
    await rt.open()
    try:
        yield rt
    finally:
        await rt.close()


@pytest_asyncio.fixture
async def user(db: Settings) -> User:
    return await User.create(email="owner@example.com", password_hash="x")


async def make_video(owner: User, prompt: str = "succeed", **values: Any) -> Video:
    """Insert a queued video with its first history row, as the videos service does."""
    fields: dict[str, Any] = dict(prompt=prompt, provider="test", resolution="64x64")
    fields.update(values)
    async with in_transaction():
        video = await Video.create(owner=owner, **fields)
        await lifecycle.record_created(video, actor="test")
    return video


async def give_prediction(video: Video, prediction_id: str) -> None:
    """Leave ``video`` holding ``prediction_id`` as a worker does: on the video and on its
    attempt row (the webhook lookup goes through the attempt rows)."""
    await Video.filter(id=video.id).update(prediction_id=prediction_id, attempt=1)
    await VideoAttempt.create(
        video_id=video.id,
        attempt=1,
        worker="test",
        provider=video.provider,
        prediction_id=prediction_id,
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def wait_until(predicate: Callable[[], Awaitable[object]], *, seconds: float = 5.0) -> None:
    """Poll an async predicate until it is truthy (a test helper; fails after ``seconds``)."""
    step = 0.02
    for _ in range(int(seconds / step)):
        if await predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {seconds}s")


async def prediction_stored(video_id: int) -> bool:
    return bool(await Video.filter(id=video_id).exclude(prediction_id=None).exists())


@pytest_asyncio.fixture
async def webhook_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The webhook route of ``runtime`` alone, in process (5xx answers, not exceptions)."""
    from starlette.applications import Starlette

    from vidgen.web.webhooks import webhook_routes

    app = Starlette(routes=webhook_routes(runtime))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def awaiting_webhook(
    runtime: Runtime, client: httpx.AsyncClient, prediction_id: str
) -> tuple[Video, Callable[[], Awaitable[httpx.Response]]]:
    """A queued video of a new user holding ``prediction_id``, and a function that posts one
    signed delivery (id ``msg_1``, succeeded) for it, as the test provider would send it."""
    user = await User.create(email="owner@example.com", password_hash="x")
    video = await make_video(user)
    await give_prediction(video, prediction_id)
    provider = runtime.providers["test"]
    assert isinstance(provider, TestProvider)
    body = json.dumps(
        {"prediction_id": prediction_id, "delivery_id": "msg_1", "state": "succeeded"}
    ).encode()

    async def post() -> httpx.Response:
        return await client.post(
            "/webhooks/test", content=body, headers=provider.sign_webhook(body)
        )

    return video, post
