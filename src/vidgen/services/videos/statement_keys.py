"""What the GraphQL layer's page-statement cache needs of a video list: which filters are
set (its shape), the values its SQL takes, and a list of the same shape with other values
(to check that no value is written into the SQL text itself).

Kept apart from the list itself (:class:`~vidgen.services.videos.listing.VideoList` takes
these as a mixin) because they exist for that cache only: when the GraphQL layer stops
keeping statements per shape, this module goes and nothing else changes.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Self

from tortoise.filters import escape_like

from vidgen.models import Tag, Theme, Video, VideoStatus
from vidgen.services.videos.search import search_terms

logger = logging.getLogger(__name__)


def _encoded(model: Any, key: str, value: Any) -> Any:
    """``value`` as Tortoise encodes it for the filter ``key`` of ``model`` (its value
    encoder, else the field's ``to_db_value``, which validates it)."""
    info = model._meta.get_filter(key)
    field = model._meta.fields_map[info["field"]]
    encoder = info.get("value_encoder")
    return encoder(value, model, field) if encoder else field.to_db_value(value, model)


class StatementKeys:
    """Mixin of :class:`~vidgen.services.videos.listing.VideoList` (a frozen dataclass of
    checked filters) for the GraphQL layer's page statements, kept per shape of filters:
    :attr:`shape` says which filters are set, :meth:`params` gives the values the list's
    SQL takes, in its order (as Tortoise converts them), and :meth:`with_other_values` a
    list of the same shape whose every value differs."""

    owner_id: int | None
    include_deleted: bool
    statuses: tuple[VideoStatus, ...]
    project_id: int | None
    story_id: int | None
    provider: str | None
    theme_key: str | None
    tag_key: str | None
    search: str | None

    @property
    def shape(self) -> tuple[Any, ...]:
        """Which filters are set (the statement differs by these, not by their values)."""
        return (
            self.owner_id is None,
            self.include_deleted,
            len(self.statuses),
            self.project_id is None,
            self.story_id is None,
            self.provider is None,
            self.theme_key is None,
            self.tag_key is None,
            self.search is None,
            self.search is not None and not self.search.isascii(),  # see search_terms
        )

    def params(self) -> list[Any]:
        """The values :meth:`queryset`'s SQL takes, encoded (and checked: a value a field
        refuses raises the same error) by the same functions Tortoise applies."""
        params: list[Any] = []
        if self.owner_id is not None:
            params.append(_encoded(Video, "owner_id", self.owner_id))
        if self.statuses:
            params += _encoded(Video, "status__in", list(self.statuses))
        for key in ("project_id", "story_id", "provider"):
            value = getattr(self, key)
            if value is not None:
                params.append(_encoded(Video, key, value))
        if self.theme_key is not None:
            params.append(_encoded(Theme, "name_key", self.theme_key))
        if self.tag_key is not None:
            params.append(_encoded(Tag, "name_key", self.tag_key))
        if self.search is not None:
            for key, value in search_terms(self.search):
                encoded = _encoded(Video, key, value)
                if key.endswith("__icontains"):
                    params.append(f"%{escape_like(encoded)}%")
                else:  # COALESCE(CAST(column AS VARCHAR), '') MATCH pattern
                    params += ["", encoded]
        return params

    def with_other_values(self) -> Self:
        """A list of the same shape whose every value differs (each within its column's
        range and length)."""
        members = list(VideoStatus)

        def other(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, int):
                return value - 1 if value > 1 else value + 1  # stays within the column
            return f"{value[:-1]}{'!' if value.endswith('~') else '~'}"  # same length

        return replace(
            self,
            owner_id=other(self.owner_id),
            statuses=tuple(members[(members.index(s) + 1) % len(members)] for s in self.statuses),
            project_id=other(self.project_id),
            story_id=other(self.story_id),
            provider=other(self.provider),
            theme_key=other(self.theme_key),
            tag_key=other(self.tag_key),
            search=other(self.search),
        )
