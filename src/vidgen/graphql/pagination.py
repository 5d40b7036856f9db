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
from typing import Any

from pypika_tortoise.analytics import RowNumber
from pypika_tortoise.enums import Order
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

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
    # What ``count()`` counts every page (a QuerySet); None for a page of a batch
    # (fetch_pages)
    count_query: Any = None


def page_query(query: QuerySet[Any], cursor: tuple[dt.datetime, int] | None, first: int) -> Any:
    """``query``'s rows after ``cursor``, newest first, one more than ``first`` (which says
    whether a next page exists)."""
    if cursor is not None:
        when, row_id = cursor
        query = query.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=row_id))
    return query.order_by("-created_at", "-id").limit(first + 1)


async def fetch_page(query: QuerySet[Any], *, first: int, after: str | None) -> Page:
    """The ``first`` rows of ``query`` after the cursor, newest first (one SELECT)."""
    cursor = decode_cursor(after) if after else None
    # Also with first=0: its one row (LIMIT 1) says whether any row follows the cursor.
    rows = await page_query(query, cursor, first)
    has_next = len(rows) > first
    return Page(rows=rows[:first], has_next_page=has_next, count_query=query)


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
