"""A TCP proxy for fault tests: a peer that stays connected but stops answering.

``frozen`` (an Event) silences every connection, new ones included: the server looks alive
and never answers. :meth:`FreezableProxy.freeze_open` silences only the connections open now,
as when a NAT or a firewall forgets them: new connections work. A silenced connection keeps
both its sockets open, so neither end hears of it; its server side stays open until
:meth:`close`, even after the client gave it up (as across a network partition).
"""

from __future__ import annotations

import asyncio
import contextlib


class _Link:
    def __init__(self) -> None:
        self.silent = False
        self.writers: list[asyncio.StreamWriter] = []


class FreezableProxy:
    """Forwards 127.0.0.1:<its port> to ``target_host``:``target_port`` (see the module
    docstring)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.target_host = target_host
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.connections = 0
        self._links: list[_Link] = []

    async def start(self) -> int:
        """Listen; the port to connect to."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def freeze_open(self) -> int:
        """Silence the connections open now (new ones still work); how many."""
        fresh = [link for link in self._links if not link.silent]
        for link in fresh:
            link.silent = True
        return len(fresh)

    def cut_silent(self) -> None:
        """Close both ends of every silenced connection: now both sides hear of it."""
        for link in self._links:
            if link.silent:
                for writer in link.writers:
                    writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link()
        self._links.append(link)
        link.writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        link.writers.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if self.frozen.is_set() or link.silent:
                        continue  # swallowed: the peer looks alive but never answers
                    dst.write(data)
                    await dst.drain()
                if not link.silent:
                    dst.close()  # pass an orderly close on, unless this link is cut

        # Test proxy: on shutdown its handlers just end (asyncio logs a cancelled handler).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        for link in self._links:
            for writer in link.writers:
                writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
