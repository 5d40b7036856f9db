"""The event bus: one small interface, an in-process and a Redis implementation.

Events describe committed changes and are published only after the commit. Pub/sub is
at-most-once: subscribers that need completeness re-read the database (the status history is
the log).

- :mod:`.channels`: every channel name, and what goes on each;
- :mod:`.messages`: the messages (:class:`~.messages.VideoEvent`, the wake-up);
- :mod:`.local`: each local subscriber's bounded queue and the channel registry;
- :mod:`.batch`: several messages published as one;
- :mod:`.memory` and :mod:`.redis`: the two buses (:func:`create_bus` picks one).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from vidgen.events.local import BusSubscription


class PublishFailed(Exception):
    """A message could not be published (the bus is unreachable). Raised only to callers
    that ask for it (:func:`publish_or_raise`); ``publish`` logs, counts and drops."""


class EventBus(Protocol):
    """Publish dict messages on channels; subscribe with bounded local queues."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    def subscribe(
        self,
        *channels: str,
        maxsize: int = 256,
        on_message: Callable[[Any], None] | None = None,
    ) -> AbstractAsyncContextManager[BusSubscription]: ...

    async def ping(self) -> bool:
        """True when the bus can deliver (readiness)."""
        ...


async def publish_all(bus: EventBus, items: list[tuple[str, Any]], *, wait: bool = True) -> None:
    """Publish ``(channel, message)`` pairs in order: in one round trip on a bus that can
    batch (``publish_many``), one by one on any other.

    ``wait=False``: on a bus with an outbox (``enqueue_many``: the Redis bus) return once
    the messages are queued there, in order, rather than once they were sent (the outbox
    keeps the order and retries through an outage either way); any other bus publishes as
    usual."""
    if not wait:
        enqueue_many = getattr(bus, "enqueue_many", None)
        if enqueue_many is not None:
            enqueue_many(items)
            return
    publish_many = getattr(bus, "publish_many", None)
    if publish_many is not None:
        await publish_many(items)
        return
    for channel, message in items:
        await bus.publish(channel, message)


async def publish_or_raise(bus: EventBus, channel: str, message: dict[str, Any]) -> None:
    """Publish one message, raising :class:`PublishFailed` when it could not be sent.

    For the few callers that can still make the sender try again (a provider's webhook,
    answered 503): ``publish`` itself never raises on an outage, since the change it
    announces is committed and subscribers resync. A bus that can fail (Redis) has
    ``publish_or_raise``; any other (the in-process bus) cannot fail and publishes as usual.
    """
    publish_or_raise_ = getattr(bus, "publish_or_raise", None)
    if publish_or_raise_ is not None:
        await publish_or_raise_(channel, message)
        return
    await bus.publish(channel, message)


def create_bus(
    redis_url: str | None, *, namespace: str | None = None, **redis_options: Any
) -> EventBus:
    """The Redis bus when a URL is set, else the in-process one. ``namespace`` prefixes the
    Redis channels so deployments sharing one Redis never hear each other;
    ``redis_options`` go to :class:`~vidgen.events.redis.RedisBus` (publishing's bounds)."""
    if redis_url:
        from vidgen.events.redis import RedisBus

        return RedisBus(redis_url, namespace=namespace, **redis_options)
    from vidgen.events.memory import MemoryBus

    return MemoryBus()
