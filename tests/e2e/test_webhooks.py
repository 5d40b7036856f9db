"""Provider webhooks through the real app over HTTP: ``POST /webhooks/{provider}``.

A good signature, delivered by the simulator to the app's URL, wakes the job at once (after
its first poll the job would wait :data:`SLOW_POLL`, so only the webhook can finish it in
time; the provider's poll floor itself stays short, because a webhook may make a job poll
early but never sooner than that floor after its previous poll); a bad
or stale signature is 401 and changes nothing; a duplicate is harmless; providers without
webhooks and unknown ones are refused.

The wake-up runs on both backends for Replicate, the rest on :data:`ONE_BACKEND`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import LiveServer
from tests.conftest import BACKENDS
from tests.e2e.conftest import (
    ONE_BACKEND,
    WEBHOOK_PROVIDERS,
    Sims,
    fetch_video,
    generate_for,
    one_backend,
    running_worker,
    set_poll_floor,
    wait_for_prediction,
    wait_for_status,
    wait_until,
)
from tests.simulators import FalSimulator, LumaSimulator
from tests.simulators.common import Job, Simulator, new_whsec
from tests.simulators.vendors import VENDORS
from vidgen.events.channels import job_channel
from vidgen.jobs import pipeline
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus, VideoStatusEvent
from vidgen.runtime import Runtime

S = VideoStatus
SLOW_POLL = 30.0
POLL_FLOOR = 0.05
# Well below SLOW_POLL, so only the webhook can explain it; wide enough for the wake-up's
# work (a poll, the download, the media step and the writes) on a loaded machine.
WAKE_WITHIN = 15.0
MATRIX = [(backend, "replicate") for backend in BACKENDS] + [
    (ONE_BACKEND, name) for name in WEBHOOK_PROVIDERS if name != "replicate"
]


def finish_upstream(sim: Simulator, prediction_id: str) -> Job:
    """The provider is done with the job (its next status read says so)."""
    job = sim.jobs[prediction_id]
    job.polls = 100
    return job


async def post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            url, content=body, headers={**headers, "content-type": "application/json"}
        )


async def started_job(
    name: str,
    server: LiveServer,
    runtime: Runtime,
    sims: Sims,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str, Video]:
    """Queue a video on ``name``; wait until its prediction exists and was polled once,
    after which the job waits :data:`SLOW_POLL` before it polls again.

    Call inside ``running_worker``. Returns (database id, global id, processing row).
    """
    set_poll_floor(runtime.providers[name], POLL_FLOOR)
    provider = runtime.providers[name]
    provider.capabilities = dataclasses.replace(provider.capabilities, max_poll_interval=SLOW_POLL)
    monkeypatch.setattr(pipeline, "POLL_BACKOFF", SLOW_POLL / POLL_FLOOR)
    video_id, gid = await generate_for(server, token, name)
    processing = await wait_for_prediction(video_id)
    job = sims[name].jobs[processing.prediction_id]

    async def polled() -> bool:
        return job.polls >= 1

    await wait_until(polled, seconds=10)
    return video_id, gid, processing


async def completions(video_id: int) -> int:
    return await VideoStatusEvent.filter(video_id=video_id, to_status=S.COMPLETED).count()


@pytest.mark.parametrize(("backend", "name"), MATRIX)
async def test_signed_webhook_wakes_the_job_and_duplicates_are_harmless(
    name: str,
    server: LiveServer,
    runtime: Runtime,
    sims: Sims,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = sims[name]
    url = f"{server.url}/webhooks/{name}"
    async with running_worker(runtime):
        video_id, gid, processing = await started_job(
            name, server, runtime, sims, token, monkeypatch
        )
        assert processing.prediction_id
        job = finish_upstream(sim, processing.prediction_id)
        if name == "replicate":  # https only: with this http address it was not sent
            assert job.webhook_url is None
        elif VENDORS[name].per_request:  # (OpenAI's is configured per project)
            assert job.webhook_url == url
        await asyncio.sleep(0.2)  # the job is now waiting out its (long) poll interval
        polls_before = job.polls
        started = time.monotonic()
        # The same delivery twice at once (a provider retry racing the first).
        headers, body = sim.webhook_payload(job)
        first, second = await asyncio.gather(post(url, headers, body), post(url, headers, body))
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json() == {"ok": True, "known": True}
        video = await wait_for_status(video_id, seconds=WAKE_WITHIN)
        elapsed = time.monotonic() - started
    assert video.status == S.COMPLETED, video.error_message
    assert elapsed < WAKE_WITHIN < SLOW_POLL
    assert job.polls > polls_before  # woken, the worker asked the provider for the truth
    assert await completions(video_id) == 1
    outcomes = await VideoAttempt.filter(video_id=video_id).values_list("outcome", flat=True)
    assert [AttemptOutcome(o) for o in outcomes] == [AttemptOutcome.SUCCEEDED]

    # Late duplicates (the simulator re-sends the event; then a byte-identical replay).
    version = video.version
    late = await sim.deliver_webhook(job.id, url=url)
    assert late.status_code == 200
    replay = await post(url, headers, body)
    assert replay.status_code == 200
    after = await Video.get(id=video_id)
    assert (after.status, after.version) == (S.COMPLETED, version)
    assert await completions(video_id) == 1
    assert (await fetch_video(server, token, gid))["status"] == "COMPLETED"


def forged(sim: Simulator, job: Job) -> dict[str, tuple[dict[str, str], bytes]]:
    """Deliveries that must be refused: wrong key, stale, tampered, unsigned (for Luma, whose
    callbacks are unsigned: ones naming a generation Luma does not show us)."""
    now = int(time.time())
    if isinstance(sim, LumaSimulator):
        _, body = sim.webhook_payload(job)
        return {
            "unknown generation": ({}, body.replace(job.id.encode(), b"not-ours", 1)),
            "another account's": ({}, b'{"id": "9f1c3a52-0000-4000-8000-000000000000"}'),
            "no generation": ({}, b'{"state": "completed"}'),
        }
    if isinstance(sim, FalSimulator):
        wrong: Any = sim.webhook_payload(job, signing_key=Ed25519PrivateKey.generate())
    else:
        wrong = sim.webhook_payload(job, secret=new_whsec())  # type: ignore[call-arg]
    stale = sim.webhook_payload(job, timestamp=now - 3600)  # type: ignore[call-arg]
    headers, body = sim.webhook_payload(job)
    tampered = body.replace(job.id.encode(), job.id.encode() + b"x", 1)
    if tampered == body:
        tampered = body + b" "
    return {
        "wrong key": wrong,
        "stale timestamp": stale,
        "tampered body": (headers, tampered),
        "unsigned": ({}, body),
    }


@one_backend
@pytest.mark.parametrize("name", WEBHOOK_PROVIDERS)
async def test_bad_or_stale_signature_is_401_and_changes_nothing(
    name: str,
    server: LiveServer,
    runtime: Runtime,
    sims: Sims,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = sims[name]
    url = f"{server.url}/webhooks/{name}"
    async with running_worker(runtime):
        video_id, _, processing = await started_job(name, server, runtime, sims, token, monkeypatch)
        assert processing.prediction_id
        # Done upstream: a delivery wrongly accepted would wake the job and complete it.
        job = finish_upstream(sim, processing.prediction_id)
        await asyncio.sleep(0.2)
        before = await Video.get(id=video_id)
        polls = job.polls
        async with runtime.bus.subscribe(job_channel(video_id)) as sub:
            for kind, (headers, body) in forged(sim, job).items():
                response = await post(url, headers, body)
                assert response.status_code == 401, (kind, response.text)
            await asyncio.sleep(0.3)  # time for a wrong wake-up to show
            assert sub.queue.empty()
        after = await Video.get(id=video_id)
        assert job.polls == polls  # the job was not woken
    assert (after.status, after.version, after.updated_at) == (
        S.PROCESSING,
        before.version,
        before.updated_at,
    )
    assert after.prediction_id == before.prediction_id


@one_backend
async def test_providers_without_webhooks_and_unknown_ones_are_refused(
    server: LiveServer,
) -> None:
    body = b'{"id": "task-1", "status": "SUCCEEDED"}'
    for name in ("runway", "stability", "google", "local"):  # no webhooks: nothing verifiable
        response = await server.client.post(f"/webhooks/{name}", content=body)
        assert response.status_code == 401, (name, response.text)
    response = await server.client.post("/webhooks/no-such-provider", content=body)
    assert response.status_code == 404
