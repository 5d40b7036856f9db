"""Which videos a viewer may see: their own, or all of them for an admin. Another user's
video reads as missing (NotFound), never as forbidden: ids reveal nothing."""

from __future__ import annotations

import logging

from tortoise.queryset import QuerySet

from vidgen import errors
from vidgen.models import User, Video

logger = logging.getLogger(__name__)


def actor_of(viewer: User) -> str:
    return f"user:{viewer.id}"


def visible_videos(viewer: User) -> QuerySet[Video]:
    """Videos the viewer may see (deleted ones included): their own, or all for an admin."""
    query = Video.all()
    return query if viewer.is_admin else query.filter(owner_id=viewer.id)


def can_view(viewer: User | None, video: Video) -> bool:
    """True when ``viewer`` may see ``video`` (subscriptions check each event with this)."""
    return viewer is not None and (viewer.is_admin or video.owner_id == viewer.id)


async def find_video(*, viewer: User, video_id: int) -> Video | None:
    """A visible video (deleted ones too), or None."""
    return await visible_videos(viewer).get_or_none(id=video_id)


async def get_video(*, viewer: User, video_id: int) -> Video:
    """A visible video. Raises NotFound (also for another user's)."""
    video = await find_video(viewer=viewer, video_id=video_id)
    if video is None:
        raise errors.NotFound("video")
    return video
