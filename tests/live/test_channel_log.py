"""The shared per-channel log (``events/local.py``): one entry per message whatever the
number of subscribers, a read position each, bounded lag, and a slow reader cut off alone."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.live.conftest import fast_bus
from tests.live.redis_server import RedisServer
from vidgen.events.local import CLOSED, RESYNC, SubscriberOverflow
from vidgen.events.memory import MemoryBus


def _log(bus, channel: str):
    return bus._local._logs[channel]


async def test_one_entry_per_message_for_a_thousand_subscribers() -> None:
    bus = MemoryBus()
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(bus.subscribe("v:1")) for _ in range(1000)]
        for n in range(10):
            await bus.publish("v:1", {"n": n})
        log = _log(bus, "v:1")
        assert len(log.log) == 10  # kept once, not once per subscriber
        assert all(sub.queue.qsize() == 10 for sub in subs)
        for sub in subs[:999]:
            assert [(await sub.get())["n"] for _ in range(10)] == list(range(10))
        assert len(log.log) == 10  # the last reader still needs all of them
        for n in range(5):
            assert (await subs[-1].get())["n"] == n
        assert len(log.log) == 5  # what nobody has to read any more is gone
        for _ in range(5):
            await subs[-1].get()
        assert len(log.log) == 0
    assert not bus._local.has("v:1")


async def test_only_waiting_readers_are_woken_and_each_reads_in_order() -> None:
    bus = MemoryBus()
    got: dict[int, list[int]] = {i: [] for i in range(50)}

    async def read(i: int, sub) -> None:
        while len(got[i]) < 100:
            got[i].append((await sub.get())["n"])
            if i % 7 == 0:
                await asyncio.sleep(0)  # some readers lag a little behind

    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(bus.subscribe("v:2")) for _ in range(50)]
        tasks = [asyncio.create_task(read(i, sub)) for i, sub in enumerate(subs)]
        for n in range(100):
            await bus.publish("v:2", {"n": n})
            if n % 10 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert all(values == list(range(100)) for values in got.values())


async def test_a_slow_reader_is_cut_off_alone_and_its_lag_is_bounded() -> None:
    """One reader stops reading. The fast readers never wait for it: each message reaches
    them as it is published. The log never holds more than the slow one's bound plus one;
    past it the slow one is dropped (its reader gets SubscriberOverflow) and the log shrinks
    to what the fast ones have not read."""
    bus = MemoryBus()
    async with contextlib.AsyncExitStack() as stack:
        slow = await stack.enter_async_context(bus.subscribe("v:3", maxsize=8))
        fast = [await stack.enter_async_context(bus.subscribe("v:3", maxsize=8)) for _ in range(20)]
        log = _log(bus, "v:3")
        longest = 0
        for n in range(200):
            await bus.publish("v:3", {"n": n})
            longest = max(longest, len(log.log))
            for sub in fast:  # each fast reader has the message at once, in order
                assert sub.queue.qsize() == 1
                assert (await sub.get())["n"] == n
            if n < 8:
                assert slow.queue.qsize() == n + 1 and not slow.overflowed
        assert longest <= 9  # the slow reader's bound, and the one that cut it off
        assert slow.overflowed and bus._local.overflows == 1
        assert len(log.log) == 0  # it holds nothing back any more
        assert slow.queue.qsize() == 0
        with pytest.raises(SubscriberOverflow):
            await slow.get()
        with pytest.raises(SubscriberOverflow):  # and stays dropped
            await slow.get()


async def test_different_bounds_on_one_channel() -> None:
    bus = MemoryBus()
    async with bus.subscribe("v:4", maxsize=3) as small, bus.subscribe("v:4", maxsize=100) as big:
        for n in range(10):
            await bus.publish("v:4", {"n": n})
        assert small.overflowed and not big.overflowed
        assert [(await big.get())["n"] for _ in range(10)] == list(range(10))
        assert bus._local.overflows == 1


async def test_several_channels_are_read_in_publish_order_and_resync_comes_once() -> None:
    bus = MemoryBus()
    async with bus.subscribe("a", "b") as both, bus.subscribe("b") as only_b:
        await bus.publish("a", {"n": 0})
        await bus.publish("b", {"n": 1})
        bus._local.broadcast(RESYNC)
        await bus.publish("a", {"n": 2})
        got = [await both.get() for _ in range(4)]
        assert got == [{"n": 0}, {"n": 1}, RESYNC, {"n": 2}]
        assert both.queue.empty()  # the RESYNC heard on "b" too is not read twice
        assert [await only_b.get() for _ in range(2)] == [{"n": 1}, RESYNC]


async def test_close_ends_a_reader_with_what_it_had_dropped() -> None:
    bus = MemoryBus()
    async with bus.subscribe("c") as sub, bus.subscribe("c") as other:
        await bus.publish("c", {"n": 1})
        sub.close()
        assert sub.queue.qsize() == 0
        assert await sub.get() is CLOSED
        assert (await other.get())["n"] == 1
        assert len(_log(bus, "c").log) == 0


async def test_a_redis_restart_resyncs_three_thousand_subscribers(redis_server: RedisServer):
    """3,000 subscriptions over 100 channels on one Redis bus: after a Redis restart every one
    gets RESYNC once, then every message published after it, in order; the ones published
    before the outage were all delivered before it."""
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            subs = [
                await stack.enter_async_context(bus.subscribe(f"vidgen:v{i % 100}", maxsize=64))
                for i in range(3000)
            ]
            for c in range(100):
                await bus.publish(f"vidgen:v{c}", {"n": 0})
            for sub in subs:
                assert await asyncio.wait_for(sub.get(), 10) == {"n": 0}

            redis_server.stop()
            for _ in range(500):
                if not bus.connected:
                    break
                await asyncio.sleep(0.02)
            assert not bus.connected
            redis_server.start()
            for sub in subs:
                assert await asyncio.wait_for(sub.get(), 15) is RESYNC
            for n in range(1, 6):
                for c in range(100):
                    await bus.publish(f"vidgen:v{c}", {"n": n})
            for sub in subs:
                got = [(await asyncio.wait_for(sub.get(), 10))["n"] for _ in range(5)]
                assert got == [1, 2, 3, 4, 5]
                assert sub.queue.empty()
            assert bus.stats.overflows == 0
            assert all(len(log.log) == 0 for log in bus._local._logs.values())
    finally:
        await bus.close()
