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
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from vidgen import errors

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
        return when, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
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
    count_query: QuerySet[Any]


async def fetch_page(query: QuerySet[Any], *, first: int, after: str | None) -> Page:
    """The ``first`` rows of ``query`` after the cursor, newest first (one SELECT)."""
    page_query = query
    if after:
        when, row_id = decode_cursor(after)
        page_query = page_query.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=row_id))
    rows = [] if first == 0 else await page_query.order_by("-created_at", "-id").limit(first + 1)
    has_next = len(rows) > first
    return Page(rows=rows[:first], has_next_page=has_next, count_query=query)
