"""Fault suite: a provider that fails 30% of all calls with 429, 500 and timeouts.

The Replicate simulator sits behind a chaos layer that, for a seeded 30% of requests
(submits, polls and downloads alike), answers 429 with Retry-After, answers 500, or hangs
past the client's timeout, WITHOUT passing the request on (as a proxy or load shedder
would). Every job must still reach exactly one terminal state, no two runs of a job may
overlap, and no job may create a second prediction upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.simulators import ReplicateSimulator
from tests.simulators.server import aserve
from vidgen.events.memory import MemoryBus
from vidgen.jobs.worker import Worker
from vidgen.models import User, Video
from vidgen.providers.replicate import ReplicateProvider
from vidgen.runtime import Runtime

from .checks import assert_each_job_ran_exactly_once, count_terminal, submit_jobs
from .conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOBS = 30
FAILURE_RATE = 0.3
CLIENT_TIMEOUT = 0.4


class Chaos:
    """Fails a seeded share of HTTP requests before they reach the wrapped app."""

    def __init__(self, app: ASGIApp, *, rate: float, seed: int) -> None:
        self.app = app
        self.rate = rate
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.passed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rng.random() >= self.rate:
            self.passed += 1
            await self.app(scope, receive, send)
            return
        kind = self.rng.choice(["429", "500", "timeout"])
        self.injected[kind] += 1
        if kind == "timeout":
            await asyncio.sleep(CLIENT_TIMEOUT * 3)
            status, headers = 504, []
        elif kind == "429":
            status, headers = 429, [(b"retry-after", b"1")]
        else:
            status, headers = 500, []
        body = b'{"detail": "injected failure"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.mark.postgres_only
async def test_provider_failing_thirty_percent_of_calls(db) -> None:
    sim = ReplicateSimulator(api_key="r8_chaos_key_0123456789")
    sim.scenario.queued_polls = 1
    sim.scenario.running_polls = 1
    chaos = Chaos(sim.app, rate=FAILURE_RATE, seed=20261125)
    async with aserve(chaos) as url:
        sim.base_url = url
        settings = db.model_copy(
            update={
                "replicate_api_key": "r8_chaos_key_0123456789",
                "replicate_base_url": url,
                "provider_timeout_seconds": CLIENT_TIMEOUT,
                "retry_base_seconds": 0.05,
                "retry_cap_seconds": 0.3,
            }
        )
        provider = ReplicateProvider(settings)
        # The documented 2 s poll floor would make this test slow, not different.
        provider.capabilities = dataclasses.replace(provider.capabilities, min_poll_interval=0.05)
        runtime = Runtime.create(settings, bus=MemoryBus(), providers={"replicate": provider})
        await runtime.open()
        owner = await User.create(email="chaos@example.com", password_hash="x")
        prompts = [f"flaky job {i}" for i in range(JOBS)]
        ids = await submit_jobs(owner, prompts, provider="replicate")
        # What minimax/video-01 (the default model) makes: 6 s at 1280x720.
        await Video.filter(id__in=ids).update(
            resolution="1280x720", duration_seconds=6, max_retries=25
        )
        worker = Worker(runtime, concurrency=8)
        task = worker.start()
        try:
            await wait_for(lambda: _all_done(ids), 180, "every job to finish", interval=0.3)
        finally:
            await worker.stop(grace_seconds=5)
            await task
            await runtime.close()

    assert sum(chaos.injected.values()) >= 10, f"too little chaos: {chaos.injected}"
    assert set(chaos.injected) == {"429", "500", "timeout"}
    videos = await assert_each_job_ran_exactly_once(ids)
    assert {v.status for v in videos.values()} == {"completed"}, Counter(
        v.status for v in videos.values()
    )
    assert all(v.video_file and v.thumbnail_file for v in videos.values())
    # Nothing duplicated upstream: one prediction per job, each job kept its own.
    assert sim.submissions == JOBS
    assert len({v.prediction_id for v in videos.values()}) == JOBS


async def _all_done(ids: list[int]) -> bool:
    return await count_terminal(ids) == len(ids)
