"""/metrics: every family moves when what it counts happens.

prometheus_client prints a family's name (and, for a family without labels, a zero) whether
or not anything was ever counted, so a name in the text proves nothing. Each test here
scrapes ``/metrics`` of a running app, makes the counted thing happen through the app (a
request, a job run by a worker, a subscription, a Redis restart...), scrapes again and
asserts that the value moved by exactly what happened. Counters live as long as the
process (the whole test session), so counters are compared as differences; the database
gauges are read at scrape time from this test's own database, so they are compared as
values. :func:`test_every_family_is_checked` fails when ``vidgen.metrics`` gains a family
that no test here moves.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, serve, start_live_server
from tests.live.conftest import fast_bus
from tests.live.redis_server import RedisServer
from tests.live.wsclient import GraphQLWS
from tests.webhooks_out.receiver import receiving
from tests.webhooks_out.running import delivering, settled
from vidgen import metrics
from vidgen.jobs import queue
from vidgen.jobs.worker import Worker
from vidgen.providers.http import tls_context
from vidgen.runtime import Runtime
from vidgen.settings import Settings

GENERATE = """
mutation Generate($input: GenerateVideoInput!) { generateVideo(input: $input) { id status } }
"""
WATCH = "subscription Watch($id: ID!) { videoUpdated(id: $id) { id version } }"
FEED = "subscription Feed { videoUpdates { id version } }"

# Every family of vidgen.metrics, and the test below that makes it move.
CHECKED = {
    "vidgen_http_requests": "test_requests_and_operations_are_counted",
    "vidgen_graphql_operations": "test_requests_and_operations_are_counted",
    "vidgen_graphql_errors": "test_requests_and_operations_are_counted",
    "vidgen_jobs": "test_job_figures_follow_the_jobs",
    "vidgen_queue_depth": "test_job_figures_follow_the_jobs",
    "vidgen_queue_oldest_due_age_seconds": "test_job_figures_follow_the_jobs",
    "vidgen_job_attempts": "test_job_figures_follow_the_jobs",
    "vidgen_job_duration_seconds": "test_job_figures_follow_the_jobs",
    "vidgen_job_retries": "test_job_figures_follow_the_jobs",
    "vidgen_job_rescues": "test_a_rescue_is_counted",
    "vidgen_active_subscriptions": "test_subscriptions_open_and_close_the_gauge",
    "vidgen_bus_reconnects": "test_a_redis_restart_counts_one_reconnect",
    "vidgen_bus_dropped_subscribers": "test_an_overflowing_subscriber_is_counted",
    "vidgen_quota_refusals": "test_quota_refusals_and_throttled_requests_are_counted",
    "vidgen_throttled": "test_quota_refusals_and_throttled_requests_are_counted",
    "vidgen_webhook_deliveries": "test_webhook_outcomes_are_counted",
    "vidgen_webhook_retries": "test_webhook_outcomes_are_counted",
    "vidgen_webhook_failures": "test_webhook_outcomes_are_counted",
}


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` response: the samples, by sample name."""

    text: str
    samples: dict[str, list]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 when
        there is none: a labelled family shows no sample before its first count)."""
        return sum(
            sample.value
            for sample in self.samples.get(name, ())
            if all(sample.labels.get(k) == v for k, v in labels.items())
        )


async def scrape(server: LiveServer) -> Scrape:
    response = await server.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return Scrape(response.text, samples)


async def scrape_until(
    server: LiveServer, done: Callable[[Scrape], bool], *, within: float = 20.0
) -> Scrape:
    """Scrape until ``done`` holds (for figures that move in the background); the last
    scrape either way, so the caller's assertion says what was seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = await scrape(server)
        if done(found) or loop.time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def generate(server: LiveServer, account: Account, **fields: object) -> str:
    body = await server.gql(
        GENERATE, {"input": {"provider": "test", **fields}}, token=account.token
    )
    assert "errors" not in body, body
    return body["data"]["generateVideo"]["id"]


