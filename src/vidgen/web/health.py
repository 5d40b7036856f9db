"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tortoise.connection import get_connection

from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
STORAGE_CHECK_TIMEOUT = 5.0  # a PUT to an object store, which may retry once


async def database_ready() -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await get_connection("default").execute_query("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        logger.warning("readiness: database unreachable", exc_info=True)
        return False


async def bus_ready(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return bool(await runtime.bus.ping())
    except Exception:  # noqa: BLE001
        logger.warning("readiness: event bus unreachable", exc_info=True)
        return False


async def storage_ready(runtime: Runtime) -> bool:
    """The media store exists and takes a write (a probe object or file)."""
    try:
        async with asyncio.timeout(STORAGE_CHECK_TIMEOUT):
            await runtime.storage.check()
        return True
    except Exception as exc:  # noqa: BLE001
        logger.warning("readiness: media storage unusable: %s", exc)
        return False


def health_routes(runtime: Runtime) -> list[Route]:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        checks = {
            "database": await database_ready(),
            "bus": await bus_ready(runtime),
            "storage": await storage_ready(runtime),
        }
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
