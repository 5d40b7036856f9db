"""Cursor pagination over Tortoise querysets, newest first.

Cursors are keyset cursors over ``(created_at, id)`` (opaque base64 text): a page stays
correct while new rows arrive, unlike offsets. ``first`` defaults to the settings'
``page_size_default`` and may not exceed ``page_size_max`` (BAD_USER_INPUT, field
``first``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pypika_tortoise.analytics import RowNumber
from pypika_tortoise.enums import Order
from tortoise.exceptions import ValidationError
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet
from tortoise.router import router

from vidgen import db, errors

_PREFIX = "c1:"


def encode_cursor(row: Any) -> str:
    raw = f"{_PREFIX}{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, *, field: str = "after") -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not raw.startswith(_PREFIX):
            raise ValueError(cursor)
        stamp, _, row_id = raw[len(_PREFIX) :].rpartition("|")
        when = dt.datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        # As an instant in UTC, which is how the drivers send it: an offset that moves it
        # past year 1 or 9999 (a forged cursor) raises OverflowError here, not in asyncpg.
        when = when.astimezone(dt.UTC)
        row = db.row_id_in(row_id)
        if not row:  # no row has that id (or the database would refuse it): not ours
            raise ValueError(row_id)
        return when, row
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise errors.BadUserInput(
            "That cursor is not valid; pass an endCursor or edge cursor from this list.",
            field=field,
        ) from exc


def page_size(first: int | None, *, default: int, maximum: int) -> int:
    """The checked page size."""
    if first is None:
        return default
    if first < 0:
        raise errors.BadUserInput("first must not be negative.", field="first")
    if first > maximum:
        raise errors.BadUserInput(f"first must be at most {maximum}.", field="first")
    return first


@dataclass
class Page:
    """One page of rows plus what a connection needs to describe it."""

    rows: list[Any]
    has_next_page: bool
    # What ``count()`` counts every page (a QuerySet or a ListSource); None for a page of a
    # batch (fetch_pages)
    count_query: Any = None
    # Rows of the to-one relations read with the page (fetch_list_page's ``joins``): for
    # each join's column, the related row (or None: no such row) by the column's value.
    # None when they were not read.
    related: dict[str, dict[Any, Any]] | None = None


@dataclass(frozen=True)
class Join:
    """A to-one relation to read with a page: the page's ``column`` holds ``model``'s key."""

    column: str
    model: Any


def _page_query(query: QuerySet[Any], cursor: tuple[dt.datetime, int] | None, first: int) -> Any:
    if cursor is not None:
        when, row_id = cursor
        query = query.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=row_id))
    return query.order_by("-created_at", "-id").limit(first + 1)


async def fetch_page(query: QuerySet[Any], *, first: int, after: str | None) -> Page:
    """The ``first`` rows of ``query`` after the cursor, newest first (one SELECT)."""
    cursor = decode_cursor(after) if after else None
    # Also with first=0: its one row (LIMIT 1) says whether any row follows the cursor.
    rows = await _page_query(query, cursor, first)
    has_next = len(rows) > first
    return Page(rows=rows[:first], has_next_page=has_next, count_query=query)


class ListSource(Protocol):
    """Filters that make a QuerySet and can say which values its SQL takes (see
    ``services.videos.VideoList``, the one implementation)."""

    model: Any

    @property
    def shape(self) -> tuple[Any, ...]: ...

    def queryset(self) -> QuerySet[Any]: ...

    def params(self) -> list[Any]: ...

    def with_other_values(self) -> ListSource: ...

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
    """:func:`fetch_page` of ``source.queryset()``: the same statement, rows and page, with
    the statement's SQL built once per shape of filters (and backend) instead of per request.

    The first page of a shape is built by Tortoise, and its SQL is kept only when its
    parameters are exactly ``source.params()`` plus the cursor's and the limit (same
    values, types and representations), and when a probe of the same shape with every value
    different builds the very same SQL text with the probe's params (no value is written
    into the text). Later pages of that shape send the kept SQL with their own params
    through the same connection method (``execute_query``, so also logged), and build the
    rows as Tortoise's executor does (``vidgen.db.row_builder``).

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
        rows = await _page_query(source.queryset(), cursor, first)
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
        probe_cursor = None
        if cursor is not None:
            when, row_id = cursor
            probe_cursor = (when - dt.timedelta(seconds=1, microseconds=1), _other_id(row_id))
        probe = _checked_sql(source.with_other_values(), probe_cursor, first + 1)
    except (ArithmeticError, ValueError, ValidationError):
        # The probe's values are out of some range (a cursor at the first instant, a name
        # at its column's full length): keep nothing this time; the request goes on.
        return None
    return built if probe == built else None


