"""RedisBus.publish_many: one script call per batch, each message encoded once, order kept,
across a Redis restart (the script cache is lost) and where Redis refuses scripts; the
in-process bus delivers exactly the same."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis

from tests.live.conftest import fast_bus
from tests.live.redis_server import RedisServer
from vidgen.events.batch import PublishBatch
from vidgen.events.bus import publish_all
from vidgen.events.channels import WAKEUP_CHANNEL, owner_channel, video_channel
from vidgen.events.local import RESYNC
from vidgen.events.memory import MemoryBus
from vidgen.events.messages import VideoEvent, video_event_items
from vidgen.events.redis import RedisBus
from vidgen.jobs import lifecycle

EVENT = VideoEvent(
    video_id=4, owner_id=9, version=1, status="queued", progress=0.0, event_id=17, project_id=2
)
CHANNELS = (video_channel(4), owner_channel(9), WAKEUP_CHANNEL)


async def next_data(sub: Any, within: float = 3.0) -> Any:
    """The next dict message, skipping RESYNC signals."""
    while True:
        message = await asyncio.wait_for(sub.get(), within)
        if message is not RESYNC:
            return message


async def command_calls(url: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def reset_stats(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.config_resetstat()
    finally:
        await client.aclose()


async def enqueue_like(bus: Any, n: int) -> None:
    """What generateVideo sends: the event on its two channels, then the wake-up."""
    event = VideoEvent(**{**EVENT.to_dict(), "version": n})
    payload = event.to_dict()
    await bus.publish_many(
        [
            (video_channel(4), payload),
            (owner_channel(9), payload),
            (WAKEUP_CHANNEL, {"type": "wakeup", "n": n}),
        ]
    )


async def received(bus: Any, send: Any, count: int) -> list[tuple[str, Any]]:
    """(channel, message) in arrival order, on one subscription to every channel."""
    out: list[tuple[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        subs = {c: await stack.enter_async_context(bus.subscribe(c, maxsize=500)) for c in CHANNELS}
        everything = await stack.enter_async_context(bus.subscribe(*CHANNELS, maxsize=500))
        await send()
        for _ in range(count):
            out.append(("*", await next_data(everything)))
        for channel, sub in subs.items():
            while not sub.queue.empty():
                message = sub.queue.get_nowait()
                if message is not RESYNC:
                    out.append((channel, message))
        await asyncio.sleep(0.1)
        assert everything.queue.empty()
    return out


async def test_a_batch_is_one_script_call_in_order_like_the_memory_bus(
    redis_server: RedisServer,
) -> None:
    async def send(bus: Any) -> None:
        for n in range(5):
            await enqueue_like(bus, n)
        await publish_all(bus, video_event_items(EVENT))
        await bus.publish(WAKEUP_CHANNEL, {"type": "wakeup"})

    memory = MemoryBus()
    expected = await received(memory, lambda: send(memory), 5 * 3 + 2 + 1)

    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        await enqueue_like(bus, -1)  # the first batch loads the script (NOSCRIPT -> EVAL)
        await reset_stats(redis_server.url)
        got = await received(bus, lambda: send(bus), 5 * 3 + 2 + 1)
        calls = await command_calls(redis_server.url)
        assert bus.stats.publish_errors == 0
    finally:
        await bus.close()
    assert got == expected
    assert [m["version"] for c, m in got[:15:3]] == list(range(5))
    # 6 batches of several messages: 6 EVALSHA, no EVAL (cached), one bare PUBLISH.
    assert calls.get("evalsha") == 6 and "eval" not in calls, calls
    assert calls.get("publish") == 5 * 3 + 2 + 1, calls  # scripts' PUBLISHes count too


async def test_a_message_for_several_channels_is_encoded_once(redis_bus: RedisBus) -> None:
    class Stamp:
        """Not JSON: encoded through ``default=str``, which counts the encodings."""

        encodings = 0

        def __str__(self) -> str:
            Stamp.encodings += 1
            return "stamp"

    message = {"at": Stamp()}
    async with redis_bus.subscribe(*CHANNELS[:3]) as sub:
        await redis_bus.publish_many([(c, message) for c in CHANNELS[:3]])
        assert [await next_data(sub) for _ in range(3)] == [{"at": "stamp"}] * 3
    assert Stamp.encodings == 1
    assert redis_bus.stats.published == 3


async def test_batches_survive_a_redis_restart_and_a_script_flush(
    redis_server: RedisServer,
) -> None:
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        async with bus.subscribe(WAKEUP_CHANNEL) as sub:
            await enqueue_like(bus, 1)
            assert (await next_data(sub))["n"] == 1

            client = aioredis.Redis.from_url(redis_server.url)
            try:
                await client.script_flush()
            finally:
                await client.aclose()
            await enqueue_like(bus, 2)
            assert (await next_data(sub))["n"] == 2

            redis_server.stop()
            await enqueue_like(bus, 3)  # kept for retry, not raised
            assert bus.stats.publish_errors >= 3
            redis_server.start()  # an empty script cache
            assert await asyncio.wait_for(sub.get(), 10) is RESYNC
            await enqueue_like(bus, 4)
            got = await next_data(sub)
            if got["n"] == 3:  # the batch kept during the outage, sent late
                got = await next_data(sub)
            assert got["n"] == 4
            # The late batch went out before the next one: 3 + 3 + 3 late + 3. The fourth
            # batch is on time even when it shares the retry's command (its first try).
            assert bus.stats.published == 12 and bus.stats.published_late == 3
    finally:
        await bus.close()


async def test_batches_fall_back_to_a_pipeline_where_scripts_are_refused(
    redis_server: RedisServer,
) -> None:
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "noscripts", "on", ">secret", "~*", "&*", "+@all", "-@scripting"
        )
    finally:
        await admin.aclose()
    url = f"redis://noscripts:secret@127.0.0.1:{redis_server.port}/0"
    bus = fast_bus(url)
    await bus.start()
    try:
        async with bus.subscribe(*CHANNELS) as sub:
            for n in range(3):
                await enqueue_like(bus, n)
            got = [await next_data(sub) for _ in range(9)]
        assert [m.get("n") for m in got[2::3]] == [0, 1, 2]
        assert [m.get("version") for m in got[0::3]] == [0, 1, 2]
        assert bus.stats.publish_errors == 0 and bus.stats.published == 9
    finally:
        await bus.close()


async def test_a_claims_events_are_one_script_call(redis_server: RedisServer) -> None:
    # A claim (or a sweep) publishes the events of all its jobs at once: one round trip,
    # not one per job (a claim of 8 jobs used to wait on 8 in a row), in the same order.
    events = [VideoEvent(**{**EVENT.to_dict(), "video_id": 4, "version": n}) for n in range(8)]
    memory = MemoryBus()
    expected = await received(memory, lambda: lifecycle.publish(memory, events), 8 * 2)
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        await enqueue_like(bus, -1)  # load the script
        await reset_stats(redis_server.url)
        got = await received(bus, lambda: lifecycle.publish(bus, events), 8 * 2)
        calls = await command_calls(redis_server.url)
    finally:
        await bus.close()
    assert got == expected
    assert [m["version"] for c, m in got[: 8 * 2 : 2]] == list(range(8))
    assert calls.get("evalsha") == 1, calls


async def test_a_publish_batch_sends_in_order_on_any_bus() -> None:
    class OneByOne:  # a bus without publish_many
        def __init__(self) -> None:
            self.sent: list[tuple[str, dict]] = []

        async def publish(self, channel: str, message: dict) -> None:
            self.sent.append((channel, message))

    batch = PublishBatch()
    batch.add("a", {"n": 1})
    batch.add_video_events([EVENT])
    plain = OneByOne()
    await batch.send(plain)  # type: ignore[arg-type]
    assert plain.sent == [("a", {"n": 1}), *video_event_items(EVENT)]
    await batch.send(plain)  # type: ignore[arg-type]
    assert len(plain.sent) == 3  # sent once, then forgotten

    memory = MemoryBus()
    async with memory.subscribe("a", "b") as sub:
        batch.add("a", {"n": 1})
        batch.add("b", {"n": 2})
        await batch.send(memory)
        assert [await sub.get(), await sub.get()] == [{"n": 1}, {"n": 2}]
    await batch.send(None)  # no bus: nothing to do


async def test_queued_batches_return_at_once_and_go_out_in_order_with_waited_ones(
    redis_server: RedisServer,
) -> None:
    # A mutation's batch (``send(wait=False)``) returns once it is in the outbox, before
    # any round trip; it still goes out in order with the publishes around it, and like
    # them it survives an outage (sent late, not dropped).
    bus = fast_bus(redis_server.url)
    await bus.start()
    try:
        async with bus.subscribe(WAKEUP_CHANNEL) as sub:
            flushes = 0
            send = bus._send

            async def counting_send(args: list[str]) -> None:
                nonlocal flushes
                flushes += 1
                await send(args)

            bus._send = counting_send  # type: ignore[method-assign]
            for n in range(3):
                batch = PublishBatch()
                batch.add(WAKEUP_CHANNEL, {"type": "wakeup", "n": n})
                await batch.send(bus, wait=False)
            assert flushes == 0  # nothing sent yet: the callers did not wait
            await bus.publish(WAKEUP_CHANNEL, {"type": "wakeup", "n": 3})  # waits, after them
            assert [(await next_data(sub))["n"] for _ in range(4)] == [0, 1, 2, 3]
            assert flushes == 1  # the three queued batches and the publish: one command

            redis_server.stop()
            await publish_all(bus, [(WAKEUP_CHANNEL, {"type": "wakeup", "n": 4})], wait=False)
            for _ in range(300):  # the flusher's first attempts fail meanwhile
                if bus.stats.publish_errors:
                    break
                await asyncio.sleep(0.05)
            assert bus.stats.publish_errors >= 1
            redis_server.start()
            for _ in range(200):  # kept and sent late (before or after the resubscription)
                if bus.stats.published_late:
                    break
                await asyncio.sleep(0.05)
            assert bus.stats.published_late == 1 and bus.stats.publish_dropped == 0
    finally:
        await bus.close()

    memory = MemoryBus()  # a bus without an outbox publishes as usual
    async with memory.subscribe("a") as sub:
        await publish_all(memory, [("a", {"n": 1})], wait=False)
        assert sub.queue.get_nowait() == {"n": 1}


async def test_the_flusher_sends_on_one_held_connection_and_survives_losing_it(
    redis_server: RedisServer,
) -> None:
    # The flusher keeps one connection of its own (no pool round per command). When Redis
    # closes that connection under it (CLIENT KILL, an idle timeout), the next batch still
    # goes out on time, in order, on a fresh connection: no error, nothing late.
    bus = fast_bus(redis_server.url)
    await bus.start()
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        async with bus.subscribe(WAKEUP_CHANNEL, maxsize=100) as sub:
            for n in range(5):
                await bus.publish_many([(WAKEUP_CHANNEL, {"n": n}), (WAKEUP_CHANNEL, {"n": -n})])
            assert [(await next_data(sub))["n"] for _ in range(10)] == [
                v for n in range(5) for v in (n, -n)
            ]
            assert bus._held is not None  # the five batches went out on it
            clients = [c for c in await admin.client_list() if c["name"] == "vidgen:pub"]
            assert len(clients) == 1, clients  # and on it alone
            assert await admin.client_kill_filter(_id=clients[0]["id"]) == 1
            for n in range(5, 8):
                await bus.publish_many([(WAKEUP_CHANNEL, {"n": n}), (WAKEUP_CHANNEL, {"n": -n})])
            assert [(await next_data(sub))["n"] for _ in range(6)] == [5, -5, 6, -6, 7, -7]
            assert bus.stats.publish_errors == 0 and bus.stats.published_late == 0
            again = [c for c in await admin.client_list() if c["name"] == "vidgen:pub"]
            assert [c["id"] for c in again] != [clients[0]["id"]], again  # a new connection
    finally:
        await admin.aclose()
        await bus.close()
