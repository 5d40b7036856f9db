"""The event log's rows of changes that keep the status, and a video rebuilt as of a version.

Every change a subscriber must be able to replay after a cursor has a row in
``video_status_events``, written by the lifecycle (:mod:`vidgen.jobs.lifecycle`) and
nowhere else. A status change has ``from_status != to_status``. A change that keeps the
status (an edit, a soft delete, a restore) has ``from_status == to_status`` and a JSON
message (:func:`change_note`): the change's name and ``before``, the values of the columns
it replaced, from which :func:`view_at` takes the video back to an older version.

:data:`UNDOABLE` is the one list of those columns: the lifecycle refuses to record a change
of any other column, and a past view takes back exactly these. Progress reports have no
row: they are not replayed (the next change carries the latest progress).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from vidgen.models import Video, VideoStatus, VideoStatusEvent

#: The video columns a change that keeps the status may replace, and a past view takes back
#: from its row. Tags are not among them: a past view shows them as they are now.
UNDOABLE = frozenset({"caption", "video_style", "theme_id", "deleted_at"})

# Columns kept as ISO text in a note (JSON has no datetime), and read back as datetimes.
_DATETIMES = frozenset({"deleted_at", "updated_at"})

#: The columns a bus event of a change without an event-log row carries as its ``state``
#: (what that change may set: see ``vidgen.jobs.lifecycle.publishing.STATE_COLUMNS``).
EVENT_STATE = frozenset({"updated_at", "status_message", "prediction_id"})

#: The output of a finished job: set only by the change to ``completed``, so every older
#: version had none.
OUTPUT = (
    "video_file",
    "video_url",
    "thumbnail_file",
    "thumbnail_url",
    "file_size",
    "frame_rate",
    "width",
    "height",
    "codec",
)


def change_note(change: str, before: Mapping[str, Any]) -> str:
    """The message of a change's row: its name and the replaced values (``before``).

    Raises:
        ValueError: ``before`` names a column outside :data:`UNDOABLE` (no past view could
            take it back).
    """
    foreign = set(before) - UNDOABLE
    if foreign:
        raise ValueError(f"not undoable (see events.history.UNDOABLE): {sorted(foreign)}")
    values = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in before.items()}
    return json.dumps({"change": change, "before": values}, separators=(",", ":"))


def values_before(row: VideoStatusEvent) -> dict[str, Any]:
    """The columns a change that kept the status replaced, with their earlier values;
    empty for a status change (or a message that is not a change note)."""
    if row.is_status_change:
        return {}
    try:
        before = dict(json.loads(row.message or "")["before"])
    except (ValueError, KeyError, TypeError):
        return {}
    for name in _DATETIMES & before.keys():
        if isinstance(before[name], str):
            before[name] = dt.datetime.fromisoformat(before[name])
    return before


def view_at(
    video: Video,
    history: Sequence[VideoStatusEvent],
    version: int,
    *,
    status: str | None = None,
    progress: float | None = None,
    state: Mapping[str, Any] | None = None,
) -> Video:
    """A copy of ``video`` as of ``version`` (older than its own), from its event log.

    Args:
        video: the video as loaded (never modified).
        history: its event-log rows up to its version, oldest first.
        version: the version to show.
        status: the status at that version, when the caller knows it (a bus event);
            default: the last status change at or before it.
        progress: the progress at that version when known (a bus event); default: as
            loaded, or 0 for a queued video.
        state: the columns of :data:`EVENT_STATE` as committed at that version, when the
            bus event of a change without an event-log row carries them.
    """
    upto = [h for h in history if h.version <= version]
    entry = upto[-1] if upto else None
    past = copy.copy(video)
    past.version = version
    past.status = VideoStatus(status or (entry.to_status if entry is not None else video.status))
    if progress is not None:
        past.progress = float(progress)
    elif past.status is VideoStatus.QUEUED:
        past.progress = 0.0
    if entry is not None and entry.version == version:
        past.updated_at = entry.at
    if past.status is not VideoStatus.COMPLETED:
        past.completed_at = None
        for name in OUTPUT:
            setattr(past, name, None)
    if state:
        for name, value in state.items():
            if name in EVENT_STATE:
                if name in _DATETIMES and isinstance(value, str):
                    value = dt.datetime.fromisoformat(value)
                setattr(past, name, value)
    # Undo the later changes that kept the status, newest first, from their rows.
    for later in reversed(history):
        if later.version <= version:
            break
        for name, value in values_before(later).items():
            if name in UNDOABLE:
                setattr(past, name, value)
    return past