def _other_id(value: int) -> int:
    return value - 1 if value > 1 else value + 1


def _checked_sql(
    source: ListSource, cursor: tuple[dt.datetime, int] | None, first: int
) -> str | None:
    """The page SQL Tortoise builds for ``source``; None unless its params are ours."""
    query = _page_query(source.queryset(), cursor, first)
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


def _after(query: QuerySet[Any], after: str | None) -> QuerySet[Any]:
    if not after:
        return query
    when, row_id = decode_cursor(after)
    return query.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=row_id))


async def fetch_pages(
    query: QuerySet[Any],
    *,
    group_by: str,
    groups: Iterable[int],
    first: int,
    after: str | None,
) -> dict[int, Page]:
    """:func:`fetch_page` for many groups at once (the videos of many projects): for each
    value of the column ``group_by`` in ``groups``, the ``first`` rows of ``query`` in that
    group after the cursor, newest first. ONE SELECT whatever the number of groups::

        SELECT * FROM (
            SELECT videos.*, ROW_NUMBER() OVER (
                PARTITION BY project_id ORDER BY created_at DESC, id DESC) AS _rn
            FROM videos WHERE <query's filters> AND project_id IN (...) AND <cursor>
        ) ranked WHERE _rn <= first + 1 ORDER BY project_id, _rn

    The order, the cursor and ``has_next_page`` (one row more than ``first``) are exactly
    :func:`fetch_page`'s. The pages carry no ``count_query``: count the groups together.

    Args:
        query: The rows to page (filters only: not ordered, not sliced).
        group_by: A column of ``query``'s model, e.g. ``"project_id"``.
        groups: The values of ``group_by`` wanted; every one gets a (maybe empty) page.
        first: The page size, already checked (:func:`page_size`).
        after: A cursor applied to every group, or None.

    Returns:
        A page per value of ``groups``.
    """
    wanted = sorted(set(groups))
    pages = {group: Page(rows=[], has_next_page=False) for group in wanted}
    if not wanted:
        return pages
    model = query.model
    table = model._meta.basetable
    rank = (
        RowNumber()
        .over(table[group_by])
        .orderby(table.created_at, order=Order.desc)
        .orderby(table.id, order=Order.desc)
    )
    inner = _after(query, after).filter(**{f"{group_by}__in": wanted}).annotate(_rn=rank)
    ranked = Subquery(inner).as_("ranked")
    connection = model._meta.db
    outer = (
        connection.query_class.from_(ranked)
        .select("*")
        .where(ranked._rn <= first + 1)
        .orderby(ranked[group_by])
        .orderby(ranked._rn)
    )
    rows = await connection.executor_class(model=model, db=connection).execute_select(
        *outer.get_parameterized_sql(), custom_fields=["_rn"]
    )
    grouped: dict[int, list[Any]] = {group: [] for group in wanted}
    for row in rows:
        grouped[getattr(row, group_by)].append(row)
    for group, found in grouped.items():
        pages[group] = Page(rows=found[:first], has_next_page=len(found) > first)
    return pages
