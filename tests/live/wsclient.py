"""A raw ``graphql-transport-ws`` (and legacy ``graphql-ws``) client for the live tests.

Deliberately low level: tests look at close codes, refused subprotocols and every message,
so this speaks the protocols by hand over the ``websockets`` package.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


class Closed(Exception):
    """The server closed the socket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


class GraphQLWS:
    """One socket; many operations multiplexed on it, each with its own message queue."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self.closed: asyncio.Future[Closed] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        protocol: str = TRANSPORT_WS,
        origin: str | None = None,
        open_timeout: float = 10,
    ) -> GraphQLWS:
        ws = await connect(
            url,
            subprotocols=[protocol],  # type: ignore[list-item]
            origin=origin,  # type: ignore[arg-type]
            open_timeout=open_timeout,
            max_queue=None,
        )
        return cls(ws, protocol)

    async def init(self, payload: dict[str, Any] | None = None, *, wait: float = 10) -> dict:
        """Send connection_init; return the ack. Raises Closed when the server refuses."""
        try:
            await self.ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        while True:
            try:
                message = json.loads(await asyncio.wait_for(self.ws.recv(), wait))
            except ConnectionClosed as exc:
                raise _closed(exc) from exc
            if message["type"] == "connection_ack":
                self._reader = asyncio.create_task(self._read())
                return message
            if message["type"] in {"ka", "ping"}:
                continue
            if message["type"] == "connection_error":  # legacy protocol's refusal
                raise Closed(None, json.dumps(message.get("payload")))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif kind == "ka":
                    continue
                elif "id" in message:
                    self.queues[message["id"]].put_nowait(message)
            self.closed.set_result(Closed(self.ws.close_code, self.ws.close_reason or ""))
        except ConnectionClosed as exc:
            self.closed.set_result(_closed(exc))

    async def subscribe(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        op_id: str | None = None,
        operation_name: Any = None,
    ) -> str:
        op_id = op_id or uuid.uuid4().hex[:8]
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload: dict[str, Any] = {"query": query, "variables": variables or {}}
        if operation_name is not None:
            payload["operationName"] = operation_name
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))
        return op_id

    async def stop(self, op_id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.ws.send(json.dumps({"id": op_id, "type": kind}))

    async def receive(self, op_id: str, within: float = 10) -> dict[str, Any]:
        """The next message of one operation (next/data, error, complete).

        Raises:
            Closed: the socket closed first.
        """
        getter = asyncio.ensure_future(self.queues[op_id].get())
        done, _ = await asyncio.wait(
            {getter, self.closed}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.closed in done:
            raise self.closed.result()
        raise TimeoutError(f"no message for operation {op_id} in {within}s")

    async def next_data(self, op_id: str, field: str, within: float = 10) -> dict[str, Any]:
        """The next ``data[field]`` of an operation; AssertionError on anything else."""
        message = await self.receive(op_id, within)
        assert message["type"] in {"next", "data"}, message
        payload = message["payload"]
        assert not payload.get("errors"), payload
        return payload["data"][field]

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (TimeoutError, ConnectionClosed):
                self._reader.cancel()


def _closed(exc: ConnectionClosed) -> Closed:
    frame = exc.rcvd
    return Closed(frame.code if frame else None, frame.reason if frame else "")


async def expect_error(ws: GraphQLWS, op_id: str, within: float = 10) -> dict[str, Any]:
    """The operation ends with a GraphQL error: either an ``error`` message, or a result
    carrying ``errors`` followed by ``complete`` (how an error raised mid-stream arrives).
    Returns the first error."""
    message = await ws.receive(op_id, within)
    if message["type"] == "error":
        return message["payload"][0]
    assert message["type"] in {"next", "data"}, message
    errors = message["payload"].get("errors")
    assert errors, message
    end = await ws.receive(op_id, within)
    assert end["type"] == "complete", end
    return errors[0]
