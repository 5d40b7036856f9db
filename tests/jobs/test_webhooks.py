"""POST /webhooks/{provider}: verified deliveries wake their job; bad ones change nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import pytest_asyncio
from starlette.applications import Starlette

from tests.jobs.conftest import make_video, prediction_stored, wait_until
from vidgen.events.bus import job_channel
from vidgen.jobs.worker import Worker
from vidgen.models import Video, VideoStatus
from vidgen.web.webhooks import webhook_routes

S = VideoStatus


@pytest_asyncio.fixture
async def client(runtime):
    app = Starlette(routes=webhook_routes(runtime))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_good_delivery_wakes_the_job(runtime, user, provider, client) -> None:
    runtime.settings.heartbeat_seconds = 30
    video = await make_video(user, "sleep:0.3")
    # Make polling slow so that only the webhook can finish the job quickly.
    provider.capabilities = dataclasses.replace(
        provider.capabilities, min_poll_interval=20, max_poll_interval=20
    )
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    await wait_until(lambda: prediction_stored(video.id))
    prediction_id = (await Video.get(id=video.id)).prediction_id
    await asyncio.sleep(0.35)  # the prediction is done upstream now
    body = json.dumps({"prediction_id": prediction_id, "state": "succeeded"}).encode()
    async with runtime.bus.subscribe(job_channel(video.id)) as sub:
        for _ in range(2):  # a duplicate delivery is harmless
            response = await client.post(
                "/webhooks/test", content=body, headers=provider.sign_webhook(body)
            )
            assert response.status_code == 200 and response.json()["known"] is True
        message = await sub.get()
    assert message["type"] == "webhook" and message["state"] == "succeeded"
    await asyncio.wait_for(run, timeout=3)
    assert (await Video.get(id=video.id)).status == S.COMPLETED


async def test_bad_signature_is_401_and_changes_nothing(runtime, user, provider, client) -> None:
    video = await make_video(user)
    await Video.filter(id=video.id).update(prediction_id="test1-abc")
    before = await Video.get(id=video.id)
    body = json.dumps({"prediction_id": "test1-abc", "state": "failed"}).encode()
    headers = provider.sign_webhook(body)
    async with runtime.bus.subscribe(job_channel(video.id)) as sub:
        bad = {**headers, "X-Test-Signature": "0" * 64}
        assert (await client.post("/webhooks/test", content=body, headers=bad)).status_code == 401
        assert (await client.post("/webhooks/test", content=body)).status_code == 401
        stale = provider.sign_webhook(body, now=1_000_000)
        assert (await client.post("/webhooks/test", content=body, headers=stale)).status_code == 401
        assert sub.queue.empty()
    after = await Video.get(id=video.id)
    assert (after.status, after.version) == (before.status, before.version)


async def test_unknown_provider_404_unknown_prediction_200(runtime, provider, client) -> None:
    body = b'{"prediction_id": "nope"}'
    assert (await client.post("/webhooks/nope", content=body)).status_code == 404
    response = await client.post(
        "/webhooks/test", content=body, headers=provider.sign_webhook(body)
    )
    assert response.status_code == 200 and response.json()["known"] is False
