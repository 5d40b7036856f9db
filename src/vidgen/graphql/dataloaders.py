"""DataLoaders: one batched query per relation per operation, whatever the page size.

Named ``<Result>By<Key>Loader``. A :class:`Loaders` bundle is made per HTTP request and per
WebSocket operation (never shared between operations, never module-level: a loader caches
what it loaded for as long as it lives).

The by-id loaders read rows WITHOUT owner scoping: they serve relations of objects the
viewer was already allowed to see (a video's project, tags, history...). Top-level lookups
by a client-given id go through the services, which scope by viewer. The nested video
connections (``Project.videos``, ``Story.videos``) list through
``services.videos.list_videos``, so they ARE scoped: their keys carry the viewer's
:class:`Scope`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from strawberry.dataloader import DataLoader
from tortoise.expressions import F
from tortoise.functions import Count, Max
from tortoise.models import Model

from vidgen import db, models
from vidgen.graphql import pagination
from vidgen.graphql.fastpath.keyed_query import KeyedQuery
from vidgen.services import films
from vidgen.services import videos as video_service


class _ByIdLoader(DataLoader[int, Any]):
    model: type[Model]
    _queries: dict[type[Model], KeyedQuery] = {}

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    @classmethod
    def _query(cls) -> KeyedQuery:
        query = cls._queries.get(cls.model)
        if query is None:
            model = cls.model
            query = cls._queries[model] = KeyedQuery(model, lambda ids: model.filter(id__in=ids))
        return query

    async def _load(self, keys: Sequence[int]) -> list[Any]:
        rows = await self._query().models(sorted(set(keys)))
        by_id = {row.pk: row for row in rows}
        return [by_id.get(key) for key in keys]


class UserByIdLoader(_ByIdLoader):
    model = models.User


class ProjectByIdLoader(_ByIdLoader):
    model = models.Project


class StoryByIdLoader(_ByIdLoader):
    model = models.Story


class ThemeByIdLoader(_ByIdLoader):
    model = models.Theme


class VideoByIdLoader(_ByIdLoader):
    """Videos by id, unscoped: check ``services.videos.can_view`` before showing one."""

    model = models.Video


_TAGS_OF_VIDEOS = KeyedQuery(
    models.Tag,
    lambda video_ids: (
        models.Tag.filter(videos__id__in=video_ids)
        .annotate(video_id=F("videos__id"))
        .order_by("name_key", "id")
    ),
)

_HISTORY_OF_VIDEOS = KeyedQuery(
    models.VideoStatusEvent,
    lambda video_ids: models.VideoStatusEvent.filter(video_id__in=video_ids).order_by("id"),
)


class TagsByVideoIdLoader(DataLoader[int, list[models.Tag]]):
    """A video's tags, by name. A tag on several of the videos is one (shared) instance."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[list[models.Tag]]:
        tags: dict[int, models.Tag] = {}
        by_video: dict[int, list[models.Tag]] = defaultdict(list)
        rows = await _TAGS_OF_VIDEOS.rows(sorted(set(keys)))
        build = db.row_builder(models.Tag)  # reads the tag's columns, not video_id
        for row in rows:
            tag_id = row["id"]
            tag = tags.get(tag_id)
            if tag is None:
                tag = tags[tag_id] = build(row)
            by_video[row["video_id"]].append(tag)
        return [by_video.get(key, []) for key in keys]


class StatusHistoryByVideoIdLoader(DataLoader[int, list[models.VideoStatusEvent]]):
    """A video's status history, oldest first."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[list[models.VideoStatusEvent]]:
        rows = await _HISTORY_OF_VIDEOS.models(sorted(set(keys)))
        by_video: dict[int, list[models.VideoStatusEvent]] = defaultdict(list)
        for row in rows:
            by_video[row.video_id].append(row)
        return [by_video.get(key, []) for key in keys]


class LatestEventIdByVideoIdLoader(DataLoader[int, int | None]):
    """The id of a video's latest status-history row (its ``eventCursor``)."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[int | None]:
        rows = (
            await models.VideoStatusEvent.filter(video_id__in=list(set(keys)))
            .group_by("video_id")
            .annotate(latest=Max("id"))
            .values("video_id", "latest")
        )
        by_video = {row["video_id"]: row["latest"] for row in rows}
        return [by_video.get(key) for key in keys]


