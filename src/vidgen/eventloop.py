"""Which asyncio event loop a vidgen process runs on (``VIDGEN_EVENT_LOOP``).

``auto`` (the default) takes uvloop when it is installed (it comes with ``uvicorn[standard]``,
one of vidgen's dependencies) and the standard loop otherwise: the choice uvicorn itself
makes for ``vidgen serve``, so the embedded worker and ``vidgen worker`` run their jobs on
the same loop. uvloop's callbacks and socket I/O cost less CPU per job (measured with
``bench/engine_bench.py``); ``asyncio`` forces the standard loop (e.g. to rule the loop out
when chasing a bug), ``uvloop`` requires uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from vidgen import errors

T = TypeVar("T")

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def loop_factory(choice: EventLoopChoice = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of the chosen kind.

    Raises:
        ConfigurationError: ``uvloop`` was asked for and is not installed.
    """
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise errors.ConfigurationError(
                "VIDGEN_EVENT_LOOP=uvloop, but uvloop is not installed"
            ) from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until ``event`` is set, for ``seconds`` at most (None: no limit); True when set.

    Every timed wait in vidgen goes through :func:`asyncio.timeout`, never
    ``asyncio.wait_for``: on Python 3.11, ``wait_for`` returns normally when the task
    running it is canceled just as the awaited thing completes, and a loop that waits for
    a wake-up this way then never ends (``tests/test_eventloop.py`` shows it).
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
