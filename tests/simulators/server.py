"""Run any ASGI app under uvicorn on a free 127.0.0.1 port, in a background thread.

Usable from sync and async tests alike (the server has its own event loop, so it survives
pytest's per-test loops)::

    with serve(app) as base_url: ...
    async with aserve(app) as base_url: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

STARTUP_TIMEOUT = 10.0


def _free_socket() -> socket.socket:
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (otherwise
    # Nagle plus delayed ACKs add 40 ms to every response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """uvicorn in a daemon thread, bound to a socket we opened (so the port is known).

    Args:
        app: Any ASGI app.
        graceful_seconds: How long shutdown waits for in-flight requests (e.g. a ``hang``).
    """

    def __init__(self, app: Any, *, graceful_seconds: int = 1) -> None:
        self._sock = _free_socket()
        host, port = self._sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="httptools",
            loop="asyncio",
            timeout_graceful_shutdown=graceful_seconds,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator server did not start")
            time.sleep(0.01)
        return self.base_url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)
        self._sock.close()


class Switch:
    """An ASGI app that forwards to whichever app is plugged in now.

    Lets one long-lived server (e.g. session-scoped) serve a fresh simulator per test.
    """

    def __init__(self, app: Any = None) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            raise RuntimeError("no app plugged into the switch")
        await self.app(scope, receive, send)


@contextlib.contextmanager
def serve(app: Any, **kwargs: Any) -> Iterator[str]:
    """Serve ``app`` on a free port; yields its base URL (``http://127.0.0.1:<port>``)."""
    server = BackgroundServer(app, **kwargs)
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def aserve(app: Any, **kwargs: Any) -> AsyncIterator[str]:
    """The same as :func:`serve`, without blocking the caller's event loop."""
    server = BackgroundServer(app, **kwargs)
    try:
        yield await asyncio.to_thread(server.start)
    finally:
        await asyncio.to_thread(server.stop)
