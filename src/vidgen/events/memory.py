"""The in-process event bus (embedded default, and the twin used by unit tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from vidgen.events.bus import LocalFanout, Subscription


class MemoryBus:
    """Delivers to subscribers in this process only."""

    def __init__(self) -> None:
        self._fanout = LocalFanout()
        self.published = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.published += 1
        self._fanout.dispatch(channel, message)

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        for channel, message in items:
            await self.publish(channel, message)

    @asynccontextmanager
    async def subscribe(
        self,
        *channels: str,
        maxsize: int = 256,
        on_message: Callable[[Any], None] | None = None,
    ) -> AsyncIterator[Subscription]:
        sub = Subscription(tuple(channels), maxsize, on_message)
        self._fanout.add(sub)
        try:
            yield sub
        finally:
            self._fanout.remove(sub)

    async def ping(self) -> bool:
        return True

    @property
    def subscriber_count(self) -> int:
        return self._fanout.count
