"""The root ``videos`` page's statement, built once per shape of filters.

:func:`fetch_list_page` is :func:`~vidgen.graphql.pagination.fetch_page` over a
:class:`ListSource` (``services.videos.VideoList``): the same statement, rows and page, with
the statement's SQL kept per shape of filters (and backend) instead of built by Tortoise per
request, and optionally the page's to-one relations read in the same statement.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from tortoise.exceptions import ValidationError
from tortoise.queryset import QuerySet
from tortoise.router import router

from vidgen import db
from vidgen.graphql.pagination import Page, decode_cursor, page_query


@dataclass(frozen=True)
class Join:
    """A to-one relation to read with a page: the page's ``column`` holds ``model``'s key."""

    column: str
    model: Any


class ListSource(Protocol):
    """Filters that make a QuerySet and can say which values its SQL takes (see
    ``services.videos.VideoList``, the one implementation)."""

    model: Any

    @property
    def shape(self) -> tuple[Any, ...]: ...

    def queryset(self) -> QuerySet[Any]: ...

    def params(self) -> list[Any]: ...

    def with_other_values(self) -> ListSource:
        """A source of the same shape whose every value differs from this one's."""
        ...

    def count(self) -> Any: ...


# (dialect, shape, with a cursor) -> the page statement's SQL, or None where Tortoise's own
# SQL could not be shown to take exactly the source's params (then built every time).
_PAGE_SQL: dict[tuple[Any, ...], str | None] = {}
# The same with joins: (the key above, the joins) -> the joined statement's SQL.
_JOINED_SQL: dict[tuple[Any, ...], str] = {}
MAX_PAGE_SHAPES = 512
_UNKNOWN: Any = object()


async def fetch_list_page(
    source: ListSource, *, first: int, after: str | None, joins: tuple[Join, ...] = ()
) -> Page:
    """:func:`~vidgen.graphql.pagination.fetch_page` of ``source.queryset()``: the same
    statement, rows and page, with the statement's SQL built once per shape of filters (and
    backend) instead of per request.

    The first page of a shape is built by Tortoise, and its SQL is kept only when its
    parameters are exactly ``source.params()`` plus the cursor's and the limit (same
    values, types and representations), and when a source of the same shape with every
    value different (``source.with_other_values()``) builds the very same SQL text with its
    own params (no value is written into the text). Later pages of that shape send the kept SQL with
    their own params through the same connection method (``execute_query``, so also
    logged), and build the rows as Tortoise's executor does (``vidgen.db.row_builder``).

    ``joins``: to-one relations read in the same statement (the kept page statement as a
    subquery, each relation's table LEFT JOINed on its key, ordered again), returned in
    :attr:`Page.related`: the rows the relation's by-id lookup would read, built the same
    way. Only with a kept statement (else ``related`` is None).
    """
    cursor = decode_cursor(after) if after else None
    model = source.model
    connection = router.db_for_read(model) or model._meta.db
    key = (connection.capabilities.dialect, source.shape, cursor is not None)
    sql = _PAGE_SQL.get(key, _UNKNOWN)
    if sql is _UNKNOWN:
        sql = _reusable_sql(source, cursor, first)
        if len(_PAGE_SQL) < MAX_PAGE_SHAPES:
            _PAGE_SQL[key] = sql
    if sql is None:
        rows = await page_query(source.queryset(), cursor, first)
        return Page(rows=rows[:first], has_next_page=len(rows) > first, count_query=source)
    if joins:
        joined = _JOINED_SQL.get((key, joins))
        if joined is None:
            joined = _joined_sql(sql, joins)
            if len(_JOINED_SQL) < MAX_PAGE_SHAPES:
                _JOINED_SQL[key, joins] = joined
        sql = joined
    _, raw = await connection.execute_query(sql, _params(source, cursor, first))
    build = db.row_builder(model)
    rows = [build(row) for row in raw[: first + 1]]
    page = Page(rows=rows[:first], has_next_page=len(rows) > first, count_query=source)
    if joins:
        page.related = {}
        for index, join in enumerate(joins):
            build_related = db.row_builder(join.model, prefix=f"_j{index}.")
            pk = f"_j{index}.{join.model._meta.db_pk_column}"
            found: dict[Any, Any] = {}
            for row in raw[:first]:
                value = row[join.column]
                if value is not None and value not in found:
                    found[value] = None if row[pk] is None else build_related(row)
            page.related[join.column] = found
    return page


def _columns(model: Any) -> list[str]:
    meta = model._meta
    fields = (*meta.db_native_fields, *meta.db_default_fields, *meta.db_complex_fields)
    return [column for column, _, _ in fields]


def _joined_sql(page_sql: str, joins: tuple[Join, ...]) -> str:
    """``page_sql`` (ordered by created_at, id, newest first) with ``joins``' tables."""
    columns = ['"_page".*']
    tables = [f'({page_sql}) "_page"']
    for index, join in enumerate(joins):
        alias = f"_j{index}"
        meta = join.model._meta
        columns += [f'"{alias}"."{column}" "{alias}.{column}"' for column in _columns(join.model)]
        tables.append(
            f'LEFT OUTER JOIN "{meta.db_table}" "{alias}" '
            f'ON "{alias}"."{meta.db_pk_column}"="_page"."{join.column}"'
        )
    return (
        f"SELECT {','.join(columns)} FROM {' '.join(tables)} "
        'ORDER BY "_page"."created_at" DESC,"_page"."id" DESC'
    )


def _params(source: ListSource, cursor: tuple[dt.datetime, int] | None, first: int) -> list[Any]:
    params = source.params()
    if cursor is not None:
        when, row_id = cursor
        params += [when, when, row_id]
    params.append(first + 1)
    return params


def _reusable_sql(
    source: ListSource, cursor: tuple[dt.datetime, int] | None, first: int
) -> str | None:
    built = _checked_sql(source, cursor, first)
    if built is None:
        return None
    try:
        other_cursor = None
        if cursor is not None:
            when, row_id = cursor
            other_cursor = (when - dt.timedelta(seconds=1, microseconds=1), _other_id(row_id))
        # The same shape, every value different: the same text, or a value is in the text.
        other = _checked_sql(source.with_other_values(), other_cursor, first + 1)
    except (ArithmeticError, ValueError, ValidationError):
        # The other values are out of some range (a cursor at the first instant, a name at
        # its column's full length): keep nothing this time; the request goes on.
        return None
    return built if other == built else None


def _other_id(value: int) -> int:
    return value - 1 if value > 1 else value + 1


def _checked_sql(
    source: ListSource, cursor: tuple[dt.datetime, int] | None, first: int
) -> str | None:
    """The page SQL Tortoise builds for ``source``; None unless its params are ours."""
    query = page_query(source.queryset(), cursor, first)
    sql = query.sql()
    _, params = query.query.get_parameterized_sql()
    if not _same_values(list(params), _params(source, cursor, first)):
        return None
    return sql


def _same_values(built: list[Any], ours: list[Any]) -> bool:
    return len(built) == len(ours) and all(
        type(a) is type(b) and a == b and repr(a) == repr(b)
        for a, b in zip(built, ours, strict=True)
    )
