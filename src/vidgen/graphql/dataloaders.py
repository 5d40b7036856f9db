"""DataLoaders: one batched query per relation per operation, whatever the page size.

Named ``<Result>By<Key>Loader``. A :class:`Loaders` bundle is made per HTTP request and per
WebSocket operation (never shared between operations, never module-level: a loader caches
what it loaded for as long as it lives).

These loaders read rows by id WITHOUT owner scoping: they serve relations of objects the
viewer was already allowed to see (a video's project, tags, history...). Top-level lookups
by a client-given id go through the services, which scope by viewer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise.expressions import F
from tortoise.functions import Max
from tortoise.models import Model

from vidgen.models import Project, Story, Tag, Theme, User, Video, VideoStatusEvent

M = TypeVar("M", bound=Model)


class _ByIdLoader(DataLoader[int, Any]):
    model: type[Model]

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[Any]:
        rows = await self.model.filter(id__in=list(set(keys)))
        by_id = {row.pk: row for row in rows}
        return [by_id.get(key) for key in keys]


class UserByIdLoader(_ByIdLoader):
    model = User


class ProjectByIdLoader(_ByIdLoader):
    model = Project


class StoryByIdLoader(_ByIdLoader):
    model = Story


class ThemeByIdLoader(_ByIdLoader):
    model = Theme


class VideoByIdLoader(_ByIdLoader):
    """Videos by id, unscoped: check ``services.videos.can_view`` before showing one."""

    model = Video


class TagsByVideoIdLoader(DataLoader[int, list[Tag]]):
    """A video's tags, by name."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[list[Tag]]:
        rows = (
            await Tag.filter(videos__id__in=list(set(keys)))
            .annotate(video_id=F("videos__id"))
            .order_by("name_key", "id")
        )
        by_video: dict[int, list[Tag]] = defaultdict(list)
        for row in rows:
            by_video[row.video_id].append(row)  # type: ignore[attr-defined]
        return [by_video.get(key, []) for key in keys]


class StatusHistoryByVideoIdLoader(DataLoader[int, list[VideoStatusEvent]]):
    """A video's status history, oldest first."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[list[VideoStatusEvent]]:
        rows = await VideoStatusEvent.filter(video_id__in=list(set(keys))).order_by("id")
        by_video: dict[int, list[VideoStatusEvent]] = defaultdict(list)
        for row in rows:
            by_video[row.video_id].append(row)
        return [by_video.get(key, []) for key in keys]


class LatestEventIdByVideoIdLoader(DataLoader[int, int | None]):
    """The id of a video's latest status-history row (its ``eventCursor``)."""

    def __init__(self) -> None:
        super().__init__(load_fn=self._load)

    async def _load(self, keys: Sequence[int]) -> list[int | None]:
        rows = (
            await VideoStatusEvent.filter(video_id__in=list(set(keys)))
            .group_by("video_id")
            .annotate(latest=Max("id"))
            .values("video_id", "latest")
        )
        by_video = {row["video_id"]: row["latest"] for row in rows}
        return [by_video.get(key) for key in keys]


class Loaders:
    """Every loader of one operation."""

    def __init__(self) -> None:
        self.user_by_id = UserByIdLoader()
        self.project_by_id = ProjectByIdLoader()
        self.story_by_id = StoryByIdLoader()
        self.theme_by_id = ThemeByIdLoader()
        self.video_by_id = VideoByIdLoader()
        self.tags_by_video_id = TagsByVideoIdLoader()
        self.status_history_by_video_id = StatusHistoryByVideoIdLoader()
        self.latest_event_id_by_video_id = LatestEventIdByVideoIdLoader()

    def prime_video(self, video: Video) -> None:
        """Seed the video loader with a row already in hand."""
        self.video_by_id.prime(video.id, video)
