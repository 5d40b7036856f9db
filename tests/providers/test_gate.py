"""The provider's request gate: at most N requests at once, submissions ahead of the rest."""

from __future__ import annotations

import asyncio

from vidgen.providers.http import Gate


async def test_at_most_its_size_at_once_and_submissions_go_first() -> None:
    gate = Gate(2)
    order: list[str] = []
    release = asyncio.Event()
    running = 0
    most = 0

    async def request(name: str, *, first: bool = False) -> None:
        nonlocal running, most
        async with gate.turn(first=first):
            running += 1
            most = max(most, running)
            order.append(name)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(request(f"poll{i}")) for i in range(4)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(request("submit", first=True)))
    await asyncio.sleep(0.01)
    assert order == ["poll0", "poll1"]  # the others wait
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
    # The submission, queued last, went before the polls that were waiting.
    assert order == ["poll0", "poll1", "submit", "poll2", "poll3"]


async def test_a_waiter_canceled_gives_its_turn_to_the_next() -> None:
    gate = Gate(1)
    hold = asyncio.Event()
    got: list[str] = []

    async def request(name: str) -> None:
        async with gate.turn():
            got.append(name)
            await hold.wait()

    first = asyncio.create_task(request("a"))
    await asyncio.sleep(0)
    canceled = asyncio.create_task(request("b"))
    last = asyncio.create_task(request("c"))
    await asyncio.sleep(0)
    canceled.cancel()
    hold.set()
    await asyncio.gather(first, last)
    assert canceled.cancelled() and got == ["a", "c"]
    # Every slot is free again.
    async with gate.turn():
        pass
    assert gate._free == 1
