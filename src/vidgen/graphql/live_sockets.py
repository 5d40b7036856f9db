"""The sockets side of the live fan-out (:mod:`.live_fanout`): one :class:`Record` per
subscription it serves, and per socket one :class:`Conn` that writes the queued messages
in order and re-checks the socket's token.

Writing: the messages a socket gets during one pass of the event loop are gathered, and at
the end of the pass (one callback for all sockets, :meth:`.live_fanout.FanOut.flush_soon`)
written pre-framed in one transport write (``web/ws_direct.py``: uvicorn's websockets-sansio
socket, no compression). When the socket is not taking writes (the transport's buffer is
over its high-water mark, where uvicorn's ``send`` would wait), or another server or a
compressed socket is behind the scope's send, they go to a backlog that a writer task
drains (pre-framed once writable again, else one ASGI send each). A record counts its
messages in that backlog; the fan-out cuts it off at ``ws_subscription_queue`` of them.
The server's ASGI send is in the scope (``web/app.py`` puts it there).
The token is re-checked every ``ws_reauth_seconds`` by one timer per socket; a revoked
token ends the socket's records with UNAUTHENTICATED, as a subscription task's own check
does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from vidgen import errors, metrics
from vidgen.graphql.context import REVOKED
from vidgen.graphql.errors import format_error, log_errors
from vidgen.graphql.observability import operation_label
from vidgen.web import ws_direct
from vidgen.web.ws_direct import DirectSocket, frame_head

if TYPE_CHECKING:
    from vidgen.graphql.compiled.plan import EventPlan
    from vidgen.graphql.live_fanout import FanOut

logger = logging.getLogger(__name__)

# As the view encodes every message (compact, no circular-reference bookkeeping).
JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class Record:
    """One subscription served here (see the module docstring)."""

    __slots__ = (
        "conn",
        "id",
        "last",
        "operation_name",
        "pending",
        "plan",
        "prefix",
        "query",
        "state",
        "variables",
        "video_id",
    )

    def __init__(
        self,
        conn: Conn,
        op_id: str,
        plan: EventPlan,
        video_id: int,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> None:
        self.conn = conn
        self.id = op_id
        self.plan = plan
        self.video_id = video_id
        self.query = query
        self.operation_name = operation_name
        self.variables = variables
        self.last = -1  # the version last sent
        self.pending = 0  # messages queued on its socket, not yet written
        self.state = JOINING
        prefix = '{"id":' + JSON.encode(op_id) + ',"type":"next","payload":{"data":'
        self.prefix = prefix.encode()


JOINING, LIVE, ENDED, CANCELLED = 0, 1, 2, 3


def error_message(op_id: str, exc: Exception, operation_name: str | None) -> str:
    """An error raised mid-stream, as Strawberry sends it: a ``next`` whose payload is
    ``data: null`` and the formatted error (then ``complete``)."""
    error = GraphQLError(str(exc), original_error=exc)
    log_errors([error], lambda: operation_name)
    formatted = format_error(error)
    code = (formatted.extensions or {}).get("code", "INTERNAL")
    label = operation_label(operation_name)
    metrics.GRAPHQL_ERRORS.labels(operation=label, code=str(code)).inc()
    payload = {"data": None, "errors": [formatted.formatted]}
    return JSON.encode({"id": op_id, "type": "next", "payload": payload})


class Conn:
    """One socket's records, its ordered writer and its token re-checks."""

    def __init__(self, handler: Any, fanout: FanOut) -> None:
        self.handler = handler
        self.fanout = fanout
        self.context = handler.context
        self.records: dict[str, Record] = {}
        self.out: list[tuple[Record | None, bytes]] = []  # this loop pass's messages
        self.queue: deque[tuple[Record | None, bytes]] = deque()  # the backlog
        self._send: Any = None  # the server's send, and its direct socket (or None)
        self._socket: DirectSocket | None = None
        self.writer: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.gone = False
        settings = fanout.settings
        self.maxsize = int(settings.ws_subscription_queue)
        self.reauth_every = float(settings.ws_reauth_seconds)

    # --- writing -----------------------------------------------------------------------------

    def put(self, record: Record | None, payload: bytes) -> None:
        """Queue one message (its UTF-8 text): written at the end of this loop pass with
        the socket's other messages of the pass, or, behind a backlog, by the writer."""
        if self.gone:
            return
        if self.writer is None:
            out = self.out
            if not out:
                self.fanout.flush_soon(self)
            out.append((record, payload))
            return
        if record is not None:
            record.pending += 1
        self.queue.append((record, payload))

    def flush(self) -> None:
        """Write this pass's messages: pre-framed in one transport write when the socket
        takes them now (web/ws_direct.py), else through the writer (a backlog)."""
        out = self.out
        if not out:
            return
        self.out = []
        if self.gone:
            return
        if self.writer is None:
            direct = self._direct()
            if direct is not None and direct.writable():
                parts = []
                for record, payload in out:
                    if record is None or record.state != CANCELLED:
                        parts.append(frame_head(len(payload)))
                        parts.append(payload)
                direct.write(b"".join(parts))
                self.fanout.written += len(parts) >> 1
                return
        queue = self.queue
        for record, payload in out:
            if record is not None:
                record.pending += 1
            queue.append((record, payload))
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    def _direct(self) -> DirectSocket | None:
        send = self.handler.websocket.ws.scope.get("vidgen.ws_send")  # web/app.py
        if send is not self._send:
            self._send = send
            self._socket = ws_direct.direct_socket(send)
        socket = self._socket
        if socket is not None and not socket.open():
            socket = self._socket = None
        return socket

    async def _write(self) -> None:
        """Write the backlog in order: pre-framed once the socket takes writes again, else
        (another server, a closing socket) one ASGI send per message."""
        websocket = self.handler.websocket.ws
        queue = self.queue
        try:
            while queue:
                direct = self._direct()
                if direct is not None:
                    if not direct.writable():
                        await direct.wait_writable()
                        continue
                    parts = []
                    while queue:
                        record, payload = queue.popleft()
                        if record is not None:
                            record.pending -= 1
                            if record.state == CANCELLED:
                                continue
                        parts.append(frame_head(len(payload)))
                        parts.append(payload)
                    direct.write(b"".join(parts))
                    self.fanout.written += len(parts) >> 1
                    continue
                record, payload = queue.popleft()
                if record is not None and record.state == CANCELLED:
                    record.pending -= 1
                    continue
                raw = websocket.scope.get("vidgen.ws_send")  # the server's send (web/app.py)
                if raw is None:
                    await websocket.send_text(payload.decode())
                else:
                    await raw({"type": "websocket.send", "text": payload.decode()})
                if record is not None:  # counted until written: queued or being written
                    record.pending -= 1
                self.fanout.written += 1
        except Exception as exc:  # noqa: BLE001 - the socket's loop sees the close and ends us
            self.gone = True
            queue.clear()
            self.handler.note_send_failure(exc)
        finally:
            self.writer = None
        if self.out:  # put behind the backlog while it was written
            self.fanout.flush_soon(self)

    # --- the life of a record ---------------------------------------------------------------

    def add(self, record: Record) -> None:
        self.records[record.id] = record
        metrics.ACTIVE_SUBSCRIPTIONS.labels(field="videoUpdated").inc()
        if self.timer is None and self.reauth_every > 0:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.reauth_every, self._recheck_due)

    def end(self, record: Record, message: str | None = None, *, cancel: bool = False) -> None:
        """Finish a record: ``message`` (an error) then ``complete`` are sent, unless the
        client cancelled it (its unwritten messages are then dropped)."""
        if record.state in (ENDED, CANCELLED):
            return
        joined = record.state != JOINING or cancel
        record.state = CANCELLED if cancel else ENDED
        if self.records.pop(record.id, None) is not None:
            metrics.ACTIVE_SUBSCRIPTIONS.labels(field="videoUpdated").dec()
        self.handler.fast_ended(record.id)
        channel = self.fanout.channels.get(record.video_id)
        if channel is not None:
            channel.forget(record)
        if not cancel:
            if message is not None:
                self.put(None, message.encode())
            self.put(None, JSON.encode({"id": record.id, "type": "complete"}).encode())
            if joined:
                label = operation_label(record.operation_name)
                metrics.GRAPHQL_OPERATIONS.labels(operation=label, type="subscription").inc()
        if not self.records and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def hand_off(self, record: Record) -> None:
        """Start the subscription as a Strawberry operation instead (nothing was sent)."""
        if record.state != JOINING:
            return
        record.state = ENDED
        if self.records.pop(record.id, None) is not None:
            metrics.ACTIVE_SUBSCRIPTIONS.labels(field="videoUpdated").dec()
        self.fanout.handed_off += 1
        self.handler.start_operation(
            record.id, record.query, record.variables, record.operation_name
        )

    def close(self) -> None:
        """The socket is gone: every record ends, nothing more is written."""
        for record in tuple(self.records.values()):
            self.end(record, cancel=True)
        self.gone = True
        self.queue.clear()
        self.out.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # --- token re-checks --------------------------------------------------------------------

    def _recheck_due(self) -> None:
        self.timer = None
        if self.records and not self.gone:
            task = asyncio.get_running_loop().create_task(self._recheck())
            self.fanout.tasks.add(task)
            task.add_done_callback(self.fanout.tasks.discard)

    async def _recheck(self) -> None:
        again = self.reauth_every
        try:
            viewer = await self.context.reauthenticate()
        except Exception:  # noqa: BLE001 - a database blip must not drop everyone
            logger.warning(
                "token re-check failed; keeping the subscription, retrying soon",
                exc_info=True,
                extra={"action": "ws_reauth_failed"},
            )
            again = min(self.reauth_every, 1.0)
        else:
            if viewer is None:
                exc = errors.Unauthenticated(self.context.auth_error or REVOKED)
                for record in tuple(self.records.values()):
                    if record.state == LIVE:
                        self.end(record, error_message(record.id, exc, record.operation_name))
        if self.records and not self.gone and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(again, self._recheck_due)
