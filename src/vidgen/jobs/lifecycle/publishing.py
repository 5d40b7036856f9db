"""A change's bus event, built from what the write returned, and its publication after the
commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from vidgen.events.bus import EventBus, publish_all
from vidgen.events.messages import VideoEvent, video_event_items
from vidgen.models import Video

#: The video columns an event is made of (what the hot paths' writes return).
EVENT_COLUMNS = "id, owner_id, version, status, progress, project_id, story_id"
#: What a change WITHOUT an event-log row (progress, a provider's status message, a stored
#: prediction id) returns besides: the event carries them as its ``state``, so a subscriber
#: that loaded a newer row still shows this version's values (docs/live.md). A change with
#: a row needs none: its row has its time and status, and undoes the columns it replaced.
STATE_COLUMNS = "updated_at, status_message, prediction_id"
_STATE_NAMES = tuple(name.strip() for name in STATE_COLUMNS.split(","))


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
    """The event of a video row as a write returned it (:data:`EVENT_COLUMNS`, and
    :data:`STATE_COLUMNS` when the write returned them)."""
    state = None
    if "updated_at" in row:
        state = {name: row[name] for name in _STATE_NAMES if name in row}
        state["updated_at"] = _iso(row["updated_at"])
    return VideoEvent(
        video_id=row["id"],
        owner_id=row["owner_id"],
        version=row["version"],
        status=status or str(row["status"]),
        progress=float(row["progress"] or 0.0),
        event_id=event_id,
        project_id=row["project_id"],
        story_id=row["story_id"],
        state=state,
    )


def _iso(value: Any) -> str | None:
    """A timestamp as ISO 8601 text (PostgreSQL returns datetimes, SQLite text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


async def publish(bus: EventBus | None, events: Iterable[VideoEvent]) -> None:
    """Publish committed changes (call only after the transaction is over), all of them in
    one round trip on a bus that batches (a claim's or a sweep's many jobs)."""
    if bus is None:
        return
    items = [item for event in events for item in video_event_items(event)]
    if items:
        await publish_all(bus, items)
