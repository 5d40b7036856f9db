"""A change's bus event, built from what the write returned, and its publication after the
commit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vidgen.events.bus import EventBus, publish_all
from vidgen.events.messages import VideoEvent, video_event_items
from vidgen.models import Video

#: The video columns an event is made of (what the hot paths' writes return).
EVENT_COLUMNS = "id, owner_id, version, status, progress, project_id, story_id"


def event_for(video: Video, event_id: int | None) -> VideoEvent:
    """The event of ``video`` as it is now (``event_id``: its event-log row, if any)."""
    return VideoEvent(
        video_id=video.id,
        owner_id=video.owner_id,
        version=video.version,
        status=str(video.status),
        progress=float(video.progress or 0.0),
        event_id=event_id,
        project_id=video.project_id,
        story_id=video.story_id,
    )


def event_from_row(
    row: Mapping[str, Any], event_id: int | None, *, status: str | None = None
) -> VideoEvent:
    """The event of a video row as a write returned it (:data:`EVENT_COLUMNS`)."""
    return VideoEvent(
        video_id=row["id"],
        owner_id=row["owner_id"],
        version=row["version"],
        status=status or str(row["status"]),
        progress=float(row["progress"] or 0.0),
        event_id=event_id,
        project_id=row["project_id"],
        story_id=row["story_id"],
    )


async def publish(bus: EventBus | None, events: Iterable[VideoEvent]) -> None:
    """Publish committed changes (call only after the transaction is over), all of them in
    one round trip on a bus that batches (a claim's or a sweep's many jobs)."""
    if bus is None:
        return
    items = [item for event in events for item in video_event_items(event)]
    if items:
        await publish_all(bus, items)
