"""SQL written by hand for both databases: which one is open, and placeholders in its style.

vidgen runs on PostgreSQL (asyncpg: ``$1, $2 …``) and SQLite (``?``). The statements that
Tortoise cannot express, or that the hot paths need as one round trip, are written twice
or built with :class:`Params`; :func:`name` (or :func:`is_postgres`) is the one way to ask which
database is open.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

POSTGRES = "postgres"
SQLITE = "sqlite"

# The dialect of the process's database (opened by ``vidgen.db.init`` as the global
# fallback), kept here once: the workers' hot path asks for every statement, and a lookup of
# the context's connection costs a few microseconds. While it is set, code running inside
# another Tortoise context would still get this dialect: none asks today (a migration's own
# context reads its client's capabilities), and a caller that needs another context's
# dialect must read that context's connection instead.
_dialect: str | None = None


def remember(name: str | None) -> None:
    """Called by ``vidgen.db`` when it opens (a name) or closes (None) the database."""
    global _dialect
    _dialect = name


def name() -> str:
    """``postgres`` or ``sqlite``: the dialect of the default connection (the process's
    database)."""
    if _dialect is not None:
        return _dialect
    from tortoise.connection import get_connection

    return get_connection("default").capabilities.dialect


def is_postgres() -> bool:
    return name() == POSTGRES


class Params:
    """Placeholders in one dialect's style, with their values in the order they were made.

    ``p = Params()`` then ``f"... WHERE id = {p(video_id)}"`` and ``p.values`` for the
    parameters. An enum member is sent as its value. PostgreSQL placeholders are numbered,
    so one made once may appear several times in a statement.

    Args:
        postgres: the style (default: the open database's).
    """

    __slots__ = ("postgres", "values")

    def __init__(self, postgres: bool | None = None) -> None:
        self.postgres = is_postgres() if postgres is None else postgres
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value.value if isinstance(value, enum.Enum) else value)
        return f"${len(self.values)}" if self.postgres else "?"

    def many(self, values: Iterable[Any]) -> str:
        """One placeholder per value, comma-separated (for ``IN (…)``)."""
        return ", ".join(self(value) for value in values)