def test_every_family_is_checked() -> None:
    families = {family.name for family in metrics.REGISTRY.collect()}
    assert families == set(CHECKED), "a family without a test that moves it, or a stale entry"
    assert set(CHECKED.values()) <= set(globals()), "CHECKED names a test that does not exist"


async def test_requests_and_operations_are_counted(live_server: LiveServer, alice) -> None:
    before = await scrape(live_server)
    for _ in range(2):
        body = await live_server.gql("query Counted { viewer { id } }", token=alice.token)
        assert body["data"]["viewer"] is not None
    bad = await live_server.gql(GENERATE, {"input": {"prompt": "  "}}, token=alice.token)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # A request whose path holds ids: counted under its route's template.
    media = await live_server.client.get("/media/u1/v2/video.mp4")
    after = await scrape(live_server)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    requests = "vidgen_http_requests_total"
    assert moved(requests, route="/graphql", method="POST", status="200") == 3
    assert moved(requests, route="/metrics", method="GET", status="200") == 1  # `before`
    media_route = "/media/{key:path}"
    assert moved(requests, route=media_route, status=str(media.status_code)) == 1
    assert not re.search(r'route="/media/u\d', after.text)  # never the raw path
    assert moved("vidgen_graphql_operations_total", operation="Counted", type="query") == 2
    assert moved("vidgen_graphql_operations_total", operation="Generate", type="mutation") == 1
    assert moved("vidgen_graphql_errors_total", operation="Generate", code="BAD_USER_INPUT") == 1
    assert moved("vidgen_graphql_errors_total", operation="Counted") == 0


async def test_every_response_carries_a_request_id(live_server: LiveServer, alice) -> None:
    # The same layer that counts requests: a sane id of the client's is echoed, any other
    # is replaced by a new one; a 404 and a 413 carry one too.
    query = {"query": "{ viewer { id } }"}
    headers = live_server.headers(alice.token)
    mine = await live_server.client.post(
        "/graphql", json=query, headers={**headers, "X-Request-ID": "abc-123"}
    )
    assert mine.status_code == 200 and mine.headers["x-request-id"] == "abc-123"
    ids = set()
    for bad in ("x" * 65, ""):
        response = await live_server.client.post(
            "/graphql", json=query, headers={**headers, "X-Request-ID": bad}
        )
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 2
    missing = await live_server.client.get("/no/such/page")
    assert missing.status_code == 404 and missing.headers["x-request-id"]
    big = await live_server.client.post(
        "/graphql",
        content=b"{" + b" " * (live_server.settings.max_request_bytes + 1) + b"}",
        headers={**headers, "content-type": "application/json"},
    )
    assert big.status_code == 413 and big.headers["x-request-id"]


async def test_job_figures_follow_the_jobs(live_server: LiveServer, alice) -> None:
    # The database gauges are this test's database's figures; the counters are compared.
    before = await scrape(live_server)
    assert before.value("vidgen_queue_depth") == 0
    assert before.value("vidgen_queue_oldest_due_age_seconds") == 0
    await generate(live_server, alice, prompt="succeed")
    await generate(live_server, alice, prompt="fail")
    # Refused once with a Retry-After of an hour: re-queued, due only then.
    await generate(live_server, alice, prompt="retry-after:3600")
    await generate(live_server, alice, prompt="succeed again")

    queued = await scrape(live_server)
    assert queued.value("vidgen_jobs", status="queued", provider="test") == 4
    assert queued.value("vidgen_jobs", status="completed", provider="test") == 0
    assert queued.value("vidgen_queue_depth") == 4
    assert queued.value("vidgen_job_attempts") == 0
    # The oldest due job's age is read at each scrape: it grows while the job waits.
    waited = queued.value("vidgen_queue_oldest_due_age_seconds")
    assert waited > 0
    assert (await scrape(live_server)).value("vidgen_queue_oldest_due_age_seconds") > waited

    assert await Worker(live_server.runtime, concurrency=4).run_until_idle() == 4
    after = await scrape(live_server)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert after.value("vidgen_jobs", status="completed", provider="test") == 2
    assert after.value("vidgen_jobs", status="failed", provider="test") == 1
    assert after.value("vidgen_jobs", status="queued", provider="test") == 1  # the retry
    assert after.value("vidgen_queue_depth") == 0  # the retry is not due yet
    assert after.value("vidgen_queue_oldest_due_age_seconds") == 0
    assert after.value("vidgen_job_attempts", outcome="succeeded") == 2
    assert after.value("vidgen_job_attempts", outcome="failed") == 1
    assert after.value("vidgen_job_attempts", outcome="retry") == 1
    assert after.value("vidgen_job_attempts", outcome="rescued") == 0
    duration = "vidgen_job_duration_seconds_count"
    assert moved(duration, provider="test", outcome="succeeded") == 2
    assert moved(duration, provider="test", outcome="failed") == 1
    assert moved(duration, provider="test", outcome="retry") == 1
    assert moved("vidgen_job_duration_seconds_sum", provider="test") > 0
    assert moved("vidgen_job_retries_total", provider="test") == 1


async def test_a_rescue_is_counted(live_server: LiveServer, alice) -> None:
    await generate(live_server, alice, prompt="succeed")
    # A worker claimed it and died: its lease has already run out.
    [claimed] = await queue.claim(worker_id="dead", limit=1, lease_seconds=-1)
    assert claimed.attempt == 1
    before = await scrape(live_server)
    assert before.value("vidgen_jobs", status="processing", provider="test") == 1

    # A live worker's sweeper hands the job back to the queue, then the worker runs it.
    assert await Worker(live_server.runtime, concurrency=1).run_until_idle() == 1
    after = await scrape(live_server)
    assert after.value("vidgen_job_rescues_total") - before.value("vidgen_job_rescues_total") == 1
    assert after.value("vidgen_job_attempts", outcome="rescued") == 1
    assert after.value("vidgen_job_attempts", outcome="succeeded") == 1
    assert after.value("vidgen_jobs", status="completed", provider="test") == 1


async def test_webhook_outcomes_are_counted(live_server: LiveServer, alice) -> None:
    settings = live_server.settings
    settings.webhook_allow_private = True  # the receiver is on 127.0.0.1
    settings.webhook_retry_base_seconds = settings.webhook_retry_cap_seconds = 0.01
    settings.webhook_poll_seconds = 0.02
    async with receiving() as receiver:
        # The queued event: a 500, then accepted. The processing one: refused for good.
        receiver.answer(500, 204, 404)
        await generate(live_server, alice, prompt="succeed", webhookUrl=receiver.url)
        await queue.claim(worker_id="w", limit=1, lease_seconds=60)
        before = await scrape(live_server)
        async with delivering(live_server.runtime):
            await receiver.wait_for(3)
            await settled()
    after = await scrape(live_server)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("vidgen_webhook_deliveries_total") == 1
    assert moved("vidgen_webhook_retries_total") == 1
    assert moved("vidgen_webhook_failures_total", reason="refused") == 1
    assert moved("vidgen_webhook_failures_total", reason="expired") == 0


async def test_subscriptions_open_and_close_the_gauge(live_server: LiveServer, alice) -> None:
    video_id = await generate(live_server, alice, prompt="succeed")
    gauge = "vidgen_active_subscriptions"

    def open_now(scraped: Scrape) -> tuple[float, float]:
        return (
            scraped.value(gauge, field="videoUpdated"),
            scraped.value(gauge, field="videoUpdates"),
        )

    watched, fed = open_now(await scrape(live_server))
    ws = await GraphQLWS.open(live_server.ws_url)
    try:
        await ws.init({"Authorization": f"Bearer {alice.token}"})
        watches = [await ws.subscribe(WATCH, {"id": video_id}) for _ in range(2)]
        for watch in watches:
            assert (await ws.next_data(watch, "videoUpdated"))["version"] == 1
        await ws.subscribe(FEED)  # sends nothing until a change: seen on the gauge
        opened = await scrape_until(live_server, lambda s: open_now(s) == (watched + 2, fed + 1))
        assert open_now(opened) == (watched + 2, fed + 1)
        await ws.stop(watches[0])
        one_less = await scrape_until(live_server, lambda s: open_now(s) == (watched + 1, fed + 1))
        assert open_now(one_less) == (watched + 1, fed + 1)
    finally:
        await ws.close()  # the others end with the socket
    closed = await scrape_until(live_server, lambda s: open_now(s) == (watched, fed))
    assert open_now(closed) == (watched, fed)


