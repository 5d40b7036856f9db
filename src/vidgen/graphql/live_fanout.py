"""``videoUpdated`` served outside Strawberry's per-operation loop: one task per watched
video, one small record per subscription, one writer per socket.

The graphql-transport-ws handler (:mod:`.view`) hands a ``subscribe`` here when its
document has a compiled event plan (:meth:`~.compiled.CompiledPlans.event_plan`) for
``videoUpdated`` and its ``id`` is given plainly (a literal, or a variable holding a
string). Everything else, and every subscription whose start would answer an error (no
viewer, a video it may not see, a value the plan cannot build), runs as a Strawberry
operation exactly as before: :meth:`.live_sockets.Conn.hand_off` starts that operation, which checks
and answers everything itself. So errors at the start are Strawberry's own.

What one subscription costs here is a :class:`Record` (its id, the plan, the last
version it was sent, a count of its messages not yet written). Per watched video, one
:class:`_Channel` holds the records and one bus callback subscription; its task handles
the channel's messages in order, as each subscriber's loop in :mod:`.subscriptions`
does (version filter, gap repair from the status history, RESYNC, terminal status,
shutdown), but for all its records at once: each distinct (plan, viewer scope, version)
is built and encoded once, and each record's ``next`` is that text with its id in front.
A channel serves up to :data:`ROUND` queued events per turn (one state load for them);
per socket, one :class:`.live_sockets.Conn` gathers the turn's messages and writes them
at the end of the loop pass, pre-framed in one transport write (``web/ws_direct.py``), or
from a backlog when the socket is not taking writes. A record with ``ws_subscription_queue``
messages in that backlog is dropped with the "fell behind" error, as a slow reader of the
bus is; the channel never waits for a socket. The socket's token is re-checked every
``ws_reauth_seconds`` (one check per socket, shared per token): a revoked token ends the
socket's records with UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from graphql import IntValueNode, StringValueNode, VariableNode

from vidgen import errors, metrics, models
from vidgen.events.channels import video_channel
from vidgen.events.local import CLOSED, RESYNC
from vidgen.graphql import guards, types
from vidgen.graphql.compiled import plans_for
from vidgen.graphql.compiled.plan import EventPlan, Request
from vidgen.graphql.compiled.values import Fallback
from vidgen.graphql.live_sockets import JOINING, JSON, LIVE, Conn, Record, error_message
from vidgen.services import videos as video_service

if TYPE_CHECKING:
    from vidgen.graphql.subscriptions import _Shared

logger = logging.getLogger(__name__)

# A channel serves at most this many queued messages before the other channels' turn: in a
# burst, the messages of a round share a state load and their sockets' writes.
ROUND = 32


def video_id_of(plan: EventPlan, variables: dict[str, Any] | None) -> int | None:
    """The video a ``videoUpdated`` plan watches with these variables, or None: the
    subscription goes to Strawberry (another field, an id given some other way, a bad id)."""
    if plan.field != "videoUpdated" or len(plan.arguments) != 1:
        return None
    (argument,) = plan.arguments
    node = argument.value
    value: Any
    if isinstance(node, StringValueNode | IntValueNode):
        value = node.value
    elif isinstance(node, VariableNode) and variables:
        value = variables.get(node.name.value)
        if type(value) is int:
            value = str(value)
    else:
        return None
    if argument.name.value != "id" or type(value) is not str:
        return None
    if variables and guards.find_bad_text(None, variables) is not None:
        return None
    try:
        return types.decode_id(value, "Video") or None
    except errors.VidgenError:
        return None


class _Channel:
    """The records watching one video, and the task that serves its messages in order."""

    def __init__(self, fanout: FanOut, video_id: int) -> None:
        self.fanout = fanout
        self.video_id = video_id
        self.records: dict[int, Record] = {}  # id(record) -> record, live ones
        self.joining: list[Record] = []
        self.inbox: deque[Any] = deque()
        self.wake: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def add(self, record: Record) -> None:
        self.joining.append(record)
        self._kick()

    def on_message(self, message: Any) -> None:
        self.inbox.append(message)
        self._kick()

    def _kick(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
        elif self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def _run(self) -> None:
        fanout = self.fanout
        shared = fanout.shared
        subscription = fanout.bus.subscribe(
            video_channel(self.video_id), on_message=self.on_message
        )
        sub = await subscription.__aenter__()
        shared.active.hold(sub)
        try:
            while self.records or self.joining:
                if self.joining:
                    batch, self.joining = self.joining, []
                    await self._join(batch)
                elif self.inbox:
                    await self._events()
                    await asyncio.sleep(0)  # other channels, and the writes, between rounds
                else:
                    self.wake = asyncio.get_running_loop().create_future()
                    await self.wake
                    self.wake = None
        except Exception as exc:
            logger.exception("live fan-out failed", extra={"action": "ws_fanout_failed"})
            for record in (*self.records.values(), *self.joining):
                record.conn.end(record, error_message(record.id, exc, record.operation_name))
        finally:
            if fanout.channels.get(self.video_id) is self:
                del fanout.channels[self.video_id]
            shared.active.release(sub)
            await subscription.__aexit__(None, None, None)

    async def _join(self, batch: list[Record]) -> None:
        """Check each socket's token once, load the video once (registered on the bus
        first: no change falls between), send each record its first result."""
        states = self.fanout.shared.states
        since = states.tick()
        viewers: dict[int, models.User | None] = {}
        for record in batch:
            conn = record.conn
            if record.state != JOINING or id(conn) in viewers:
                continue
            try:
                await conn.context.refresh_viewer()
                viewers[id(conn)] = await conn.context.reauthenticate()
            except Exception:  # noqa: BLE001 - Strawberry's operation answers it
                viewers[id(conn)] = None
        state = await states.current(self.video_id, since=since)
        texts: dict[Hashable, bytes | None] = {}
        for record in batch:
            if record.state != JOINING:
                continue
            viewer = viewers.get(id(record.conn))
            if state is None or viewer is None or not video_service.can_view(viewer, state.video):
                record.conn.hand_off(record)
                continue
            text = self._text(record, state.video, texts)
            if text is None:
                record.conn.hand_off(record)
                continue
            record.state = LIVE
            record.last = state.version
            self.records[id(record)] = record
            self._send(record, text)
            if models.VideoStatus(state.video.status).terminal:
                self._finish(record)

    async def _events(self) -> None:
        """Up to :data:`ROUND` queued messages, in order. Bus events in a row share one
        state load, the newest's (an older event's view is built from that state, as when
        a load lands after later commits); and each socket gets the round's messages in
        one write (the flush runs after the round)."""
        inbox = self.inbox
        taken = [inbox.popleft() for _ in range(min(len(inbox), ROUND))]
        newest = 0
        for message in taken:
            if message is CLOSED or message is RESYNC:
                break
            newest = max(newest, int(message.get("version") or 0))
        found = None
        if newest and any(record.last < newest for record in self.records.values()):
            found = await self.fanout.shared.states.at_least(self.video_id, newest)
        for message in taken:
            await self._event(message, found)

    async def _event(self, message: Any, loaded: Any = None) -> None:
        states = self.fanout.shared.states
        if message is CLOSED:
            for record in tuple(self.records.values()):
                self._finish(record)
            return
        if message is RESYNC:
            found = await states.current(self.video_id, since=states.tick())
            view = found.video if found is not None else None
        else:
            version = int(message.get("version") or 0)
            if all(record.last >= version for record in self.records.values()):
                return
            found = loaded
            if found is None or found.version < version:
                found = await states.at_least(self.video_id, version)
            view = found.event_view(message) if found is not None else None
        if found is None or view is None:  # purged
            for record in tuple(self.records.values()):
                self._finish(record)
            return
        version = view.version
        terminal = models.VideoStatus(view.status).terminal
        missed: dict[int, list[models.Video]] = {}
        texts: dict[Hashable, bytes | None] = {}
        for record in tuple(self.records.values()):
            if record.last >= version or record.state != LIVE:
                continue
            views = missed.get(record.last)
            if views is None:
                views = missed[record.last] = [*found.between(record.last, version), view]
            for each in views:
                text = self._text(record, each, texts)
                if text is None:
                    await self._send_fallback(record, found, each)
                else:
                    self._send(record, text)
                if record.state != LIVE:
                    break
            record.last = version
            if terminal and record.state == LIVE:
                self._finish(record)

    def _text(
        self, record: Record, video: models.Video, texts: dict[Hashable, bytes | None]
    ) -> bytes | None:
        """The JSON of the record's ``data`` for ``video`` and the message's closing
        braces, as UTF-8: built and encoded once per (plan, viewer scope, video object);
        None when the plan cannot build it."""
        viewer = record.conn.context.viewer
        scope = None if viewer is None else ("admin" if viewer.is_admin else viewer.id)
        key = (id(record.plan), scope, id(video))
        if key in texts:
            return texts[key]
        try:
            plan = record.plan
            data = {plan.key: plan.build(video, Request(viewer, self.fanout.settings))}
            text: bytes | None = (JSON.encode(data) + "}}").encode()
            self.fanout.encodings += 1
            self.fanout.plans.events += 1  # an event answered from a compiled plan
        except Fallback:
            text = None
        except Exception:  # noqa: BLE001 - not the row the plan expects: executed instead
            logger.debug("compiled event plan failed; executing instead", exc_info=True)
            text = None
        texts[key] = text
        return text

    def _send(self, record: Record, text: bytes) -> None:
        conn = record.conn
        if record.pending >= conn.maxsize:
            self._drop(record)
            return
        conn.put(record, record.prefix + text)
        self.fanout.deliveries += 1

    async def _send_fallback(self, record: Record, state: Any, video: models.Video) -> None:
        """An event the plan cannot build: executed for this record by graphql-core, as
        Strawberry's per-event execution would, errors and all."""
        from vidgen.graphql.fanout_execute import execute_event

        payload = await execute_event(self.fanout.schema, record, state, video)
        if record.pending >= record.conn.maxsize:
            self._drop(record)
            return
        message = JSON.encode({"id": record.id, "type": "next", "payload": payload})
        record.conn.put(record, message.encode())
        self.fanout.deliveries += 1

    def _drop(self, record: Record) -> None:
        from vidgen.graphql.subscriptions import SubscriptionDropped

        self.records.pop(id(record), None)
        self.fanout.dropped += 1
        metrics.BUS_DROPPED_SUBSCRIBERS.inc()
        message = error_message(record.id, SubscriptionDropped(), record.operation_name)
        record.conn.end(record, message)

    def _finish(self, record: Record) -> None:
        self.records.pop(id(record), None)
        record.conn.end(record)

    def forget(self, record: Record) -> None:
        self.records.pop(id(record), None)
        if not self.records and not self.joining:
            self._kick()  # lets the task see it has nothing left and end


