"""Publishing several messages as one: one round trip instead of one per message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from vidgen.events.bus import publish_all
from vidgen.events.messages import Item, VideoEvent, video_event_items

if TYPE_CHECKING:
    from vidgen.events.bus import EventBus


class PublishBatch:
    """Messages collected while a change is made, sent together once it committed.

    On a bus that batches (``publish_many``: the Redis bus) :meth:`send` is ONE round trip
    (e.g. a new video's event and the workers' wake-up); on any other, one publish per
    message, in order.
    """

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Item] = []

    def add(self, channel: str, message: dict[str, Any]) -> None:
        self.items.append((channel, message))

    def add_video_events(self, events: Iterable[VideoEvent]) -> None:
        for event in events:
            self.items.extend(video_event_items(event))

    async def send(self, bus: EventBus | None, *, wait: bool = True) -> None:
        """Publish what was collected, in order, and forget it (call after the commit).
        ``wait=False``: return once queued in the bus's outbox (see ``publish_all``)."""
        items, self.items = self.items, []
        if bus is not None and items:
            await publish_all(bus, items, wait=wait)
