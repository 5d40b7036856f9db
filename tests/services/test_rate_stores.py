"""The throttles' counters, in memory and in Redis: the same answers, each step atomic,
and Redis down lets requests through (docs/limits.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.live.redis_server import RedisServer
from vidgen.services.rate_stores import Limit, MemoryRates, RateStore, RedisRates


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RateStore]:
    if request.param == "memory":
        yield MemoryRates()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    rates = RedisRates(server.url, namespace="t")
    try:
        yield rates
    finally:
        await rates.close()


async def test_a_window_takes_up_to_each_keys_limit(store: RateStore) -> None:
    both = [Limit("a", 2), Limit("b", 3)]
    first, wait = await store.acquire(both, window=60)
    assert first and wait == 0
    assert (await store.acquire(both, window=60))[0]
    entry, wait = await store.acquire(both, window=60)  # "a" is full: nothing is taken
    assert entry == "" and 59 < wait <= 60
    assert (await store.acquire([Limit("b", 3)], window=60))[0]  # b had room for one more
    assert (await store.acquire([Limit("b", 3)], window=60))[0] == ""

    await store.forget("a", first)  # given back: room for one
    assert (await store.acquire([Limit("a", 2)], window=60))[0]
    await store.clear("a")
    assert (await store.acquire([Limit("a", 2)], window=60))[0]


async def test_entries_leave_the_window(store: RateStore) -> None:
    # The second call must come within the window of the first to be refused: two Redis
    # round trips on a loaded machine can take a good part of a short one.
    assert (await store.acquire([Limit("k", 1)], window=1.0))[0]
    entry, wait = await store.acquire([Limit("k", 1)], window=1.0)
    assert entry == "" and 0 < wait <= 1.0
    await asyncio.sleep(wait + 0.05)
    assert (await store.acquire([Limit("k", 1)], window=1.0))[0]


async def test_concurrent_attempts_take_only_the_limit(store: RateStore) -> None:
    results = await asyncio.gather(
        *(store.acquire([Limit("email", 5), Limit("addr", 50)], window=60) for _ in range(40))
    )
    assert sum(1 for entry, _ in results if entry) == 5
    taken = await asyncio.gather(*(store.take("bucket", rate=0.01, burst=4) for _ in range(20)))
    assert sum(1 for wait in taken if wait == 0) == 4


async def test_a_token_bucket_refills_at_its_rate(store: RateStore) -> None:
    # 2 a second: the second call finds the bucket short only if it comes within 0.5 s of
    # the first (at 10 a second a 0.1 s stall between two Redis calls refilled it).
    assert await store.take("u", rate=2, burst=2, cost=2) == 0
    wait = await store.take("u", rate=2, burst=2)
    assert 0 < wait <= 0.5
    await asyncio.sleep(wait + 0.05)
    assert await store.take("u", rate=2, burst=2) == 0
    assert await store.take("u", rate=2, burst=2, cost=3) > 0  # more than it holds


async def test_memory_counters_forget_idle_keys() -> None:
    now = [0.0]
    rates = MemoryRates(clock=lambda: now[0])
    for i in range(3):
        await rates.acquire([Limit(f"k{i}", 1)], window=10)
    await rates.take("bucket", rate=1, burst=5)
    now[0] = 100.0
    rates._calls = 10**9  # prune at the next call
    await rates.acquire([Limit("new", 1)], window=10)
    assert set(rates._windows) == {"new"} and rates._buckets == {}


async def test_redis_down_lets_requests_through(redis_server: RedisServer) -> None:
    rates = RedisRates(redis_server.url, timeout=0.5)
    try:
        assert (await rates.acquire([Limit("k", 1)], window=60))[0]
        redis_server.stop()
        assert (await rates.acquire([Limit("k", 1)], window=60))[0]
        assert await rates.take("b", rate=1, burst=1) == 0
        await rates.forget("k", "x")
        await rates.clear("k")
    finally:
        await rates.close()
