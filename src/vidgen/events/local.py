"""Local delivery, shared by both buses: each subscriber's bounded queue, and the registry
of channels to subscriptions that a published (or received) message is handed to.

A subscription is a bounded local queue. A subscriber that cannot keep up is not allowed to
slow the hub or grow memory: its queue is closed with :data:`OVERFLOW` and it must resync.
After the bus reconnects (Redis restarted) every open subscription receives :data:`RESYNC`,
meaning "events may have been missed: re-read the current state". At shutdown it receives
:data:`CLOSED`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from vidgen import metrics

logger = logging.getLogger(__name__)


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


RESYNC = _Signal("RESYNC")
OVERFLOW = _Signal("OVERFLOW")
CLOSED = _Signal("CLOSED")  # the server is shutting down: finish cleanly


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind and was dropped; reconnect to get the state."""


class BusSubscription:
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
        self.maxsize = maxsize
        # A bare deque and at most one waiting future: an asyncio.Queue (three deques, an
        # Event) per subscriber was a tenth of a subscription's memory, and is idle nearly
        # always. Made on first use.
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.on_message = on_message
        self.overflowed = False
        self.closed = False

    @property
    def queue(self) -> _Backlog:
        """What is waiting to be read, as a queue's non-blocking side (``empty``, ``qsize``,
        ``get_nowait``): for callers that drain without waiting."""
        return _Backlog(self)

    def _push(self, message: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _clear(self) -> None:
        if self._items is not None:
            self._items.clear()

    def deliver(self, message: Any) -> None:
        """Never blocks: on a full queue the subscriber is marked overflowed and cut off."""
        if self.overflowed or self.closed:
            return
        if self.on_message is not None:
            self._call(message)
            return
        if self._items is not None and 0 < self.maxsize <= len(self._items):
            self.overflowed = True
            # Drop what is queued so the reader learns at once why it stops.
            self._clear()
            self._push(OVERFLOW)
            return
        self._push(message)

    def close(self) -> None:
        """End this subscription from outside (shutdown): the reader gets :data:`CLOSED`
        next, and nothing after it."""
        if self.closed or self.overflowed:
            return
        self.closed = True
        if self.on_message is not None:
            self._call(CLOSED)
            return
        self._clear()
        self._push(CLOSED)

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
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = self._items.popleft()
        if message is OVERFLOW:
            raise SubscriberOverflow("subscriber too slow: dropped; resubscribe for the state")
        return message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            yield await self.get()


class _Backlog:
    """A subscription's waiting messages, read without waiting (see ``queue``)."""

    __slots__ = ("_sub",)

    def __init__(self, sub: BusSubscription) -> None:
        self._sub = sub

    def qsize(self) -> int:
        return len(self._sub._items or ())

    def empty(self) -> bool:
        return not self._sub._items

    def get_nowait(self) -> Any:
        if not self._sub._items:
            raise asyncio.QueueEmpty
        return self._sub._items.popleft()


class LocalSubscribers:
    """Channel → local subscriptions, shared by both buses: a published (or received)
    message is handed to each subscription of its channel here."""

    def __init__(self) -> None:
        self._subs: dict[str, set[BusSubscription]] = {}
        self.overflows = 0  # subscribers dropped for being too slow (a counter for metrics)

    def add(self, sub: BusSubscription) -> None:
        for channel in sub.channels:
            self._subs.setdefault(channel, set()).add(sub)

    def remove(self, sub: BusSubscription) -> None:
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

    def _deliver(self, sub: BusSubscription, message: Any) -> None:
        if sub.overflowed:
            return
        sub.deliver(message)
        if sub.overflowed:
            self.overflows += 1
            metrics.BUS_DROPPED_SUBSCRIBERS.inc()

    @property
    def count(self) -> int:
        return len({id(s) for subs in self._subs.values() for s in subs})


class SubscribeLocally:
    """``subscribe`` for a bus that hands messages to local subscribers through its
    :class:`LocalSubscribers` (both buses: the Redis bus keeps one pattern subscription per
    process, so a local subscription is live as soon as it is made)."""

    _local: LocalSubscribers

    def subscribe(
        self,
        *channels: str,
        maxsize: int = 256,
        on_message: Callable[[Any], None] | None = None,
    ) -> AbstractAsyncContextManager[BusSubscription]:
        return self._subscription(tuple(channels), maxsize, on_message)

    @asynccontextmanager
    async def _subscription(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        on_message: Callable[[Any], None] | None,
    ) -> AsyncIterator[BusSubscription]:
        sub = BusSubscription(channels, maxsize, on_message)
        self._local.add(sub)
        try:
            yield sub
        finally:
            self._local.remove(sub)
