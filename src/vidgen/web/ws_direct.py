"""Pre-framed WebSocket text messages written straight to uvicorn's transport, for the
live fan-out's writers (``graphql/live_sockets.py``).

ASGI sends one message per ``websocket.send``: for each one uvicorn's websockets-sansio
protocol builds a ``Frame``, serialises it and makes one ``transport.write`` (one system
call on an idle socket). The fan-out sends ten thousand small messages per second, so that
path was most of its CPU. Here a socket's messages of one loop pass are framed by
:func:`frame_head` (an unmasked, unfragmented, uncompressed text frame, RFC 6455 5.2) and
written with one ``transport.write``.

This reaches into uvicorn internals (the protocol object behind the ASGI ``send`` bound
method: its ``transport``, its ``writable`` event, its close state and its websockets
``ServerProtocol``), written against the versions in :data:`PINNED`. At import the
installed versions are checked; on any other version, another WebSocket implementation
(``ws="wsproto"``, the legacy ``websockets``), a wrapped ``send``, a socket with
permessage-deflate negotiated, or one that is closing, :func:`direct_socket` answers None
and the caller uses the ASGI ``send`` as before. ``tests/web/test_ws_direct.py`` checks
that both paths put the same bytes on the wire.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from websockets.protocol import State

# The versions this module was written against: (distribution, version prefix).
PINNED = (("uvicorn", "0.54."), ("websockets", "16."))

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - uvicorn without websockets
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def _pinned() -> bool:
    try:
        return all(metadata.version(name).startswith(prefix) for name, prefix in PINNED)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return False


ENABLED = WebSocketsSansIOProtocol is not None and _pinned()
_SEND = WebSocketsSansIOProtocol.send if ENABLED else None

_HEADS: dict[int, bytes] = {}


def frame_head(size: int) -> bytes:
    """The header of a final, unmasked text frame with ``size`` bytes of payload."""
    head = _HEADS.get(size)
    if head is None:
        if size < 126:
            head = bytes((0x81, size))
        elif size < 65536:
            head = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            head = b"\x81\x7f" + size.to_bytes(8, "big")
        if size < 4096:  # the usual sizes of a live message, kept (at most 4,096 entries)
            _HEADS[size] = head
    return head


class DirectSocket:
    """One open uvicorn WebSocket whose messages may be written pre-framed."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def open(self) -> bool:
        """Still open both ways: nothing closed, nothing compressed (checked per write)."""
        protocol = self._protocol
        return not (
            protocol.close_sent
            or protocol.disconnected
            or protocol.conn.state is not State.OPEN
            or protocol.transport.is_closing()
        )

    def writable(self) -> bool:
        """The transport's buffer is under its high-water mark (uvicorn's ``send`` would
        not wait)."""
        return self._protocol.writable.is_set()  # type: ignore[no-any-return]

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()

    def write(self, data: bytes) -> None:
        """Frames, whole, as :func:`frame_head` and the payloads make them."""
        self._protocol.transport.write(data)


def direct_socket(send: Any) -> DirectSocket | None:
    """The socket behind uvicorn's ASGI ``send`` when pre-framed writes may go to it, else
    None (see the module docstring)."""
    if not ENABLED or getattr(send, "__func__", None) is not _SEND:
        return None
    protocol = send.__self__
    if (
        not protocol.handshake_complete
        or protocol.initial_response is not None
        or protocol.conn.extensions  # permessage-deflate: uvicorn's send compresses
    ):
        return None
    socket = DirectSocket(protocol)
    return socket if socket.open() else None
