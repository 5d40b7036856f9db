"""A viewer's list of videos: the filters checked once, the QuerySet they make."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from vidgen import errors
from vidgen.models import Tag, User, Video, VideoStatus
from vidgen.services import catalog
from vidgen.services.videos.search import MAX_SEARCH, search_terms

logger = logging.getLogger(__name__)


def list_videos(*, viewer: User, **filters: Any) -> QuerySet[Video]:
    """The viewer's videos matching every given filter (not yet ordered or sliced): the
    queryset of :func:`video_list` with the same keyword filters (``status``, ``project_id``,
    ``story_id``, ``tag``, ``theme``, ``provider``, ``search``, ``include_deleted``).

    ``tag`` and ``theme`` match by normalised name; ``search`` looks for the text in the
    prompt and the caption, case-insensitively. Deleted videos only with ``include_deleted``.
    """
    return video_list(viewer=viewer, **filters).queryset()


def video_list(
    *,
    viewer: User,
    status: Sequence[VideoStatus] | None = None,
    project_id: int | None = None,
    story_id: int | None = None,
    tag: str | None = None,
    theme: str | None = None,
    provider: str | None = None,
    search: str | None = None,
    include_deleted: bool = False,
) -> VideoList:
    """:func:`list_videos`'s filters, checked (the same errors, in the same order), as a
    :class:`VideoList`."""
    statuses = tuple(VideoStatus(s) for s in status) if status else ()
    theme_key = None if theme is None else catalog.check_label(theme, field="theme")[1]
    tag_key = None if tag is None else catalog.check_label(tag, field="tag")[1]
    text = None
    if search is not None and search.strip():
        text = search.strip()
        if len(text) > MAX_SEARCH:
            raise errors.BadUserInput(
                f"search must be at most {MAX_SEARCH} characters.", field="search"
            )
    return VideoList(
        owner_id=None if viewer.is_admin else viewer.id,
        include_deleted=include_deleted,
        statuses=statuses,
        project_id=project_id,
        story_id=story_id,
        provider=_provider_filter(provider),
        theme_key=theme_key,
        tag_key=tag_key,
        search=text,
    )


def _provider_filter(provider: str | None) -> str | None:
    """The provider filter, normalised; a name longer than any video's provider can be is
    BAD_USER_INPUT (the column would refuse it)."""
    if provider is None:
        return None
    name = provider.strip().lower()
    limit = Video._meta.fields_map["provider"].max_length
    if len(name) > limit:
        raise errors.BadUserInput(f"provider must be at most {limit} characters.", field="provider")
    return name


@dataclass(frozen=True)
class VideoList:
    """The videos matching checked filters (made by :func:`video_list`).

    :meth:`queryset` is :func:`list_videos`'s QuerySet. The GraphQL layer's compiled plans
    write the same filters as SQL from these fields (``vidgen/graphql/compiled/statements.py``;
    a test compares both).
    """

    owner_id: int | None  # None: every owner's (an admin's list)
    include_deleted: bool = False
    statuses: tuple[VideoStatus, ...] = ()
    project_id: int | None = None
    story_id: int | None = None
    provider: str | None = None  # normalised
    theme_key: str | None = None
    tag_key: str | None = None
    search: str | None = None  # stripped, not empty

    model = Video

    def queryset(self) -> QuerySet[Video]:
        query = Video.all()
        if self.owner_id is not None:
            query = query.filter(owner_id=self.owner_id)
        if not self.include_deleted:
            query = query.filter(deleted_at__isnull=True)
        if self.statuses:
            query = query.filter(status__in=list(self.statuses))
        if self.project_id is not None:
            query = query.filter(project_id=self.project_id)
        if self.story_id is not None:
            query = query.filter(story_id=self.story_id)
        if self.provider is not None:
            query = query.filter(provider=self.provider)
        if self.theme_key is not None:
            query = query.filter(theme__name_key=self.theme_key)
        if self.tag_key is not None:
            tagged = Tag.filter(name_key=self.tag_key).values("videos__id")
            query = query.filter(id__in=Subquery(tagged))
        if self.search is not None:
            (prompt, text), (caption, _) = search_terms(self.search)
            query = query.filter(Q(**{prompt: text}) | Q(**{caption: text}))
        return query

    def count(self) -> Any:
        """The awaitable number of matching videos."""
        return self.queryset().count()
