"""Database set-up: the Tortoise config, start-up with migrations, and shutdown."""

from __future__ import annotations

import logging
from typing import Any

from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext
from tortoise.migrations.api.migrate import migrate as tortoise_migrate

from vidgen.settings import Settings

logger = logging.getLogger(__name__)

MODELS_MODULE = "vidgen.models"
MIGRATIONS_MODULE = "vidgen.migrations"


async def _release_as_is(connection: Any) -> None:
    """asyncpg's pool ``reset`` hook: nothing to undo when a connection goes back.

    Tortoise takes a pool connection for every statement outside a transaction, and
    asyncpg's default reset sends ``CLOSE ALL; UNLISTEN *; RESET ALL;
    SELECT pg_advisory_unlock_all()`` on every release: one more round trip per statement
    (six per list page). vidgen leaves no session state behind: no LISTEN (events go
    through Redis), no cursors, no session ``SET`` (server settings are fixed at connect),
    advisory locks only transaction-scoped (``pg_advisory_xact_lock``). asyncpg still rolls
    back a transaction left open before calling this hook.
    """


def _connection(url: str, settings: Settings | None) -> dict[str, Any] | str:
    if url.startswith("sqlite"):
        return url
    scheme, rest = url.split("://", 1)
    if scheme in {"postgres", "postgresql", "asyncpg"}:
        # Tortoise's default pool max is 5: far too few for an API with subscriptions.
        maxsize = settings.db_pool_max if settings else 20
        sep = "&" if "?" in rest else "?"
        if "maxsize=" not in rest:
            rest = f"{rest}{sep}minsize=1&maxsize={maxsize}"
        config = expand_db_url(f"asyncpg://{rest}")
        config["credentials"]["reset"] = _release_as_is
        return config
    return url


def tortoise_config(url: str, settings: Settings | None = None) -> dict[str, Any]:
    """The Tortoise config for one database URL (``sqlite://`` or ``postgres://``)."""
    return {
        "connections": {"default": _connection(url, settings)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite://") and ":memory:" not in url:
        from pathlib import Path

        Path(url.removeprefix("sqlite://").split("?")[0]).parent.mkdir(
            parents=True, exist_ok=True
        )


_contexts: list[TortoiseContext] = []


async def migrate_database(url: str, settings: Settings | None = None) -> None:
    """Apply the migrations in a private context that is closed afterwards."""
    _ensure_sqlite_folder(url)
    ctx = TortoiseContext()
    with ctx:
        try:
            await tortoise_migrate(config=tortoise_config(url, settings))
        finally:
            await _discard(ctx)


async def init(
    settings: Settings, *, run_migrations: bool = False, global_fallback: bool = True
) -> TortoiseContext:
    """Open the database for this process (and migrate first when asked).

    The context is also installed as the process-wide fallback, because under uvicorn the
    lifespan task and the request tasks do not share ContextVars (see STACK-NOTES).
    """
    url = settings.resolved_database_url
    if run_migrations:
        await migrate_database(url, settings)
    _ensure_sqlite_folder(url)
    # Tortoise caches INSERT/UPDATE SQL per (connection name, table), not per dialect: a
    # process that reopens "default" on another backend (the test suite) must drop it.
    EXECUTOR_CACHE.clear()
    ctx = TortoiseContext()
    ctx.__enter__()
    await ctx.init(config=tortoise_config(url, settings), _enable_global_fallback=global_fallback)
    _contexts.append(ctx)
    return ctx


async def _discard(ctx: TortoiseContext) -> None:
    # TortoiseContext.__aexit__ without the ContextVar reset, which may run in another task.
    await ctx.close_connections()
    ctx._apps = None
    ctx._inited = False


async def close() -> None:
    """Close every context this process opened (connections, pools, global fallback)."""
    while _contexts:
        ctx = _contexts.pop()
        await _discard(ctx)
        try:
            ctx.__exit__(None, None, None)
        except ValueError:  # the ContextVar token belongs to another task's context
            pass


def dialect() -> str:
    """``sqlite`` or ``postgres`` for the default connection."""
    from tortoise.connection import get_connection

    return get_connection("default").capabilities.dialect
