"""What ``vidgen worker`` serves over HTTP when ``VIDGEN_WORKER_METRICS_PORT`` is set:
``GET /metrics`` (the worker's own counters, e.g. its attempts' durations, retries and
rescues, beside the fleet-wide job figures every process reports), ``/healthz`` and
``/readyz``, as the API serves them (:mod:`vidgen.web.metrics`, :mod:`vidgen.web.health`).
Nothing else: no GraphQL, no media."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette

from vidgen.runtime import Runtime
from vidgen.web.health import health_routes
from vidgen.web.metrics import metrics_routes

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: the worker's own handlers stop the
    process (gracefully), and this server stops when the worker has."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(runtime: Runtime, host: str, port: int) -> AsyncIterator[None]:
    """Serve the endpoints on ``host:port`` until the block ends. Fails (OSError) when the
    port cannot be bound, before the block runs."""
    app = Starlette(routes=[*metrics_routes(runtime), *health_routes(runtime)])
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # could not bind: uvicorn logged why and exited
            await task
            raise OSError(f"the worker's metrics endpoint could not listen on {host}:{port}")
        await asyncio.sleep(0.01)
    logger.info(
        "worker metrics at http://%s:%s/metrics",
        host,
        port,
        extra={"action": "worker.metrics", "port": port},
    )
    try:
        yield
    finally:
        server.should_exit = True
        await task
