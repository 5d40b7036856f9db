"""The SQL a plan sends, written out: one statement per page, per count, per batch.

Every statement names its columns (the plan's, never ``*``) and is sent through Tortoise's
connection (``execute_query``: logged and counted like the ORM's own). The page's filters
are :class:`~vidgen.services.videos.listing.VideoList`'s, checked by the service, written
here as the ORM writes them for ``VideoList.queryset()``; authorization is the
``owner_id`` condition inside the statement (absent for an admin, as in the service).

The search filter is the services' choice (``services/videos/search.py``): LIKE ignoring
ASCII case, or on SQLite for non-ASCII text Tortoise's ``MATCH`` (a Python regular
expression ignoring case, installed on each SQLite connection).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from vidgen import models
from vidgen.dialect import Params
from vidgen.services.videos.search import search_terms

Where = Callable[[Params], str]


def _escape_like(text: str) -> str:
    # As Tortoise's ``icontains`` writes its pattern (tortoise.filters.escape_like).
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def video_filters(listed: Any) -> Where:
    """``listed.queryset()``'s WHERE clause (``listed`` is a ``VideoList``)."""
    search = listed.search

    def where(p: Params) -> str:
        parts = []
        if listed.owner_id is not None:
            parts.append(f'v."owner_id" = {p(listed.owner_id)}')
        if not listed.include_deleted:
            parts.append('v."deleted_at" IS NULL')
        if listed.statuses:
            parts.append(f'v."status" IN ({p.many(listed.statuses)})')
        if listed.project_id is not None:
            parts.append(f'v."project_id" = {p(listed.project_id)}')
        if listed.story_id is not None:
            parts.append(f'v."story_id" = {p(listed.story_id)}')
        if listed.provider is not None:
            parts.append(f'v."provider" = {p(listed.provider)}')
        if listed.theme_key is not None:
            parts.append(
                f'v."theme_id" IN (SELECT th."id" FROM "themes" th '
                f'WHERE th."name_key" = {p(listed.theme_key)})'
            )
        if listed.tag_key is not None:
            parts.append(
                'v."id" IN (SELECT vt."videos_id" FROM "tags" tg JOIN "video_tags" vt '
                f'ON vt."tag_id" = tg."id" WHERE tg."name_key" = {p(listed.tag_key)})'
            )
        if search is not None:
            # The services choose the match (search_terms): LIKE, or on SQLite for
            # non-ASCII text Tortoise's MATCH (a Python regular expression ignoring case).
            (prompt_key, text), _ = search_terms(search)
            if prompt_key.endswith("__iposix_regex"):
                test = "COALESCE(CAST(v.\"{column}\" AS VARCHAR),'') MATCH {value}"
            else:
                test = "UPPER(CAST(v.\"{column}\" AS VARCHAR)) LIKE UPPER({value}) ESCAPE '\\'"
                text = f"%{_escape_like(text)}%"
            first = p(text)
            again = first if p.postgres else p(text)  # numbered placeholders can repeat
            parts.append(
                "("
                + test.format(column="prompt", value=first)
                + " OR "
                + test.format(column="caption", value=again)
                + ")"
            )
        return " AND ".join(parts) if parts else "1=1"

    return where


async def page(
    select: str,
    joins: str,
    where: Where,
    cursor: tuple[dt.datetime, int] | None,
    limit: int,
    *,
    with_count: bool = False,
) -> list[Any]:
    """The page's rows (``limit`` is one more than the page: it says whether more follow),
    newest first. ``with_count``: each row ends with the number of videos the filters
    match over all pages (a subquery run once, not per row)."""
    p = Params()
    if with_count:  # first: its placeholders come first in the text
        select += f', (SELECT COUNT(*) FROM "videos" v WHERE {where(p)})'
    condition = where(p)
    if cursor is not None:
        when, row_id = cursor
        at = p(when)
        again = at if p.postgres else p(when)  # numbered placeholders can repeat
        condition += (
            f' AND (v."created_at" < {at} OR (v."created_at" = {again} AND v."id" < {p(row_id)}))'
        )
    sql = (
        f'SELECT {select} FROM "videos" v{joins} WHERE {condition} '
        f'ORDER BY v."created_at" DESC, v."id" DESC LIMIT {p(limit)}'
    )
    return await _rows(sql, p.values)


async def count(where: Where) -> int:
    p = Params()
    rows = await _rows(f'SELECT COUNT(*) FROM "videos" v WHERE {where(p)}', p.values)
    return int(rows[0][0])


# A to-many relation of many videos: (FROM and its conditions, ORDER BY); the video id
# comes first as "k", the selected columns after it.
_BATCHES = {
    "tags": (
        '"video_tags" vt JOIN "tags" r ON r."id" = vt."tag_id" WHERE vt."videos_id" {keys}',
        'vt."videos_id"',
        ' ORDER BY r."name_key", r."id"',
    ),
    "history": (
        '"video_status_events" r WHERE r."video_id" {keys} '
        'AND (r."from_status" IS NULL OR r."from_status" <> r."to_status")',
        'r."video_id"',
        ' ORDER BY r."id"',
    ),
}


def inline_batch(kind: str, columns: list[str]) -> str:
    """A to-many relation of the page's row ``v`` as a column of the page's statement
    (PostgreSQL): an ARRAY of ROWs in the relation's order, or the latest event's id."""
    if kind == "latest":
        return '(SELECT MAX(r."id") FROM "video_status_events" r WHERE r."video_id" = v."id")'
    source, key, order = _BATCHES[kind]
    where = source.format(keys='= v."id"')
    return f"ARRAY(SELECT ROW({', '.join(columns)}) FROM {where}{order})"


async def batch(kind: str, columns: list[str], video_ids: list[int]) -> list[Any]:
    """The rows of one to-many relation for all of ``video_ids``: the video id first."""
    p = Params()
    if p.postgres:
        keys = f"= ANY({p(video_ids)})"
    else:
        keys = f"IN ({p.many(video_ids)})"
    if kind == "latest":
        sql = (
            'SELECT r."video_id", MAX(r."id") FROM "video_status_events" r '
            f'WHERE r."video_id" {keys} GROUP BY r."video_id"'
        )
        return await _rows(sql, p.values)
    source, key, order = _BATCHES[kind]
    select = ", ".join([key, *columns])
    return await _rows(f"SELECT {select} FROM {source.format(keys=keys)}{order}", p.values)


async def _rows(sql: str, params: list[Any]) -> list[Any]:
    connection = models.Video._meta.db
    _, rows = await connection.execute_query(sql, params)
    return list(rows)