class WebhookDeliveriesByVideoIdLoader(DataLoader[int, list[models.WebhookDelivery]]):
    """A video's outgoing webhook events, oldest first."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[list[models.WebhookDelivery]]:
        rows = await models.WebhookDelivery.filter(video_id__in=sorted(set(keys))).order_by(
            "video_id", "version", "id"
        )
        by_video: dict[int, list[models.WebhookDelivery]] = defaultdict(list)
        for row in rows:
            by_video[row.video_id].append(row)
        return [by_video.get(key, []) for key in keys]


@dataclass(frozen=True)
class Scope:
    """What a viewer may list: keys compare by the user's id and admin flag only."""

    viewer: models.User = field(compare=False, repr=False)
    user_id: int
    is_admin: bool

    @classmethod
    def of(cls, viewer: models.User) -> Scope:
        return cls(viewer=viewer, user_id=viewer.id, is_admin=bool(viewer.is_admin))


@dataclass(frozen=True)
class VideoPageKey:
    """One nested ``videos(first, after)`` page of one parent (project or story)."""

    parent_id: int
    first: int
    after: str | None
    scope: Scope


class _VideoPageByParentLoader(DataLoader[VideoPageKey, pagination.Page]):
    """Pages of the videos of many parents: one window-function SELECT per distinct
    (first, after, scope) among the keys, so usually one, whatever the number of parents
    (see :func:`pagination.fetch_pages`). Same rows, order and cursors as the top-level
    ``videos(filter: {projectId|storyId})``: both list through ``list_videos``."""

    parent_field: str

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[VideoPageKey]) -> list[pagination.Page]:
        batches: dict[tuple[int, str | None, Scope], set[int]] = defaultdict(set)
        for key in keys:
            batches[key.first, key.after, key.scope].add(key.parent_id)
        pages: dict[VideoPageKey, pagination.Page] = {}
        for (first, after, scope), parent_ids in batches.items():
            found = await pagination.fetch_pages(
                video_service.list_videos(viewer=scope.viewer),
                group_by=self.parent_field,
                groups=parent_ids,
                first=first,
                after=after,
            )
            for parent_id, page in found.items():
                pages[VideoPageKey(parent_id, first, after, scope)] = page
        return [pages[key] for key in keys]


class VideoPageByProjectIdLoader(_VideoPageByParentLoader):
    parent_field = "project_id"


class VideoPageByStoryIdLoader(_VideoPageByParentLoader):
    parent_field = "story_id"


class _VideoCountByParentLoader(DataLoader[tuple[int, Scope], int]):
    """``totalCount`` of the nested video connections: one grouped COUNT per scope."""

    parent_field: str

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[tuple[int, Scope]]) -> list[int]:
        by_scope: dict[Scope, set[int]] = defaultdict(set)
        for parent_id, scope in keys:
            by_scope[scope].add(parent_id)
        counts: dict[tuple[int, Scope], int] = {}
        for scope, parent_ids in by_scope.items():
            rows = (
                await video_service.list_videos(viewer=scope.viewer)
                .filter(**{f"{self.parent_field}__in": sorted(parent_ids)})
                .group_by(self.parent_field)
                .annotate(n=Count("id"))
                .values(self.parent_field, "n")
            )
            for row in rows:
                counts[row[self.parent_field], scope] = int(row["n"])
        return [counts.get(key, 0) for key in keys]


class VideoCountByProjectIdLoader(_VideoCountByParentLoader):
    parent_field = "project_id"


class VideoCountByStoryIdLoader(_VideoCountByParentLoader):
    parent_field = "story_id"


