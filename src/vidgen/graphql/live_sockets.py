"""The sockets side of the live fan-out (:mod:`.live_fanout`): one :class:`Record` per
subscription it serves, and per socket one :class:`Conn` that writes the queued messages
in order and re-checks the socket's token.

A record counts its messages not yet written (queued, or being written); the fan-out cuts
it off at ``ws_subscription_queue`` of them. The writer runs as a task only while there is
something to write, with the server's own ASGI send (``web/app.py`` puts it in the scope).
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
        self.prefix = '{"id":' + JSON.encode(op_id) + ',"type":"next","payload":{"data":'


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
        self.queue: deque[tuple[Record | None, str]] = deque()
        self.writer: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.gone = False
        settings = fanout.settings
        self.maxsize = int(settings.ws_subscription_queue)
        self.reauth_every = float(settings.ws_reauth_seconds)

    # --- writing -----------------------------------------------------------------------------

    def put(self, record: Record | None, text: str) -> None:
        if self.gone:
            return
        if record is not None:
            record.pending += 1
        self.queue.append((record, text))
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        websocket = self.handler.websocket.ws
        raw = websocket.scope.get("vidgen.ws_send")  # the server's send (web/app.py)
        queue = self.queue
        try:
            while queue:
                record, text = queue.popleft()
                if record is not None and record.state == CANCELLED:
                    record.pending -= 1
                    continue
                if raw is None:
                    await websocket.send_text(text)
                else:
                    await raw({"type": "websocket.send", "text": text})
                if record is not None:  # counted until written: queued or being written
                    record.pending -= 1
                self.fanout.written += 1
        except Exception as exc:  # noqa: BLE001 - the socket's loop sees the close and ends us
            self.gone = True
            queue.clear()
            self.handler.note_send_failure(exc)
        finally:
            self.writer = None

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
                self.put(None, message)
            self.put(None, JSON.encode({"id": record.id, "type": "complete"}))
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
