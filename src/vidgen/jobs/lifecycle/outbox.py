"""The outbox write: each status change of a video that has a webhook URL leaves a
:class:`~vidgen.models.WebhookDelivery` row, in the change's own transaction, holding what
the event will say (the video as that change left it). The workers deliver it
(:mod:`vidgen.webhooks_out`).

A video without a URL costs no statement and no round trip: where the change's statement
does not know the video's URL before it runs (the claim and the end of an attempt on
PostgreSQL), the insert is one more CTE of that statement, whose SELECT finds no row; the
other operations know the URL from the row they wrote and add the insert only when there
is one.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from vidgen import dialect

_COLUMNS = (
    "message_id, video_id, owner_id, event_id, version, video_status, progress, error_message,"
    " video_ref, thumbnail_ref, url, at, state, attempts, next_attempt_at"
)

#: The video columns an event's body shows beyond :data:`EVENT_COLUMNS
#: <vidgen.jobs.lifecycle.publishing.EVENT_COLUMNS>`.
MEDIA = ("error_message", "video_file", "video_url", "thumbnail_file", "thumbnail_url")
#: What a statement's video CTE must return, beyond those, for :func:`pg_cte`.
SNAPSHOT = ", ".join(("webhook_url", *MEDIA))

# The webhook-id: random, so two installations sending to one receiver never collide.
_PG_MESSAGE_ID = "'msg_' || replace(gen_random_uuid()::text, '-', '')"


def new_message_id() -> str:
    """A webhook-id, as :data:`_PG_MESSAGE_ID` makes them."""
    return "msg_" + secrets.token_hex(16)


def _values(
    row: str, *, event: str, at: str, due: str, version: str, status: str, output: bool = True
) -> str:
    refs = (
        f"COALESCE({row}.video_file, {row}.video_url),"
        f" COALESCE({row}.thumbnail_file, {row}.thumbnail_url)"
        if output
        else "NULL, NULL"
    )
    return (
        f"{row}.id, {row}.owner_id, {event}, {version}, {status}, {row}.progress,"
        f" {row}.error_message, {refs}, {row}.webhook_url, {at}, 'pending', 0, {due}"
    )


def pg_cte(
    name: str,
    *,
    source: str,
    row: str,
    event: str,
    at: str,
    hooked: str | None = None,
    version: str | None = None,
    status: str | None = None,
    output: bool = True,
) -> str:
    """A PostgreSQL CTE ``name`` inserting one outbox row per row of ``source`` whose video
    has a webhook URL.

    Args:
        source: the FROM clause (e.g. ``v, h``: the changed video and its event-log row).
        row: the alias whose columns are the video's (id, owner_id, progress, and
            :data:`SNAPSHOT`; version and status too unless given).
        event: the event-log row's id.
        at: the change's time (a placeholder).
        hooked: the filter (default ``row.webhook_url IS NOT NULL``); give one on the
            source's first table so that videos without a URL join nothing.
        version, status: expressions for the video's new version and status when ``row``
            does not hold them.
        output: False for a change whose video has no output yet, whatever ``row`` holds
            (its video and thumbnail columns are then not needed).
    """
    where = hooked or f"{row}.webhook_url IS NOT NULL"
    values = _values(
        row,
        event=event,
        at=at,
        due=at,
        version=version or f"{row}.version",
        status=status or f"{row}.status",
        output=output,
    )
    return (
        f"{name} AS (INSERT INTO webhook_deliveries ({_COLUMNS})"
        f" SELECT {_PG_MESSAGE_ID}, {values} FROM {source} WHERE {where})"
    )


async def record(conn: Any, video_id: int, event_id: int, at: dt.datetime) -> None:
    """Insert the outbox row of a change just written in this transaction (the video row
    as that change left it). Call it only for a video with a webhook URL."""
    p = dialect.Params()
    # Placeholders in the order they appear (SQLite's are positional).
    message_id, event, stamp, due = p(new_message_id()), p(event_id), p(at), p(at)
    values = _values("videos", event=event, at=stamp, due=due, version="version", status="status")
    await conn.execute_query(
        f"INSERT INTO webhook_deliveries ({_COLUMNS}) SELECT {message_id}, {values}"
        f" FROM videos WHERE id = {p(video_id)} AND webhook_url IS NOT NULL",
        p.values,
    )
