"""POST /webhooks/{provider}: verified deliveries wake their job; bad ones change nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import pytest_asyncio
from starlette.applications import Starlette

from tests.jobs.conftest import give_prediction, make_video, prediction_stored, wait_until
from vidgen.events.channels import job_channel
from vidgen.jobs import control, pipeline, webhooks
from vidgen.jobs.worker import Worker
from vidgen.models import Video, VideoStatus
from vidgen.providers.base import PollResult
from vidgen.web.webhooks import webhook_routes

S = VideoStatus


@pytest_asyncio.fixture
async def client(runtime):
    app = Starlette(routes=webhook_routes(runtime))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def slow_backoff(provider, monkeypatch, *, floor: float) -> None:
    """Poll after ``floor`` once, then only every 20 s: only a webhook can be quicker."""
    monkeypatch.setattr(pipeline, "POLL_BACKOFF", 1000.0)
    provider.capabilities = dataclasses.replace(
        provider.capabilities, min_poll_interval=floor, max_poll_interval=20
    )


def delivery(prediction_id: str, delivery_id: str | None = None, **fields) -> bytes:
    body = {"prediction_id": prediction_id, **fields}
    if delivery_id:
        body["delivery_id"] = delivery_id
    return json.dumps(body).encode()


async def test_good_delivery_wakes_the_job(runtime, user, provider, client, monkeypatch) -> None:
    runtime.settings.heartbeat_seconds = 30
    slow_backoff(provider, monkeypatch, floor=0.05)
    video = await make_video(user, "sleep:0.3")
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    await wait_until(lambda: prediction_stored(video.id))
    prediction_id = (await Video.get(id=video.id)).prediction_id
    await wait_until(lambda: _polled(provider, prediction_id, 1))  # now waiting 20 s
    await asyncio.sleep(0.35)  # the prediction is done upstream now
    body = delivery(prediction_id, state="succeeded")
    async with runtime.bus.subscribe(job_channel(video.id)) as sub:
        for _ in range(2):  # a duplicate delivery is harmless
            response = await client.post(
                "/webhooks/test", content=body, headers=provider.sign_webhook(body)
            )
            assert response.status_code == 200 and response.json()["known"] is True
        message = await sub.get()
    assert message["type"] == "webhook" and message["state"] == "succeeded"
    await asyncio.wait_for(run, timeout=10)  # far less than the 20 s poll
    assert (await Video.get(id=video.id)).status == S.COMPLETED


async def _polled(provider, prediction_id: str, n: int) -> bool:
    return provider.polls[prediction_id] >= n


async def test_deliveries_never_poll_faster_than_the_floor(
    runtime, user, provider, client, monkeypatch
) -> None:
    """20 deliveries in a burst (replays, or a chatty provider): at most one poll, and only
    once the provider's minimum poll interval since the previous poll has passed."""
    runtime.settings.heartbeat_seconds = 30
    floor = 1.0
    slow_backoff(provider, monkeypatch, floor=floor)
    # When each poll started: the floor is a spacing between polls, so it is checked on
    # these, not on a count within a stretch of the test's clock (20 deliveries can take
    # longer than the floor on a loaded machine, and a poll may rightly fall among them).
    loop = asyncio.get_running_loop()
    poll_times: list[float] = []
    real_poll = provider.poll

    async def timed_poll(prediction_id: str) -> PollResult:
        poll_times.append(loop.time())
        return await real_poll(prediction_id)

    monkeypatch.setattr(provider, "poll", timed_poll)
    video = await make_video(user, "hang")
    run = asyncio.create_task(Worker(runtime, concurrency=1).run_until_idle())
    try:
        await wait_until(lambda: prediction_stored(video.id))
        prediction_id = (await Video.get(id=video.id)).prediction_id
        await wait_until(lambda: _polled(provider, prediction_id, 1))
        before = provider.polls[prediction_id]
        started = loop.time()
        for n in range(20):
            body = delivery(prediction_id, f"d{n}")
            headers = provider.sign_webhook(body)
            assert (await client.post("/webhooks/test", content=body, headers=headers)).is_success
            await asyncio.sleep(0.01)
        # Within the floor after the last poll nothing may poll: before the fix, every
        # delivery made one poll at once (20 polls here, however long the deliveries took).
        spent = loop.time() - started
        assert provider.polls[prediction_id] - before <= 1 + int(spent / floor), spent
        # Yet the deliveries did make the next poll come at the floor, not after 20 s.
        await wait_until(lambda: _polled(provider, prediction_id, before + 1), seconds=10)
        gaps = [b - a for a, b in zip(poll_times, poll_times[1:], strict=False)]
        assert gaps and min(gaps) >= floor * 0.99, gaps
    finally:
        await control.request_cancel(video.id, actor="test", bus=runtime.bus)
        await asyncio.wait_for(run, timeout=10)


async def test_a_replayed_delivery_id_is_ignored(runtime, user, provider, client) -> None:
    video = await make_video(user)
    await give_prediction(video, "test1-replayed")
    body = delivery("test1-replayed", "msg_1", state="running")
    other = delivery("test1-replayed", "msg_2", state="running")
    async with runtime.bus.subscribe(job_channel(video.id)) as sub:
        for payload in (body, body, body, other, body):
            response = await client.post(
                "/webhooks/test", content=payload, headers=provider.sign_webhook(payload)
            )
            assert response.status_code == 200 and response.json()["known"] is True
        messages = []
        while not sub.queue.empty():
            messages.append(await sub.get())
    assert [m["delivery_id"] for m in messages] == ["msg_1", "msg_2"]


def test_remembered_deliveries_are_bounded() -> None:
    seen = webhooks.RecentDeliveries(limit=3)
    assert seen.first_time("p", "a", "1") and not seen.first_time("p", "a", "1")
    assert seen.first_time("p", "b", "1")  # the same id for another prediction is new
    for n in range(10):
        seen.first_time("p", "a", f"x{n}")
    assert len(seen) == 3
    assert seen.first_time("p", "a", "1")  # long forgotten: accepted (harmless, see floor)


async def test_unreadable_signature_headers_are_401_not_500(
    runtime, user, provider, client
) -> None:
    video = await make_video(user)
    await give_prediction(video, "test1-abc")
    body = delivery("test1-abc")
    headers = provider.sign_webhook(body)
    hostile = [
        {**headers, "X-Test-Signature": "\u00e9" + headers["X-Test-Signature"][1:]},
        {**headers, "X-Test-Timestamp": "9" * 400},
    ]
    for bad in hostile:
        raw = {k: v.encode("latin-1") for k, v in bad.items()}
        assert (await client.post("/webhooks/test", content=body, headers=raw)).status_code == 401


async def test_bad_signature_is_401_and_changes_nothing(runtime, user, provider, client) -> None:
    video = await make_video(user)
    await give_prediction(video, "test1-abc")
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
