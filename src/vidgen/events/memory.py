"""The in-process event bus (embedded default, and the twin used by unit tests)."""

from __future__ import annotations

from typing import Any

from vidgen.events.local import LocalSubscribers, SubscribeLocally


class MemoryBus(SubscribeLocally):
    """Delivers to subscribers in this process only."""

    def __init__(self) -> None:
        self._local = LocalSubscribers()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self._local.dispatch(channel, message)

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        # As publish() for each, in order, without a coroutine per message (a worker
        # publishes three events per job, each to two channels).
        dispatch = self._local.dispatch
        for channel, message in items:
            dispatch(channel, message)

    async def ping(self) -> bool:
        return True

    @property
    def subscriber_count(self) -> int:
        return self._local.count