class FilmByStoryLoader(DataLoader[tuple[int, int], models.Video | None]):
    """A story's latest completed film, by (story id, owner id)."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[tuple[int, int]]) -> list[models.Video | None]:
        found = await films.latest_films(keys)
        return [found.get(story_id) for story_id, _ in keys]


class ClipsByStoryLoader(DataLoader[tuple[int, int, int], list[models.Video]]):
    """A story's latest clip of each paragraph, by (story id, owner id, paragraph count)."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[tuple[int, int, int]]) -> list[list[models.Video]]:
        found = await films.latest_clips(keys)
        return [found.get(story_id, []) for story_id, _, _ in keys]


class Loaders:
    """Every loader of one operation, each made on first use: an operation uses a few of
    them, and one Loaders lives as long as its operation (a subscription's lasts as long as
    the subscription, with most of its loaders never touched).

    Rows already in hand are handed over by primers (:meth:`add_primer`), applied to each
    loader when it is made: a subscription's event primes only the loaders its document
    actually uses, not all of them for every subscriber and event."""

    def add_primer(self, primer: Callable[[str, Any], None]) -> None:
        """Call ``primer(name, loader)`` for each loader: now for those already made, and
        for every other one when it is first used."""
        self.__dict__.setdefault("_primers", []).append(primer)
        for name, value in list(self.__dict__.items()):
            if name != "_primers" and isinstance(value, DataLoader):
                primer(name, value)

    def _made(self, name: str, loader: Any) -> Any:
        for primer in self.__dict__.get("_primers", ()):
            primer(name, loader)
        return loader

    @cached_property
    def user_by_id(self) -> UserByIdLoader:
        return self._made("user_by_id", UserByIdLoader())

    @cached_property
    def project_by_id(self) -> ProjectByIdLoader:
        return self._made("project_by_id", ProjectByIdLoader())

    @cached_property
    def story_by_id(self) -> StoryByIdLoader:
        return self._made("story_by_id", StoryByIdLoader())

    @cached_property
    def theme_by_id(self) -> ThemeByIdLoader:
        return self._made("theme_by_id", ThemeByIdLoader())

    @cached_property
    def video_by_id(self) -> VideoByIdLoader:
        return self._made("video_by_id", VideoByIdLoader())

    @cached_property
    def tags_by_video_id(self) -> TagsByVideoIdLoader:
        return self._made("tags_by_video_id", TagsByVideoIdLoader())

    @cached_property
    def status_history_by_video_id(self) -> StatusHistoryByVideoIdLoader:
        return self._made("status_history_by_video_id", StatusHistoryByVideoIdLoader())

    @cached_property
    def latest_event_id_by_video_id(self) -> LatestEventIdByVideoIdLoader:
        return self._made("latest_event_id_by_video_id", LatestEventIdByVideoIdLoader())

    @cached_property
    def webhook_deliveries_by_video_id(self) -> WebhookDeliveriesByVideoIdLoader:
        return self._made("webhook_deliveries_by_video_id", WebhookDeliveriesByVideoIdLoader())

    @cached_property
    def video_page_by_project_id(self) -> VideoPageByProjectIdLoader:
        return self._made("video_page_by_project_id", VideoPageByProjectIdLoader())

    @cached_property
    def video_page_by_story_id(self) -> VideoPageByStoryIdLoader:
        return self._made("video_page_by_story_id", VideoPageByStoryIdLoader())

    @cached_property
    def video_count_by_project_id(self) -> VideoCountByProjectIdLoader:
        return self._made("video_count_by_project_id", VideoCountByProjectIdLoader())

    @cached_property
    def video_count_by_story_id(self) -> VideoCountByStoryIdLoader:
        return self._made("video_count_by_story_id", VideoCountByStoryIdLoader())

    @cached_property
    def film_by_story(self) -> FilmByStoryLoader:
        return FilmByStoryLoader()

    @cached_property
    def clips_by_story(self) -> ClipsByStoryLoader:
        return ClipsByStoryLoader()

    def prime_video(self, video: models.Video) -> None:
        """Seed the video loader with a row already in hand."""
        self.video_by_id.prime(video.id, video)
