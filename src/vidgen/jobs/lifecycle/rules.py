"""The lifecycle's rules: which status may follow which, its errors, and what a change gives
back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from vidgen import errors
from vidgen.events.messages import VideoEvent
from vidgen.models import VideoStatus

S = VideoStatus

TRANSITIONS: dict[VideoStatus, frozenset[VideoStatus]] = {
    S.QUEUED: frozenset({S.PROCESSING, S.CANCELED}),
    S.PROCESSING: frozenset({S.COMPLETED, S.FAILED, S.CANCELED, S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELED: frozenset({S.QUEUED}),
    S.COMPLETED: frozenset(),
}


#: The columns only the lifecycle's own operations set (each checks or bumps them itself):
#: no caller may pass them as plain ``fields``.
OWN_COLUMNS = frozenset({"status", "version", "attempt"})


def still_processing(table: str = "") -> str:
    """PostgreSQL's check that a job row reached by its key (``id = …``) is still running:
    ``status || '' = 'processing'``, the same truth as ``status = 'processing'`` (status is
    never null) written so that the planner cannot match it to the partial indexes of
    running jobs (``idx_videos_running``, ``idx_videos_worker``: ``WHERE status =
    'processing'``). With statistics from before a burst of claims, those indexes look
    nearly empty, and a single-row write scanned one of them, filtering every running job
    by id (0.6 ms with 2,000 in flight), instead of the primary key. ``table``: the alias to
    qualify the column with."""
    column = f"{table}.status" if table else "status"
    return f"{column} || '' = 'processing'"


def check_fields(fields: Iterable[str]) -> None:
    """Refuse plain column values that would set :data:`OWN_COLUMNS`."""
    own = OWN_COLUMNS.intersection(fields)
    if own:
        raise ValueError(f"{sorted(own)}: the lifecycle's own columns, not plain fields")


class IllegalTransition(errors.Conflict):
    """The video is not in a state that allows this change."""


class StaleAttempt(errors.Conflict):
    """A fenced write by a worker whose attempt is no longer the current one."""


class StoryChanged(Exception):
    """The story a new video points into was deleted or shortened past its paragraph after
    the request was checked; nothing was written."""


class NotAdmitted(Exception):
    """A new video's (or a retry's) :class:`Admission` refused it; nothing was written."""


@dataclass(frozen=True, slots=True)
class Admission:
    """A condition a change must meet, checked by the statement that makes the change: the
    caller's rule (a user's quota) holds atomically with the write, and costs no round trip
    of its own.

    ``sql`` is a boolean SQL expression with one ``{}`` per value of ``params``, in order
    (placeholders are filled in the open database's style). It may take locks; they are
    held until the write's transaction ends.
    """

    sql: str
    params: tuple[object, ...] = ()


def now() -> dt.datetime:
    """The application's UTC clock: every time the lifecycle writes (and ``scheduled_at``)."""
    return dt.datetime.now(dt.UTC)


def can_transition(current: VideoStatus | str, to: VideoStatus | str) -> bool:
    return VideoStatus(to) in TRANSITIONS[VideoStatus(current)]


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of one transition, with the event to publish after commit."""

    video_id: int
    from_status: VideoStatus
    to_status: VideoStatus
    version: int
    event: VideoEvent
