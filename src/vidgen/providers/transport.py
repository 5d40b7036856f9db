"""The provider clients' transport: a lean connection pool on asyncio's own sockets.

A worker with a thousand remote jobs in flight sends most of its requests to one provider
host over a few dozen keep-alive connections, and when a batch of jobs ends together it
sends thousands of them within seconds (each job's last poll and its download). httpx's
default transport spends most of its CPU around the request rather than on it:

- httpcore's pool matches its queue of requests against ALL its connections at every
  request's start and end, asking each idle connection whether its socket became readable
  (a ``poll()`` and anyio's attribute lookups each time), so a request cost grows with the
  pool: with 20 connections, 16 such checks per request;
- anyio wraps every socket read and write in a cancel scope and every connection's use in
  a lock.

:class:`PooledTransport` keeps httpcore's HTTP/1.1 connections (the protocol, keep-alive
expiry, h11) and replaces the pool: per origin a stack of idle connections, the one on top
checked when it is taken (expired, or closed by the server meanwhile: dropped, the next
one tried), a new connection while there are fewer than ``max_connections``, otherwise a
wait in line (``pool`` timeout). :class:`AsyncioBackend` gives those connections sockets
from the event loop's own transports (TLS through ``loop.start_tls``), under
``asyncio.timeout``. A poll or a download costs about 0.4 of the CPU it costs through
httpx's default transport (``bench/http_client_bench.py``), and the worker's loop spends
about 40% less CPU over a capacity run (``bench/README.md``). httpcore's errors become
httpx's, as with httpx's own transport, so callers (:mod:`vidgen.providers.errors`) see no
difference.

Public APIs only: ``httpx.AsyncBaseTransport``, ``httpcore.AsyncHTTPConnection`` and
``httpcore.AsyncNetworkBackend``/``AsyncNetworkStream``, asyncio's protocols. HTTP/1.1 only
(as the provider clients always were), no proxies: :func:`vidgen.providers.http.build_client`
keeps httpx's own transport when the environment names a proxy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, cast

import httpcore
import httpx

# httpcore's errors → httpx's, most specific first (an isinstance walk).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)

DEFAULT_PORTS = {b"http": 80, b"https": 443}

# A connection's received bytes not yet read, above which it stops reading from its socket
# (a download read slower than it arrives), and below which it reads again.
READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    """A response's body; closing it hands its connection back to the pool."""

    def __init__(self, stream: Any, release: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._release: Callable[[], Awaitable[None]] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            with _as_httpx_errors():
                await self._stream.aclose()
        finally:
            if release is not None:
                await release()


_Key = tuple[bytes, bytes, int]


class PooledTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over at most ``max_connections`` keep-alive connections (see the module
    docstring).

    Args:
        max_connections: connections open at once, over all origins.
        keepalive_expiry: seconds an idle connection is kept.
        ssl_context: for ``https`` origins (None: httpcore's default context).
        network_backend: where sockets come from (default: :class:`AsyncioBackend`).
    """

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float | None,
        ssl_context: ssl.SSLContext | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.max_connections = max(1, max_connections)
        self.keepalive_expiry = keepalive_expiry
        self.ssl_context = ssl_context
        self.network_backend = network_backend or AsyncioBackend()
        self._idle: dict[_Key, list[httpcore.AsyncHTTPConnection]] = {}
        self._open = 0  # connections open or opening, idle or not
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open (or opening) now, idle or in use."""
        return self._open

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported scheme: {url}")
        if not url.raw_host:
            raise httpx.UnsupportedProtocol(f"Request URL is missing a host: {url}")
        port = url.port or DEFAULT_PORTS[scheme]
        key = (scheme, url.raw_host, port)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        pool_timeout = request.extensions.get("timeout", {}).get("pool")
        while True:
            connection = await self._acquire(key, pool_timeout)
            try:
                with _as_httpx_errors():
                    response = await connection.handle_async_request(core)
            except httpcore.ConnectionNotAvailable:  # not ours to use after all: another
                await self._release(key, connection)
                continue
            except BaseException:
                await self._release(key, connection)
                raise
            break
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, lambda: self._release(key, connection)),
            extensions=response.extensions,
        )

    async def _acquire(self, key: _Key, pool_timeout: float | None) -> httpcore.AsyncHTTPConnection:
        while True:
            if self._closed:
                raise httpx.PoolTimeout("The transport is closed.")
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()  # the most recently used: the least likely expired
                if connection.has_expired() or not connection.is_idle():
                    self._open -= 1
                    await connection.aclose()
                    continue
                return connection
            if self._open >= self.max_connections:
                await self._close_an_idle_connection()  # of another origin, if any
            if self._open < self.max_connections:
                self._open += 1
                scheme, host, port = key
                return httpcore.AsyncHTTPConnection(
                    httpcore.Origin(scheme, host, port),
                    ssl_context=self.ssl_context,
                    keepalive_expiry=self.keepalive_expiry,
                    network_backend=self.network_backend,
                )
            await self._wait_turn(pool_timeout)

    async def _close_an_idle_connection(self) -> None:
        for key, idle in self._idle.items():
            if idle:
                connection = idle.pop(0)  # the longest idle
                if not idle:
                    del self._idle[key]
                self._open -= 1
                await connection.aclose()
                return

    async def _wait_turn(self, seconds: float | None) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(seconds):
                await turn
        except TimeoutError:
            raise httpx.PoolTimeout("Timed out waiting for a free connection.") from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._wake_one()  # woken as it was canceled: pass the turn on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(turn)

    def _wake_one(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def _release(self, key: _Key, connection: httpcore.AsyncHTTPConnection) -> None:
        if not self._closed and connection.is_idle() and not connection.is_closed():
            self._idle.setdefault(key, []).append(connection)
        else:
            self._open -= 1
            if not connection.is_closed():
                await connection.aclose()
        self._wake_one()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close as their responses do."""
        self._closed = True
        idle = [connection for stack in self._idle.values() for connection in stack]
        self._idle.clear()
        self._open -= len(idle)
        for connection in idle:
            await connection.aclose()
        while self._waiting:
            self._wake_one()


# --- sockets from the event loop ----------------------------------------------------------
class _Protocol(asyncio.Protocol):
    """Buffers what a connection receives until the stream reads it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False  # the peer closed, or the connection was lost
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but act as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        _wake(self._readable)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._readable)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self._readable)
        _wake(self._writable)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self._writable)

    async def readable(self) -> None:
        self._readable = asyncio.get_running_loop().create_future()
        await self._readable

    async def writable(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()
        await self._writable


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection's socket, as an event-loop transport and :class:`_Protocol`. The
    ``timeout`` arguments are httpcore's interface (seconds, None: no limit)."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        p = self._protocol
        if not p.buffer and not p.eof:
            try:
                async with asyncio.timeout(timeout):
                    while not p.buffer and not p.eof:
                        await p.readable()
            except TimeoutError:
                raise httpcore.ReadTimeout("Timed out reading from the connection.") from None
        if p.buffer:
            data = bytes(p.buffer[:max_bytes])
            del p.buffer[:max_bytes]
            if p.reading_paused and len(p.buffer) <= READ_LOW_WATER and p.transport:
                p.reading_paused = False
                p.transport.resume_reading()
            return data
        if p.error is not None:
            raise httpcore.ReadError(str(p.error) or type(p.error).__name__) from p.error
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        p = self._protocol
        if p.transport is None or p.transport.is_closing() or p.eof:
            raise httpcore.WriteError("The connection is closed.") from p.error
        p.transport.write(buffer)
        if p.writing_paused:
            try:
                async with asyncio.timeout(timeout):
                    while p.writing_paused and not p.eof:
                        await p.writable()
            except TimeoutError:
                raise httpcore.WriteTimeout("Timed out writing to the connection.") from None
            if p.error is not None:
                raise httpcore.WriteError(str(p.error)) from p.error

    async def aclose(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        p = self._protocol
        assert p.transport is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    p.transport, p, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout("Timed out in the TLS handshake.") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc)) from exc
        if tls is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("The connection closed during the TLS handshake.")
        p.transport = tls
        return self

    def get_extra_info(self, info: str) -> Any:
        p = self._protocol
        if info == "is_readable":  # idle yet readable: the server closed it (or sent junk)
            return bool(p.buffer) or p.eof
        if p.transport is None:
            return None
        names = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }
        return p.transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections opened by the running event loop (uvloop or asyncio's own)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"Timed out connecting to {path}.") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
