"""Timed waits that a cancellation always ends (``vidgen.eventloop.wait_event``)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from vidgen.eventloop import wait_event

SRC = Path(__file__).resolve().parents[1] / "src" / "vidgen"


async def _cancel_as_woken(wait: object, rounds: int = 200) -> int:
    """Run a wake-up loop ``rounds`` times, each canceled right after its event is set
    (0, 1 or 2 loop turns apart); the number of loops the cancellation did not end."""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            event.clear()
            await wait(event)  # type: ignore[operator]

    survived = 0
    for turn in range(rounds):
        task = asyncio.create_task(loop())
        for _ in range(3):
            await asyncio.sleep(0)
        event.set()
        for _ in range(turn % 3):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        if not done:
            survived += 1
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return survived


async def test_a_loop_waiting_for_a_wake_up_ends_when_canceled_as_it_is_woken() -> None:
    assert await _cancel_as_woken(lambda event: wait_event(event, 10)) == 0


async def test_wait_event_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
    assert await wait_event(event, None) is True  # already set: at once


def test_no_timed_wait_uses_asyncio_wait_for() -> None:
    """On Python 3.11 ``asyncio.wait_for`` returns normally when its task is canceled as the
    awaited thing completes, so a loop of such waits can outlive its cancellation (this hung
    the webhook delivery loop's shutdown under load); ``asyncio.timeout`` does not."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "wait_for"
                and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []
