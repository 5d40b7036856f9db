"""Changes of a video that keep its status: an edit of its presentation, a soft delete, a
restore. Each bumps ``version`` and writes an event-log row that says what it replaced
(:mod:`vidgen.events.history`), so ``videoUpdates(after:)`` replays it and a subscriber can
show the video as it was before."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from tortoise.expressions import F
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from vidgen import dialect
from vidgen.events import history
from vidgen.jobs.lifecycle.rules import check_fields, now
from vidgen.models import Video

# The event-log row of a change that keeps the status, read from the row as the change
# left it (same transaction): the video's owner, status and new version.
_CHANGE_SQL = (
    "INSERT INTO video_status_events (video_id, owner_id, from_status, to_status, version,"
    " at, message, actor) SELECT id, owner_id, status, status, version, {at}, {note}, {actor}"
    " FROM videos WHERE id = {id} RETURNING id"
)


def locked(video_id: int) -> QuerySet[Video]:
    """The video row, locked until the transaction ends where the database has row locks
    (SQLite serialises writers anyway). Fetch whole rows (``.first()``): ``.values()`` and
    ``.values_list()`` drop the lock (Tortoise sends a plain SELECT)."""
    query = Video.filter(id=video_id)
    return query.select_for_update() if dialect.is_postgres() else query


async def edit(
    row: Video, changes: Mapping[str, Any], *, actor: str | None, change: str = "updated"
) -> int:
    """Set columns of a video (None clears), bump its ``version`` and log the change.

    Call it inside the change's transaction, with ``row`` the video as read there under its
    lock (:func:`locked`): the values it replaces are taken from it. ``changes`` may be
    empty (the change is elsewhere, e.g. its tags): it is still a new version.

    Returns:
        The event-log row's id; publish ``event_for(video, id)`` after the commit.

    Raises:
        ValueError: a column outside :data:`vidgen.events.history.UNDOABLE`.
    """
    check_fields(changes)
    before = {name: getattr(row, name) for name in changes}
    note = history.change_note(change, before)  # checks the columns before anything is written
    stamp = now()
    await Video.filter(id=row.id).update(**changes, version=F("version") + 1, updated_at=stamp)
    return await _log_change(row.id, note=note, actor=actor, at=stamp)


async def soft_delete(video_id: int, *, actor: str | None) -> int | None:
    """Mark a video deleted (``deleted_at``) unless it is already, in a transaction of its own.

    Returns:
        The event-log row's id (publish after this returns), or None when it was deleted
        already (nothing written).
    """
    stamp = now()
    async with in_transaction():
        marked = await Video.filter(id=video_id, deleted_at__isnull=True).update(
            deleted_at=stamp, version=F("version") + 1, updated_at=stamp
        )
        if not marked:
            return None
        note = history.change_note("deleted", {"deleted_at": None})
        return await _log_change(video_id, note=note, actor=actor, at=stamp)


async def restore(video_id: int, *, actor: str | None) -> int | None:
    """Clear a video's ``deleted_at`` (its status stays), in a transaction of its own.

    Returns:
        The event-log row's id (publish after this returns), or None when the video is
        not deleted (restored meanwhile, or gone): nothing written.
    """
    async with in_transaction():
        row = await locked(video_id).first()
        if row is None or row.deleted_at is None:
            return None
        return await edit(row, {"deleted_at": None}, actor=actor, change="restored")


async def _log_change(video_id: int, *, note: str, actor: str | None, at: dt.datetime) -> int:
    """Write the event-log row of a change that kept the status (from_status ==
    to_status: ``statusHistory`` leaves it out), after the UPDATE that bumped ``version``
    in the same transaction."""
    p = dialect.Params()
    sql = _CHANGE_SQL.format(at=p(at), note=p(note), actor=p(actor), id=p(video_id))
    rows = await Video._meta.db.execute_query_dict(sql, p.values)
    return int(rows[0]["id"])
