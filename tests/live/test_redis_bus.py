"""RedisBus: one connection per process, bounded fan-out, reconnects with RESYNC."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.live.conftest import fast_bus
from tests.live.redis_server import RedisServer, free_port
from tests.tcp_proxy import FreezableProxy
from vidgen.events.bus import publish_all
from vidgen.events.channels import owner_channel, video_channel
from vidgen.events.local import CLOSED, RESYNC, SubscriberOverflow
from vidgen.events.memory import MemoryBus
from vidgen.events.messages import VideoEvent, video_event_items
from vidgen.events.redis import RedisBus


async def next_message(sub, within: float = 3.0):
    return await asyncio.wait_for(sub.get(), within)


async def next_data(sub, within: float = 3.0):
    """The next dict message, skipping RESYNC signals."""
    while True:
        message = await next_message(sub, within)
        if message is not RESYNC:
            return message


async def subscriber_clients(url: str, name: str) -> list[dict]:
    client = aioredis.Redis.from_url(url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return [c for c in clients if c.get("name") == name]


async def until(predicate, within: float = 5.0, step: float = 0.02) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


async def test_many_subscribers_share_one_redis_connection(redis_server: RedisServer):
    bus = fast_bus(redis_server.url, client_name="fanout-test")
    await bus.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            subs = [
                await stack.enter_async_context(bus.subscribe(video_channel(i % 10)))
                for i in range(500)
            ]
            clients = await subscriber_clients(redis_server.url, "fanout-test:sub")
            assert len(clients) == 1
            assert clients[0]["psub"] == "1" and clients[0]["sub"] == "0"

            await bus.publish(video_channel(3), {"n": 1})
            got = await asyncio.gather(*(next_data(s) for s in subs[3::10]))
            assert got == [{"n": 1}] * 50
            assert all(s.queue.empty() for i, s in enumerate(subs) if i % 10 != 3)
            assert bus.stats.received == 1 and bus.stats.delivered == 50
        # Leaving subscriptions costs no Redis command either.
        assert len(await subscriber_clients(redis_server.url, "fanout-test:sub")) == 1
        assert bus.subscriber_count == 0
    finally:
        await bus.close()
    assert await subscriber_clients(redis_server.url, "fanout-test:sub") == []


async def test_two_processes_hear_each_other(redis_server: RedisServer):
    a, b = fast_bus(redis_server.url), fast_bus(redis_server.url)
    await a.start()
    await b.start()
    try:
        async with a.subscribe(owner_channel(7)) as sa, b.subscribe(owner_channel(7)) as sb:
            event = VideoEvent(
                video_id=1, owner_id=7, version=2, status="processing", progress=0.5, event_id=11
            )
            await publish_all(a, video_event_items(event))
            for sub in (sa, sb):
                assert VideoEvent.from_dict(await next_data(sub)) == event
    finally:
        await a.close()
        await b.close()


async def test_namespaces_do_not_hear_each_other(redis_server: RedisServer):
    a = fast_bus(redis_server.url, namespace="blue")
    b = fast_bus(redis_server.url, namespace="green")
    await a.start()
    await b.start()
    try:
        async with a.subscribe("vidgen:x") as sa, b.subscribe("vidgen:x") as sb:
            await b.publish("vidgen:x", {"from": "green"})
            assert await next_data(sb) == {"from": "green"}
            await asyncio.sleep(0.2)
            assert sa.queue.empty()
    finally:
        await a.close()
        await b.close()


async def test_slow_subscriber_is_dropped_alone(redis_bus: RedisBus):
    async with (
        redis_bus.subscribe("vidgen:x", maxsize=3) as slow,
        redis_bus.subscribe("vidgen:x", maxsize=100) as fast,
    ):
        for n in range(10):
            await redis_bus.publish("vidgen:x", {"n": n})
        received = [await next_data(fast) for _ in range(10)]
        assert [m["n"] for m in received] == list(range(10))
        with pytest.raises(SubscriberOverflow):
            await next_message(slow)
        assert slow.queue.qsize() == 0  # the backlog was freed, not kept
        assert redis_bus.stats.overflows == 1
        await redis_bus.publish("vidgen:x", {"n": 10})
        assert (await next_data(fast))["n"] == 10


async def test_redis_restart_is_survived_with_resync(redis_server: RedisServer):
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        async with bus.subscribe("vidgen:x") as sub:
            await bus.publish("vidgen:x", {"n": 1})
            assert await next_data(sub) == {"n": 1}
            assert await bus.ping()

            redis_server.stop()
            await until(lambda: not bus.connected)
            assert not await bus.ping()
            # A publisher during the outage neither raises nor hangs for long; the message
            # stays in the outbox and is retried until Redis answers.
            await asyncio.wait_for(bus.publish("vidgen:x", {"n": "late"}), 5)
            assert bus.stats.publish_errors >= 1

            # Failed reconnect attempts (the loss was the first error): waited for, as a
            # stalled process may not have made one in any fixed time.
            await until(lambda: bus.stats.connection_errors >= 2, within=15)
            redis_server.start()  # same port
            assert await next_message(sub, within=10) is RESYNC
            assert await bus.ping()
            await bus.publish("vidgen:x", {"n": 2})
            got = await next_data(sub)
            if got == {"n": "late"}:  # retried after this process subscribed again
                got = await next_data(sub)
            assert got == {"n": 2}  # never before the message published ahead of it
            stats = bus.stats
            assert stats.reconnects == 1 and stats.connection_errors >= 2
            assert stats.published_late == 1 and stats.publish_dropped == 0
    finally:
        await bus.close()


async def test_start_while_redis_is_down_then_connects(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", port=free_port())
    bus = fast_bus(server.url, start_timeout=0.3)
    await bus.start()  # does not raise
    try:
        assert not bus.connected and not await bus.ping()
        await bus.publish("vidgen:x", {"n": 0})  # kept for retry, not raised
        async with bus.subscribe("vidgen:x") as sub:
            server.start()
            try:
                assert await next_message(sub, within=10) is RESYNC
                await bus.publish("vidgen:x", {"n": 1})
                got = await next_data(sub)
                if got == {"n": 0}:  # sent late, after this process subscribed
                    got = await next_data(sub)
                assert got == {"n": 1}
                assert bus.stats.reconnects == 0 and bus.stats.connects == 1
            finally:
                server.stop()
    finally:
        await bus.close()


async def test_a_starved_loop_is_not_taken_for_a_dead_redis(redis_server: RedisServer):
    """Delivery work that holds the loop longer than the liveness timeout, again and again,
    must not make the bus declare Redis lost: Redis answered, the loop was just late."""
    bus = fast_bus(redis_server.url, health_interval=0.2, liveness_timeout=1.0)
    await bus.start()
    try:
        async with bus.subscribe("vidgen:x") as sub:
            for n in range(3):
                await asyncio.sleep(0.3)  # a health PING goes out ...
                time.sleep(1.5)  # noqa: ASYNC251 - ... and the loop is starved past the timeout
                await bus.publish("vidgen:x", {"n": n})
                assert await next_data(sub) == {"n": n}
            stats = bus.stats
            assert stats.connection_errors == 0 and stats.reconnects == 0, stats
            assert bus.connected and await bus.ping()
    finally:
        await bus.close()


async def test_half_open_connection_is_detected_by_health_checks(redis_server: RedisServer):
    proxy = FreezableProxy(redis_server.port)
    port = await proxy.start()
    bus = fast_bus(f"redis://127.0.0.1:{port}/0", health_interval=0.2, liveness_timeout=1.0)
    await bus.start()
    try:
        async with bus.subscribe("vidgen:x") as sub:
            proxy.frozen.set()
            await until(lambda: not bus.connected, within=5)
            proxy.frozen.clear()
            assert await next_message(sub, within=10) is RESYNC
            assert proxy.connections >= 2  # the old and the new subscription
            await bus.publish("vidgen:x", {"n": 1})
            assert await next_data(sub) == {"n": 1}
    finally:
        await bus.close()
        await proxy.close()


async def test_close_is_prompt_and_idempotent(redis_bus: RedisBus):
    loop = asyncio.get_running_loop()
    started = loop.time()
    await redis_bus.close()
    await redis_bus.close()
    assert loop.time() - started < 1.0
    assert not await redis_bus.ping()


async def test_a_callback_subscription_hears_messages_and_resync(redis_server: RedisServer):
    # The job pipeline's way to listen (no queue, no task per job): each message is handed
    # over as it is dispatched, in order; RESYNC after a reconnect; nothing once it is left.
    heard: list[object] = []
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        async with bus.subscribe("vidgen:cb", on_message=heard.append) as sub:
            for n in range(3):
                await bus.publish("vidgen:cb", {"n": n})
            await until(lambda: len(heard) == 3)
            assert heard == [{"n": 0}, {"n": 1}, {"n": 2}]
            assert sub.queue.empty()
            redis_server.stop()
            await until(lambda: not bus.connected)
            redis_server.start()
            await until(lambda: RESYNC in heard, within=10)
            await bus.publish("vidgen:cb", {"n": 3})
            await until(lambda: heard[-1] == {"n": 3})
        await bus.publish("vidgen:cb", {"n": 4})
        await asyncio.sleep(0.2)
        assert {"n": 4} not in heard
    finally:
        await bus.close()


async def test_a_callback_subscription_on_the_memory_bus() -> None:
    heard: list[object] = []
    bus = MemoryBus()
    async with bus.subscribe("vidgen:cb", on_message=heard.append) as sub:
        await bus.publish("vidgen:cb", {"n": 1})
        assert heard == [{"n": 1}]  # at once, within the publish
        sub.close()
        await bus.publish("vidgen:cb", {"n": 2})
    assert heard == [{"n": 1}, CLOSED]


def _broken(message: object) -> None:
    raise RuntimeError("callback bug")


async def test_a_failing_callback_harms_neither_publisher_nor_other_subscribers(
    redis_server: RedisServer,
) -> None:
    # On the in-process bus the publisher (a mutation, its change committed) must not see the
    # error; on Redis the reader must not fail over it (it would reconnect for ever, every
    # subscriber of the process cut off).
    memory = MemoryBus()
    async with (
        memory.subscribe("vidgen:cb", on_message=_broken),
        memory.subscribe("vidgen:cb") as other,
    ):
        await memory.publish("vidgen:cb", {"n": 1})
        assert other.queue.get_nowait() == {"n": 1}
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        async with (
            bus.subscribe("vidgen:cb", on_message=_broken),
            bus.subscribe("vidgen:cb") as other,
        ):
            for n in range(3):
                await bus.publish("vidgen:cb", {"n": n})
            assert [await next_data(other) for _ in range(3)] == [{"n": n} for n in range(3)]
            assert bus.connected and bus.stats.reconnects == 0
    finally:
        await bus.close()


async def test_a_callback_subscription_has_nothing_to_get() -> None:
    async with MemoryBus().subscribe("vidgen:cb", on_message=lambda message: None) as sub:
        with pytest.raises(TypeError):
            await sub.get()
