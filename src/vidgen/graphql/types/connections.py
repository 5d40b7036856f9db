"""What every connection (a page of rows) shares: edges, page info, the checked page size."""

from __future__ import annotations

from typing import Any

from strawberry import relay
from strawberry.types import Info
from tortoise.queryset import QuerySet

from vidgen.graphql import pagination


class Edge:
    """An edge of a page (the ``…Edge`` types take any object with ``cursor`` and ``node``):
    its cursor is encoded only when a client selects it."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def cursor(self) -> str:
        return pagination.encode_cursor(self.node)


def edges(rows: list[Any]) -> list[Any]:
    return [Edge(row) for row in rows]


def page_info(page: pagination.Page) -> relay.PageInfo:
    return relay.PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=False,
        start_cursor=pagination.encode_cursor(page.rows[0]) if page.rows else None,
        end_cursor=pagination.encode_cursor(page.rows[-1]) if page.rows else None,
    )


def page_size(info: Info, first: int | None) -> int:
    """``first`` checked against the settings' page sizes (the default when None)."""
    settings = info.context.settings
    return pagination.page_size(
        first, default=settings.page_size_default, maximum=settings.page_size_max
    )


async def fetch_page(
    info: Info, query: QuerySet[Any], first: int | None, after: str | None
) -> pagination.Page:
    """A page of ``query`` for a connection field's ``first`` and ``after``."""
    return await pagination.fetch_page(query, first=page_size(info, first), after=after)
