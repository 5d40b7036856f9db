"""Local delivery, shared by both buses: one bounded log per channel with a read position
per subscriber, and the registry of channels that a published (or received) message is
handed to.

A message for a channel is appended once to that channel's log, whatever the number of
subscribers; each subscriber keeps only the index of the next entry it will read. Only the
subscribers that had read everything (they are the ones waiting) are woken. The log keeps
the entries that some subscriber has not read yet, and no more.

Each subscriber is bounded (``maxsize`` unread entries). One that cannot keep up is not
allowed to slow the others or grow memory: it is cut off (its reader gets
:class:`SubscriberOverflow`, and must resync) and stops holding the log back.
After the bus reconnects (Redis restarted) every open subscription receives :data:`RESYNC`,
meaning "events may have been missed: re-read the current state". At shutdown it receives
:data:`CLOSED`.
"""

from __future__ import annotations

import asyncio
import itertools
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


class _ChannelLog:
    """One channel's unread entries and where its readers are.

    ``log[i]`` is entry ``base + i``, a pair (sequence number, message): the sequence is
    shared by every channel of one :class:`LocalSubscribers`, so a subscription of several
    channels reads their entries in the order they were dispatched. ``at`` maps an entry
    index to the readers whose next entry it is; ``head`` is the index the next append gets.
    """

    __slots__ = ("at", "base", "callbacks", "limits", "log")

    def __init__(self) -> None:
        self.log: deque[tuple[int, Any]] = deque()
        self.base = 0
        self.at: dict[int, set[BusSubscription]] = {}
        self.limits: dict[int, int] = {}  # a reader bound -> how many readers have it
        self.callbacks: set[BusSubscription] = set()

    @property
    def head(self) -> int:
        return self.base + len(self.log)

    def __bool__(self) -> bool:
        return bool(self.at) or bool(self.callbacks)

    def readers(self) -> int:
        return sum(len(readers) for readers in self.at.values())

    def join(self, sub: BusSubscription) -> int:
        head = self.head
        self.at.setdefault(head, set()).add(sub)
        self.limits[sub.maxsize] = self.limits.get(sub.maxsize, 0) + 1
        return head

    def leave(self, sub: BusSubscription, position: int) -> None:
        readers = self.at.get(position)
        if readers is None or sub not in readers:
            return
        readers.discard(sub)
        left = self.limits[sub.maxsize] - 1
        if left:
            self.limits[sub.maxsize] = left
        else:
            del self.limits[sub.maxsize]
        if not readers:
            del self.at[position]
            self._trim()

    def move(self, sub: BusSubscription, old: int, new: int) -> None:
        readers = self.at[old]
        readers.discard(sub)
        self.at.setdefault(new, set()).add(sub)
        if not readers:
            del self.at[old]
            if old == self.base:
                self._trim()

    def _trim(self) -> None:
        """Forget the entries that no reader has still to read."""
        log, at = self.log, self.at
        while log and self.base not in at:
            log.popleft()
            self.base += 1

    def entry(self, index: int) -> tuple[int, Any]:
        return self.log[index - self.base]

    def append(self, seq: int, message: Any) -> list[BusSubscription]:
        """Add one entry; return the readers it pushes past their bound (to be cut off).
        Wakes the readers that were waiting for it."""
        head = self.head
        waiting = self.at.get(head)
        if not self.at:
            return []  # nobody reads: nothing to keep
        self.log.append((seq, message))
        if waiting:
            for sub in waiting:
                sub._wake()
        over: list[BusSubscription] = []
        for limit in self.limits:
            if limit <= 0:
                continue
            # A reader that already had ``limit`` unread entries now has one too many.
            behind = self.at.get(head - limit)
            if behind:
                over.extend(sub for sub in behind if sub.maxsize == limit)
        return over


