"""Loader queries whose SQL is built once and sent again with other keys.

A DataLoader sends the same query every request, only with other keys; building its SQL
(filters, joins, pypika) costs more than sending it. :class:`KeyedQuery` keeps the built SQL
per backend and number of keys, when it can show that the keys are exactly the built
statement's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tortoise.models import Model
from tortoise.queryset import QuerySet

from vidgen import db

_NOT_BUILT = object()
#: Key lists longer than this build their SQL every time (bounds the SQL kept per query).
MAX_CACHED_KEYS = 256


class KeyedQuery:
    """A Tortoise query over a list of keys whose SQL is built once per backend and number
    of keys, then run again with other keys.

    Building a query's SQL (filters, joins, pypika) costs more than sending it; a loader
    sends the same query every request. The SQL is reused only when the parameters of the
    built query are exactly the keys, in order (else every call builds it, as Tortoise
    would). Rows come back raw, for :meth:`models`/the caller to turn into model
    instances as Tortoise's executor does (``vidgen.db.row_builder``, equal to
    ``Model._init_from_db``).
    """

    def __init__(self, model: type[Model], build: Callable[[list[Any]], QuerySet[Any]]) -> None:
        self.model = model
        self.build = build
        self._sql: dict[tuple[str, int], Any] = {}

    async def rows(self, keys: list[Any]) -> Sequence[Any]:
        """The raw rows (mappings of column name to value) of the query for ``keys``."""
        connection = self.model._meta.db
        cache_key = (connection.capabilities.dialect, len(keys))
        sql = self._sql.get(cache_key, _NOT_BUILT)
        if sql is _NOT_BUILT or sql is None:
            query = self.build(keys)
            built = query.sql()
            _, params = query.query.get_parameterized_sql()
            reusable = list(params) == list(keys)
            if sql is _NOT_BUILT and len(keys) <= MAX_CACHED_KEYS:
                self._sql[cache_key] = built if reusable else None
            sql = built
            keys = list(params)
        _, rows = await connection.execute_query(sql, list(keys))
        return rows

    async def models(self, keys: list[Any]) -> list[Any]:
        """The query's rows for ``keys`` as model instances (the query selects exactly the
        model's columns)."""
        rows = await self.rows(keys)
        build = db.row_builder(self.model)
        return [build(row) for row in rows]
