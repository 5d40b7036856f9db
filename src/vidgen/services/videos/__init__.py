"""Videos: generate, change, cancel, retry, delete and restore them; list what a viewer sees.

- :mod:`.access`: which videos a viewer may see (another user's is NotFound);
- :mod:`.listing`: a viewer's list, its filters checked once (:mod:`.search`);
- :mod:`.generation`: ``generateVideo``, checked in full first (:mod:`.request_checks`,
  :mod:`.named_rows`), then written by the lifecycle in one statement;
- :mod:`.changes`: edit, cancel, retry, delete, restore.

The names below are the services the GraphQL layer and the CLI call.
"""

from vidgen.services.videos.access import actor_of, can_view, find_video, get_video, visible_videos
from vidgen.services.videos.changes import (
    cancel_video,
    delete_video,
    restore_video,
    retry_video,
    update_video,
)
from vidgen.services.videos.generation import generate_video
from vidgen.services.videos.listing import VideoList, list_videos, video_list

__all__ = [
    "VideoList",
    "actor_of",
    "can_view",
    "cancel_video",
    "delete_video",
    "find_video",
    "generate_video",
    "get_video",
    "list_videos",
    "restore_video",
    "retry_video",
    "update_video",
    "video_list",
    "visible_videos",
]
