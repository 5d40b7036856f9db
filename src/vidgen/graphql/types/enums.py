"""The enums of the schema, read from the values the models store."""

from __future__ import annotations

import enum
from typing import Any

import strawberry


@strawberry.enum(name="VideoStatus", description="Where a video is in its lifecycle.")
class VideoStatusEnum(enum.Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @classmethod
    def of(cls, value: Any) -> VideoStatusEnum:
        key = str(getattr(value, "value", value))
        member = cls._value2member_map_.get(key)  # what cls(key) finds first
        return cls(key) if member is None else member  # type: ignore[return-value]


@strawberry.enum(name="OutputFormat", description="Container and codec of the output video.")
class OutputFormatEnum(enum.Enum):
    MP4 = "mp4"
    WEBM = "webm"

    @classmethod
    def of(cls, value: Any) -> OutputFormatEnum:
        return cls(str(getattr(value, "value", value)))


@strawberry.enum(
    name="VideoKind", description="A clip is one generation; a film stitches a story's clips."
)
class VideoKindEnum(enum.Enum):
    CLIP = "clip"
    FILM = "film"

    @classmethod
    def of(cls, value: Any) -> VideoKindEnum:
        return cls(str(getattr(value, "value", value)))


@strawberry.enum(name="Transition", description="How a film passes from one clip to the next.")
class TransitionEnum(enum.Enum):
    CUT = "cut"
    CROSSFADE = "crossfade"
