"""The messages published on the bus for a video change and for the workers.

A message is a dict (JSON on Redis). A video change is small on purpose: subscribers load
the video itself, once per version and process (``vidgen.events.video_states``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidgen.events.channels import WAKEUP, WAKEUP_CHANNEL, owner_channel, video_channel

#: ``(channel, message)``: what a bus publishes.
Item = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class VideoEvent:
    """A committed change of one video: small, the subscriber loads the rest."""

    video_id: int
    owner_id: int
    version: int
    status: str
    progress: float
    event_id: int | None = None  # event-log row id (the resume cursor), None for progress
    project_id: int | None = None
    story_id: int | None = None
    # A change without an event-log row: the columns it may have changed, as committed at
    # this version (``updated_at`` as ISO text), so no subscriber shows a newer row's.
    state: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, in declaration order (``asdict`` without its deep copy:
        every field is a scalar or a flat dict of scalars)."""
        return {name: getattr(self, name) for name in _VIDEO_EVENT_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoEvent:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


_VIDEO_EVENT_FIELDS = tuple(VideoEvent.__dataclass_fields__)


def video_event_items(event: VideoEvent) -> list[Item]:
    """One video change as ``(channel, message)`` pairs: its video's and its owner's
    channels, one dict for both (the Redis bus encodes it once)."""
    payload = event.to_dict()
    return [(video_channel(event.video_id), payload), (owner_channel(event.owner_id), payload)]


def wakeup() -> Item:
    """The wake-up for idle workers: a job became due."""
    return WAKEUP_CHANNEL, {"type": WAKEUP}