class BusSubscription:
    """A bounded position in the log of each of its channels; or, with ``on_message``, each
    message (a dict, RESYNC, then CLOSED at the end) is handed to that function as it is
    dispatched, on the event loop, and nothing is kept (:meth:`get` refuses). It must be
    quick; an exception it raises is logged and goes no further."""

    __slots__ = (
        "_closed_read",
        "_logs",
        "_positions",
        "_seq",
        "_waiter",
        "channels",
        "closed",
        "maxsize",
        "on_message",
        "overflowed",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        on_message: Callable[[Any], None] | None = None,
    ) -> None:
        self.channels = channels
        self.maxsize = maxsize
        self.on_message = on_message
        self.overflowed = False
        self.closed = False
        self._closed_read = False
        # The logs of its channels and, for each, the index of the next entry to read.
        self._logs: list[_ChannelLog] = []
        self._positions: list[int] = []
        self._seq = -1  # the sequence number of the last entry read
        self._waiter: asyncio.Future[None] | None = None

    @property
    def queue(self) -> _Backlog:
        """What is waiting to be read, as a queue's non-blocking side (``empty``, ``qsize``,
        ``get_nowait``): for callers that drain without waiting."""
        return _Backlog(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _attach(self, log: _ChannelLog) -> None:
        self._logs.append(log)
        self._positions.append(log.join(self))

    def _detach(self) -> None:
        for log, position in zip(self._logs, self._positions, strict=True):
            log.leave(self, position)
        self._logs = []
        self._positions = []

    def _cut_off(self) -> None:
        """Too slow: stop reading, free what it held back, tell its reader at once."""
        self.overflowed = True
        self._detach()
        self._wake()

    def _unread(self) -> int:
        if self.overflowed or self.closed:
            return 0
        return sum(
            log.head - position for log, position in zip(self._logs, self._positions, strict=True)
        )

    def _take(self) -> Any:
        """The next unread message, oldest first across its channels; ``_NOTHING`` if none."""
        while True:
            best = -1
            best_seq = 0
            for i, log in enumerate(self._logs):
                position = self._positions[i]
                if position < log.head:
                    seq = log.entry(position)[0]
                    if best < 0 or seq < best_seq:
                        best, best_seq = i, seq
            if best < 0:
                return _NOTHING
            log = self._logs[best]
            position = self._positions[best]
            message = log.entry(position)[1]
            self._positions[best] = position + 1
            log.move(self, position, position + 1)
            if best_seq == self._seq:
                continue  # the same broadcast (RESYNC) heard on another of its channels
            self._seq = best_seq
            return message

    def close(self) -> None:
        """End this subscription from outside (shutdown): the reader gets :data:`CLOSED`
        next, and nothing after it."""
        if self.closed or self.overflowed:
            return
        self.closed = True
        if self.on_message is not None:
            self._call(CLOSED)
            return
        self._detach()
        self._wake()

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

    def _next_now(self) -> Any:
        """The next message without waiting: OVERFLOW or CLOSED once, else an entry, else
        ``_NOTHING``."""
        if self.overflowed or self.closed:
            if self._closed_read:
                return _NOTHING
            self._closed_read = True
            return OVERFLOW if self.overflowed else CLOSED
        return self._take()

    async def get(self) -> Any:
        """Next message (a dict, RESYNC, CLOSED). Raises SubscriberOverflow when dropped."""
        if self.on_message is not None:
            raise TypeError("a callback subscription queues nothing: there is nothing to get")
        while True:
            if self.overflowed:
                raise SubscriberOverflow("subscriber too slow: dropped; resubscribe for the state")
            message = self._next_now()
            if message is not _NOTHING:
                return message
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            yield await self.get()


_NOTHING = _Signal("NOTHING")


class _Backlog:
    """A subscription's waiting messages, read without waiting (see ``queue``)."""

    __slots__ = ("_sub",)

    def __init__(self, sub: BusSubscription) -> None:
        self._sub = sub

    def qsize(self) -> int:
        return self._sub._unread()

    def empty(self) -> bool:
        return self._sub._unread() == 0

    def get_nowait(self) -> Any:
        message = self._sub._take() if self._sub._unread() else _NOTHING
        if message is _NOTHING:
            raise asyncio.QueueEmpty
        return message


class LocalSubscribers:
    """Channel → its log and local subscriptions, shared by both buses: a published (or
    received) message is appended once to its channel's log here."""

    def __init__(self) -> None:
        self._logs: dict[str, _ChannelLog] = {}
        self._seq = itertools.count()
        self.overflows = 0  # subscribers dropped for being too slow (a counter for metrics)

    def add(self, sub: BusSubscription) -> None:
        for channel in sub.channels:
            log = self._logs.get(channel)
            if log is None:
                log = self._logs[channel] = _ChannelLog()
            if sub.on_message is not None:
                log.callbacks.add(sub)
            else:
                sub._attach(log)

    def remove(self, sub: BusSubscription) -> None:
        sub._detach()
        for channel in sub.channels:
            log = self._logs.get(channel)
            if log is None:
                continue
            log.callbacks.discard(sub)
            if not log:
                del self._logs[channel]

    def has(self, channel: str) -> bool:
        return channel in self._logs

    def dispatch(self, channel: str, message: Any) -> int:
        """Hand ``message`` to every subscriber of ``channel``; returns how many."""
        log = self._logs.get(channel)
        if log is None:
            return 0
        count = log.readers() if log.at else 0
        self._append(log, next(self._seq), message)
        return count + len(log.callbacks)

    def broadcast(self, message: Any) -> None:
        """Hand ``message`` (e.g. RESYNC) to every subscriber once."""
        seq = next(self._seq)
        called: set[int] = set()
        for log in tuple(self._logs.values()):
            self._append(log, seq, message, called)

    def _append(
        self, log: _ChannelLog, seq: int, message: Any, called: set[int] | None = None
    ) -> None:
        for sub in tuple(log.callbacks):
            if called is not None:
                if id(sub) in called:
                    continue
                called.add(id(sub))
            if not sub.closed:
                sub._call(message)
        for sub in log.append(seq, message):
            if not sub.overflowed:
                sub._cut_off()
                self.overflows += 1
                metrics.BUS_DROPPED_SUBSCRIBERS.inc()

    @property
    def count(self) -> int:
        subs: set[int] = set()
        for log in self._logs.values():
            subs.update(id(s) for s in log.callbacks)
            for readers in log.at.values():
                subs.update(id(s) for s in readers)
        return len(subs)


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