class FanOut:
    """The fan-out of one process (one per bus, like the shared video states).

    Counters (tests and benchmarks read them): ``joined`` subscriptions taken here,
    ``handed_off`` to Strawberry at their start, ``deliveries`` queued, ``written``
    messages written, ``encodings`` results encoded, ``dropped`` records too slow.
    """

    def __init__(self, bus: Any, shared: _Shared, settings: Any, schema: Any) -> None:
        self.bus = bus
        self.shared = shared
        self.settings = settings
        self.schema = schema
        self.channels: dict[int, _Channel] = {}
        # The plans of the schema's events, whose ``events`` count the answered events.
        self.plans = plans_for(getattr(schema, "_schema", schema), settings)
        self.tasks: set[asyncio.Task[None]] = set()
        self.dirty: list[Conn] = []  # sockets with messages of this loop pass
        self.flushing = False
        self.joined = self.handed_off = self.deliveries = self.written = 0
        self.encodings = self.dropped = 0

    def flush_soon(self, conn: Conn) -> None:
        """Have ``conn`` write its messages at the end of this loop pass, with every other
        socket's (one callback for all of them)."""
        self.dirty.append(conn)
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception as exc:  # noqa: BLE001 - that socket only; the others still get theirs
                conn.gone = True
                conn.handler.note_send_failure(exc)

    def connection(self, handler: Any) -> Conn:
        return Conn(handler, self)

    def join(self, record: Record) -> None:
        self.joined += 1
        record.conn.add(record)
        channel = self.channels.get(record.video_id)
        if channel is None:
            channel = self.channels[record.video_id] = _Channel(self, record.video_id)
        channel.add(record)

    def cancel(self, record: Record) -> None:
        """The client completed it."""
        record.conn.end(record, cancel=True)


_fanouts: weakref.WeakKeyDictionary[Any, dict[int, FanOut]] = weakref.WeakKeyDictionary()


def fanout_for(bus: Any, shared: _Shared, settings: Any, schema: Any) -> FanOut:
    """The :class:`FanOut` of one bus and schema (one per app in a process)."""
    per_bus = _fanouts.setdefault(bus, {})
    found = per_bus.get(id(schema))
    if found is None or found.schema is not schema:
        found = per_bus[id(schema)] = FanOut(bus, shared, settings, schema)
    return found