@pytest.mark.sqlite_only  # the bus's figure: the database backend does not matter
async def test_an_overflowing_subscriber_is_counted(live_server: LiveServer) -> None:
    counter = "vidgen_bus_dropped_subscribers_total"
    bus = live_server.runtime.bus
    before = await scrape(live_server)
    async with bus.subscribe("vidgen:metrics-test", maxsize=2) as slow:
        for n in range(5):  # read by nobody: the third one finds the queue full
            await bus.publish("vidgen:metrics-test", {"n": n})
        assert slow.overflowed
        after = await scrape(live_server)
    assert after.value(counter) - before.value(counter) == 1


@pytest_asyncio.fixture
async def redis_live_server(db: Settings, redis_server: RedisServer) -> AsyncIterator[LiveServer]:
    """The app on its own Redis server (which the test may restart), with a bus that
    reconnects within a fraction of a second."""
    from vidgen.web.app import create_app

    settings = db.model_copy(update={"redis_url": redis_server.url})
    runtime = Runtime.create(settings, bus=fast_bus(redis_server.url))
    app = create_app(settings, runtime=runtime, manage_database=False, embedded_worker=False)
    async with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as client:
            yield LiveServer(url=url, app=app, runtime=runtime, settings=settings, client=client)


@pytest.mark.sqlite_only  # the bus's figure: the database backend does not matter
async def test_a_redis_restart_counts_one_reconnect(
    redis_live_server: LiveServer, redis_server: RedisServer
) -> None:
    counter = "vidgen_bus_reconnects_total"
    bus = redis_live_server.runtime.bus
    before = await scrape(redis_live_server)
    redis_server.stop()
    await _until(lambda: not bus.stats.connected)
    redis_server.start()
    after = await scrape_until(
        redis_live_server, lambda s: s.value(counter) > before.value(counter)
    )
    assert after.value(counter) - before.value(counter) == 1


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_quota_refusals_and_throttled_requests_are_counted(
    db: Settings, alice: Account
) -> None:
    async with start_live_server(
        db,
        user_max_active_jobs=1,
        user_mutations_per_minute=1,
        user_mutation_burst=2,
        login_max_failures_per_email=1,
        register_max_per_address=1,
    ) as server:
        before = await scrape(server)

        async def answer(query: str, variables: dict, token: str | None = None) -> str | None:
            body = await server.gql(query, variables, token=token)
            return body["errors"][0]["extensions"]["code"] if body.get("errors") else None

        job = {"input": {"provider": "test", "prompt": "succeed"}}
        login = {"input": {"email": alice.email, "password": "wrong password"}}
        register = {"input": {"email": "new@example.com", "password": "password123"}}
        assert await answer(GENERATE, job, alice.token) is None
        assert await answer(GENERATE, job, alice.token) == "QUOTA_EXCEEDED"
        assert await answer(GENERATE, job, alice.token) == "RATE_LIMITED"  # 2 a minute
        assert await answer(d.LOGIN, login) == "UNAUTHENTICATED"
        assert await answer(d.LOGIN, login) == "RATE_LIMITED"
        assert await answer(d.REGISTER, register) is None
        assert await answer(d.REGISTER, register) == "RATE_LIMITED"
        after = await scrape(server)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("vidgen_quota_refusals_total", limit="active_jobs") == 1
    assert moved("vidgen_quota_refusals_total") == 1
    for kind in ("mutation", "login", "register"):
        assert moved("vidgen_throttled_total", kind=kind) == 1
