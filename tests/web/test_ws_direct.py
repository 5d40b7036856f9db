"""web/ws_direct.py against uvicorn's own send: the same messages written pre-framed and
through ``websocket.send`` put the same bytes on the wire; a wrapped send, a compressed or a
closed socket get no direct socket (their writers use the ASGI send)."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from tests.api.conftest import serve
from vidgen.web import ws_direct

# Short, medium (2-byte length) and long (8-byte length) payloads, and non-ASCII text.
MESSAGES = ["a", '{"id":"1","type":"next"}', "é" * 200, "x" * 70_000]


def _framed(text: str) -> bytes:
    payload = text.encode()
    return ws_direct.frame_head(len(payload)) + payload


class _App:
    """Sends MESSAGES through the ASGI send, then the same pre-framed, then "end"."""

    def __init__(self) -> None:
        self.direct: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await receive()  # the client's "go"
        for text in MESSAGES:
            await send({"type": "websocket.send", "text": text})
        direct = ws_direct.direct_socket(send)
        self.direct.append(direct)
        self.direct.append(ws_direct.direct_socket(lambda message: send(message)))
        assert direct is not None and direct.writable()
        direct.write(b"".join(_framed(text) for text in MESSAGES))
        await send({"type": "websocket.send", "text": "end"})
        await send({"type": "websocket.close", "code": 1000})
        self.direct.append(ws_direct.direct_socket(send))  # closing: none


async def _raw_exchange(url: str, extensions: str = "") -> bytes:
    """Handshake by hand, send a masked "go", read until the server's close frame."""
    host, port = url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(bytes((0x81, 0x82)) + b"\0\0\0\0" + b"go")  # masked with a zero key
    data = b""
    while not data.endswith(b"\x88\x02\x03\xe8"):  # close 1000
        chunk = await reader.read(65536)
        assert chunk, data[-40:]
        data += chunk
    writer.close()
    await writer.wait_closed()
    return head + data


async def test_pre_framed_bytes_are_uvicorns():
    app = _App()
    async with serve(app) as url:
        wire = await asyncio.wait_for(_raw_exchange(url), 10)
    body = wire.split(b"\r\n\r\n", 1)[1]
    one = b"".join(_framed(text) for text in MESSAGES)
    assert body == one + one + _framed("end") + b"\x88\x02\x03\xe8"
    direct, wrapped, closing = app.direct
    assert direct is not None
    assert wrapped is None  # not uvicorn's own send
    assert closing is None


async def test_no_direct_socket_when_compressed():
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(ws_direct.direct_socket(send))
        await send({"type": "websocket.close", "code": 1000})

    async with serve(app, ws_per_message_deflate=True) as url:
        host, port = url.split("//")[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"permessage-deflate" in head.lower()
        await asyncio.wait_for(reader.read(100), 10)
        writer.close()
        await writer.wait_closed()
    assert seen == [None]
