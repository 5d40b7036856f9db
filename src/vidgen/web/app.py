"""The Starlette application: GraphQL (HTTP + WebSocket), webhooks, media, health, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from vidgen import db
from vidgen.runtime import Runtime
from vidgen.settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    embedded_worker: bool | None = None,
    manage_database: bool = True,
) -> Starlette:
    """Build the ASGI app.

    Args:
        settings: the configuration.
        runtime: shared resources; built from the settings when not given.
        embedded_worker: run a job worker inside this process (default: the settings decide,
            on for SQLite, off otherwise).
        manage_database: open (and, on SQLite, migrate) the database in the lifespan. Tests
            that already opened it pass False.
    """
    settings.check()
    runtime = runtime or Runtime.create(settings)
    run_worker = settings.run_embedded_worker if embedded_worker is None else embedded_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            await db.init(settings, run_migrations=settings.is_sqlite)
        await runtime.open()
        worker = None
        if run_worker:
            from vidgen.jobs.worker import start_embedded

            worker = await start_embedded(runtime)
        logger.info(
            "vidgen ready",
            extra={"action": "startup", "embedded_worker": run_worker},
        )
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await _close_subscriptions(app)
            await runtime.close()
            if manage_database:
                await db.close()

    app = Starlette(routes=build_routes(runtime), lifespan=lifespan)
    app.state.runtime = runtime
    app.state.settings = settings
    return app


async def _close_subscriptions(app: Starlette) -> None:
    closer = getattr(app.state, "close_subscriptions", None)
    if closer is not None:
        await closer()


def build_routes(runtime: Runtime) -> list[BaseRoute]:
    from vidgen.graphql.view import graphql_routes
    from vidgen.web.health import health_routes
    from vidgen.web.media import media_routes
    from vidgen.web.webhooks import webhook_routes

    settings = runtime.settings
    routes: list[BaseRoute] = []
    routes += health_routes(runtime)
    routes += graphql_routes(runtime)
    routes += webhook_routes(runtime)
    routes += media_routes(runtime.storage, settings.resolved_secret_key)
    with contextlib.suppress(ImportError):
        from vidgen.web.metrics import metrics_routes

        routes += metrics_routes(runtime)
    return routes
