"""The event bus: one small interface, an in-process and a Redis implementation.

Events describe committed changes and are published only after the commit. Pub/sub is
at-most-once: subscribers that need completeness re-read the database (the status history is
the log). Channel names come from the functions below and nowhere else.

A subscription is a bounded local queue. A subscriber that cannot keep up is not allowed to
slow the hub or grow memory: its queue is closed with :data:`OVERFLOW` and it must resync.
After the bus reconnects (Redis restarted) every open subscription receives :data:`RESYNC`,
meaning "events may have been missed: re-read the current state".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from vidgen import metrics

logger = logging.getLogger(__name__)

PREFIX = "vidgen:"
WAKEUP_CHANNEL = f"{PREFIX}wakeup"


def video_channel(video_id: int) -> str:
    return f"{PREFIX}video:{video_id}"


def owner_channel(owner_id: int) -> str:
    return f"{PREFIX}owner:{owner_id}"


def job_channel(video_id: int) -> str:
    """Nudges for the worker running one job (cancel requested, webhook arrived)."""
    return f"{PREFIX}job:{video_id}"


@dataclass(frozen=True, slots=True)
class VideoEvent:
    """A committed change of one video: small, the subscriber loads the rest."""

    video_id: int
    owner_id: int
    version: int
    status: str
    progress: float
    event_id: int | None = None  # event-log row id (the resume cursor), None for progress
    project_id: int | None = None
    story_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, in declaration order (``asdict`` without its deep copy:
        every field is a scalar)."""
        return {name: getattr(self, name) for name in _VIDEO_EVENT_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoEvent:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


_VIDEO_EVENT_FIELDS = tuple(VideoEvent.__dataclass_fields__)


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


RESYNC = _Signal("RESYNC")
OVERFLOW = _Signal("OVERFLOW")
CLOSED = _Signal("CLOSED")  # the server is shutting down: finish cleanly


class PublishFailed(Exception):
    """A message could not be published (the bus is unreachable). Raised only to callers
    that ask for it (:func:`publish_or_raise`); ``publish`` logs, counts and drops."""


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind and was dropped; reconnect to get the state."""


class Subscription:
    """A bounded queue of messages for one local subscriber; or, with ``on_message``, each
    message (a dict, RESYNC, then CLOSED at the end) is handed to that function as it is
    dispatched, on the event loop, and nothing is queued (:meth:`get` refuses). It must be
    quick; an exception it raises is logged and goes no further."""

    def __init__(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        on_message: Callable[[Any], None] | None = None,
    ) -> None:
        self.channels = channels
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self.on_message = on_message
        self.overflowed = False
        self.closed = False

    def deliver(self, message: Any) -> None:
        """Never blocks: on a full queue the subscriber is marked overflowed and cut off."""
        if self.overflowed or self.closed:
            return
        if self.on_message is not None:
            self._call(message)
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            # Make room for the marker so the reader learns why it stops.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(OVERFLOW)

    def close(self) -> None:
        """End this subscription from outside (shutdown): the reader gets :data:`CLOSED`
        next, and nothing after it."""
        if self.closed or self.overflowed:
            return
        self.closed = True
        if self.on_message is not None:
            self._call(CLOSED)
            return
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSED)

    def _call(self, message: Any) -> None:
        """Hand ``message`` to ``on_message``. A bug there must not reach the publisher (a
        mutation whose change is committed), the other subscribers, or the Redis reader
        (which would reconnect for ever, every subscriber of the process cut off)."""
        assert self.on_message is not None
        try:
            self.on_message(message)
        except Exception:
            logger.exception(
                "event bus: a subscriber's callback failed",
                extra={"action": "bus.callback_failed", "channels": list(self.channels)},
            )

    async def get(self) -> Any:
        """Next message (a dict, RESYNC, CLOSED). Raises SubscriberOverflow when dropped."""
        if self.on_message is not None:
            raise TypeError("a callback subscription queues nothing: there is nothing to get")
        message = await self.queue.get()
        if message is OVERFLOW:
            raise SubscriberOverflow("subscriber too slow: dropped; resubscribe for the state")
        return message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            yield await self.get()


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
    ) -> AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> bool:
        """True when the bus can deliver (readiness)."""
        ...


class LocalFanout:
    """Channel → subscriptions registry shared by both implementations."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self.overflows = 0  # subscribers dropped for being too slow (a counter for metrics)

    def add(self, sub: Subscription) -> None:
        for channel in sub.channels:
            self._subs.setdefault(channel, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        for channel in sub.channels:
            subs = self._subs.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[channel]

    def has(self, channel: str) -> bool:
        return channel in self._subs

    def dispatch(self, channel: str, message: Any) -> int:
        """Hand ``message`` to every subscriber of ``channel``; returns how many."""
        subs = self._subs.get(channel)
        if not subs:
            return 0
        for sub in tuple(subs):
            self._deliver(sub, message)
        return len(subs)

    def broadcast(self, message: Any) -> None:
        """Hand ``message`` (e.g. RESYNC) to every subscriber once."""
        seen: set[int] = set()
        for subs in tuple(self._subs.values()):
            for sub in tuple(subs):
                if id(sub) not in seen:
                    seen.add(id(sub))
                    self._deliver(sub, message)

    def _deliver(self, sub: Subscription, message: Any) -> None:
        if sub.overflowed:
            return
        sub.deliver(message)
        if sub.overflowed:
            self.overflows += 1
            metrics.BUS_DROPPED_SUBSCRIBERS.inc()

    @property
    def count(self) -> int:
        return len({id(s) for subs in self._subs.values() for s in subs})


class FanoutSubscriptions:
    """``subscribe`` for a bus that hands messages to local subscribers through its
    :class:`LocalFanout` (both buses: the Redis bus keeps one pattern subscription per
    process, so a local subscription is live as soon as it is made)."""

    _fanout: LocalFanout

    def subscribe(
        self,
        *channels: str,
        maxsize: int = 256,
        on_message: Callable[[Any], None] | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription(tuple(channels), maxsize, on_message)

    @asynccontextmanager
    async def _subscription(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        on_message: Callable[[Any], None] | None,
    ) -> AsyncIterator[Subscription]:
        sub = Subscription(channels, maxsize, on_message)
        self._fanout.add(sub)
        try:
            yield sub
        finally:
            self._fanout.remove(sub)


def video_event_items(event: VideoEvent) -> list[tuple[str, dict[str, Any]]]:
    """One video change as ``(channel, message)`` pairs: its video's and its owner's
    channels, one dict for both (the Redis bus encodes it once)."""
    payload = event.to_dict()
    return [(video_channel(event.video_id), payload), (owner_channel(event.owner_id), payload)]


async def publish_all(bus: EventBus, items: list[tuple[str, Any]]) -> None:
    """Publish ``(channel, message)`` pairs in order: in one round trip on a bus that can
    batch (``publish_many``), one by one on any other."""
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


def create_bus(redis_url: str | None, *, namespace: str | None = None) -> EventBus:
    """The Redis bus when a URL is set, else the in-process one. ``namespace`` prefixes the
    Redis channels so deployments sharing one Redis never hear each other."""
    if redis_url:
        from vidgen.events.redis import RedisBus

        return RedisBus(redis_url, namespace=namespace)
    from vidgen.events.memory import MemoryBus

    return MemoryBus()
