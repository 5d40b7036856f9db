"""A new video: its row, its first event-log row and its tag links, written together."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from vidgen import db, dialect
from vidgen.jobs.lifecycle import outbox
from vidgen.jobs.lifecycle.publishing import event_for
from vidgen.jobs.lifecycle.rules import (
    Admission,
    Change,
    NotAdmitted,
    StoryChanged,
    check_fields,
    now,
)
from vidgen.models import Video, VideoStatus


@dataclass(frozen=True)
class Named:
    """The rows a new video names, found by the statement that inserts it (PostgreSQL): the
    video is inserted only when each is the owner's (a story in the project, when both are
    given), every tag and the theme exist, and no video of the idempotency key does; its
    ``project_id`` (the story's when only a story is given) and ``theme_id`` and its tag
    links come from them. Otherwise nothing is written and :class:`NotFound` is raised: the
    caller then looks them up itself, for its errors, new tags or an earlier video.

    For a request without a paragraph index (whose story is guarded otherwise).
    """

    owner_id: int
    project_id: int | None
    story_id: int | None
    theme_key: str | None
    tag_keys: tuple[str, ...]
    idempotency_key: str | None

    @property
    def shape(self) -> tuple[bool, bool, bool, bool, bool]:
        return (
            self.project_id is not None,
            self.story_id is not None,
            self.theme_key is not None,
            bool(self.tag_keys),
            self.idempotency_key is not None,
        )

    def params(self) -> list[Any]:
        """The statement's values for :func:`_pg_named`, in its order."""
        values: list[Any] = [self.owner_id] if any(self.shape) else []
        if self.project_id is not None:
            values.append(self.project_id)
        if self.story_id is not None:
            values.append(self.story_id)
        if self.theme_key is not None:
            values.append(self.theme_key)
        if self.tag_keys:
            values.append(list(self.tag_keys))
        if self.idempotency_key is not None:
            values.append(self.idempotency_key)
        return values


class NotFound(Exception):
    """A :class:`Named` row was missing (or not as asked, or an earlier video of the key
    exists), or the statement refused the video for another reason (an admission): nothing
    was written. ``found``: what the statement found (the columns of :data:`FOUND`), for
    the caller to tell which."""

    def __init__(self, found: Mapping[str, Any]) -> None:
        super().__init__("a named row is missing, or the video was not admitted")
        self.found = found


def _pg_named(first: int, shape: NamedShape) -> str:
    """The CTEs of a :class:`Named` of ``shape``: ``l``, always one row, what was found
    (the columns of :data:`FOUND`, as :func:`vidgen.services.videos.named_rows.
    find_named_rows` finds them), and ``n``, the insert's source: one row (the video's
    ``project_id``, ``theme_id`` and ``tag_ids``) while every named row is as asked, none
    otherwise. Its values are parameters ``$first`` onwards, in :meth:`Named.params`
    order."""
    project, story, theme, tags, key = shape
    at = iter(range(first, first + 6))
    owner = f"${next(at)}" if any(shape) else ""  # (a parameter must be used)
    found = dict.fromkeys(FOUND, "NULL::int")
    found.update(l_project="false", l_story="false", l_earlier="false")
    found.update(l_tag_keys="ARRAY[]::text[]", l_tag_ids="ARRAY[]::int[]")
    conditions = []
    project_id = "NULL::int"
    if project:
        project_id = f"${next(at)}::int"  # typed: a bare parameter in a select list is text
        found["l_project"] = (
            f"EXISTS (SELECT 1 FROM projects WHERE id = {project_id} AND owner_id = {owner})"
        )
        conditions.append("l.l_project")
    if story:
        story_id = f"${next(at)}::int"
        one = f"FROM stories WHERE id = {story_id} AND owner_id = {owner}"
        found["l_story"] = f"EXISTS (SELECT 1 {one})"
        found["l_story_project"] = f"(SELECT project_id {one})"
        found["l_paragraphs"] = (
            "(SELECT CASE WHEN jsonb_typeof(paragraphs) = 'array'"
            f" THEN jsonb_array_length(paragraphs) ELSE 0 END {one})"
        )
        conditions.append("l.l_story")
        if project:  # the story must be in that very project
            conditions.append(f"l.l_story_project = {project_id}")
        else:  # the video goes into the story's project
            project_id = "l.l_story_project"
    if theme:
        found["l_theme"] = (
            f"(SELECT id FROM themes WHERE owner_id = {owner} AND name_key = ${next(at)})"
        )
        conditions.append("l.l_theme IS NOT NULL")
    if tags:
        keys = f"${next(at)}::text[]"
        matched = (
            f"FROM unnest({keys}) WITH ORDINALITY AS k(key, i)"
            f" JOIN tags AS t ON t.owner_id = {owner} AND t.name_key = k.key ORDER BY k.i"
        )
        found["l_tag_keys"] = f"ARRAY(SELECT t.name_key {matched})"
        found["l_tag_ids"] = f"ARRAY(SELECT t.id {matched})"
        conditions.append(f"cardinality(l.l_tag_ids) = cardinality({keys})")  # all found
    if key:
        found["l_earlier"] = (
            f"EXISTS (SELECT 1 FROM videos WHERE owner_id = {owner}"
            f" AND idempotency_key = ${next(at)})"
        )
        conditions.append("NOT l.l_earlier")
    lookup = ", ".join(f"{value} AS {name}" for name, value in found.items())
    insert = (
        f"SELECT {project_id} AS project_id, l.l_theme AS theme_id, l.l_tag_ids AS tag_ids FROM l"
    )
    if conditions:
        insert += f" WHERE {' AND '.join(conditions)}"
    return f"l AS (SELECT {lookup}), n AS ({insert})"


#: What the statement of a :class:`Named` found (see :func:`_pg_named`), in every case.
FOUND = (
    "l_project", "l_story", "l_story_project", "l_paragraphs", "l_theme", "l_tag_keys",
    "l_tag_ids", "l_earlier",
)  # fmt: skip


# The story row a new video's paragraph index points into, share-locked by the inserting
# statement and re-checked on the row as it is when the lock is granted (PostgreSQL
# re-evaluates a locked row's WHERE after waiting). update_story locks the same row FOR
# UPDATE before it checks that no video points past the new paragraphs, so the two
# serialise: a story is never shortened under a video being added to it.
_STORY_GUARD = {
    dialect.POSTGRES: (
        "SELECT 1 FROM stories WHERE id = {id} AND owner_id = {owner} AND CASE WHEN"
        " jsonb_typeof(paragraphs) = 'array' THEN jsonb_array_length(paragraphs) ELSE 0 END"
        " > {index} FOR SHARE"
    ),
    dialect.SQLITE: (
        "SELECT 1 FROM stories WHERE id = ? AND owner_id = ? AND CASE WHEN"
        " json_type(paragraphs) = 'array' THEN json_array_length(paragraphs) ELSE 0 END > ?"
    ),
}


# A new queued video's turn (fair_rank, docs/jobs.md "Claiming"): one more than its owner's
# last queued video of the same priority, and never less than the rank at the head of that
# priority's queue (a newcomer goes straight to the head's turn, an owner with a backlog
# stays behind it). Two index probes (idx_videos_owner_queue, idx_videos_fair_claim), no
# scan. The value passed for the column is the floor (0). Two requests of one owner racing
# may share a rank; the claim then orders them by age.
_FAIR_RANK = (
    "{max}({floor}, COALESCE((SELECT q.fair_rank + 1 FROM videos AS q"
    " WHERE q.owner_id = {owner} AND q.priority = {priority}"
    " AND q.status = 'queued' AND q.deleted_at IS NULL"
    " ORDER BY q.fair_rank DESC LIMIT 1), 0),"
    " COALESCE((SELECT q.fair_rank FROM videos AS q WHERE q.priority = {priority}"
    " AND q.status = 'queued' AND q.deleted_at IS NULL"
    " ORDER BY q.priority DESC, q.fair_rank LIMIT 1), 0))"
)


def _insert_marks(columns: tuple[str, ...], mark: Any) -> list[str]:
    """Each column's placeholder (``mark(i)`` for the i-th, from 1); ``fair_rank``'s is
    the expression that computes it from the row's owner and priority."""
    marks = [mark(i) for i in range(1, len(columns) + 1)]
    if "fair_rank" in columns and "owner_id" in columns and "priority" in columns:
        at = columns.index
        postgres = mark(1).startswith("$")
        marks[at("fair_rank")] = _FAIR_RANK.format(
            max="GREATEST" if postgres else "max",
            floor=f"{marks[at('fair_rank')]}::bigint" if postgres else marks[at("fair_rank")],
            owner=marks[at("owner_id")],
            priority=marks[at("priority")],
        )
    return marks


def _pg_insert(
    columns: tuple[str, ...],
    sources: tuple[str, ...] = (),
    returning: str = "id",
    named: bool = False,
) -> str:
    """PostgreSQL's INSERT of a video's ``columns`` (``$1..$n``), returning its id (or
    ``returning``); with ``sources``, a row only while each of those CTEs finds one: the
    story guard ``s`` (:func:`_pg_guard`), the admission ``a`` (:func:`_pg_admission`),
    the named rows ``n`` (:func:`_pg_named`; with ``named``, whose ``project_id`` and
    ``theme_id`` the row takes, its own values standing in only where those are null: the
    caller passes the request's project id, or null, and a null theme)."""
    listed = _insert_marks(columns, lambda i: f"${i}")
    if named:
        for column in ("project_id", "theme_id"):
            at = columns.index(column)
            listed[at] = f"COALESCE(n.{column}, {listed[at]})"
    marks = ", ".join(listed)
    names = ", ".join(f'"{column}"' for column in columns)
    if sources:
        return (
            f"INSERT INTO videos ({names}) SELECT {marks} FROM {', '.join(sources)}"
            f" RETURNING {returning}"
        )
    return f"INSERT INTO videos ({names}) VALUES ({marks}) RETURNING {returning}"


def _pg_guard(first: int) -> str:
    """The story guard as the CTE ``s``: its story id, owner id and paragraph index are
    parameters ``$first`` to ``$first+2``."""
    lock = _STORY_GUARD[dialect.POSTGRES].format(
        id=f"${first}", owner=f"${first + 1}", index=f"${first + 2}"
    )
    return f"s AS ({lock})"


def _pg_admission(template: str, first: int, count: int) -> str:
    """An :class:`Admission` as the CTE ``a`` (one row while it holds): its ``count``
    values are parameters ``$first`` onwards."""
    condition = template.format(*(f"${i}" for i in range(first, first + count)))
    return f"a AS (SELECT 1 WHERE {condition})"


def _sources(
    guard: bool, admission: tuple[str, int] | None, named: NamedShape | None = None
) -> tuple[str, ...]:
    return (
        (("s",) if guard else ())
        + (("a",) if admission is not None else ())
        + (("n",) if named is not None else ())
    )


def _pg_conditions(
    first: int,
    guard: bool,
    admission: tuple[str, int] | None,
    named: NamedShape | None = None,
) -> list[str]:
    """The CTEs of :func:`_sources`, their parameters numbered from ``first``: the story
    guard's three, then the admission's, then the named rows'."""
    ctes = []
    if guard:
        ctes.append(_pg_guard(first))
        first += 3
    if admission is not None:
        ctes.append(_pg_admission(admission[0], first, admission[1]))
        first += admission[1]
    if named is not None:
        ctes.append(_pg_named(first, named))
    return ctes


NamedShape = tuple[bool, bool, bool, bool, bool]  # Named.shape


@functools.cache
def _created_sql(
    columns: tuple[str, ...] | None,
    tags: bool,
    guard: bool = False,
    admission: tuple[str, int] | None = None,
    hook: bool = False,
    named: NamedShape | None = None,
) -> str:
    """:func:`record_created`'s PostgreSQL statement; its parameters: the video's values
    (or its id when ``columns`` is None, the video being saved already), the 7 history
    values, the tag ids as one array when ``tags``, then the story guard's story id, owner id
    and paragraph index when ``guard`` (the video is inserted only while that story has the
    paragraph), then the values of ``admission`` (its SQL, how many values) when given (the
    video is inserted only while it holds). Either refusing, the statement returns no row.
    With ``hook`` (a new video with a webhook URL), its outbox row too. With ``named`` (the
    shape of a :class:`Named`), its values come last, the video takes its project, theme
    and tags from them (``tags`` is then False), and the statement also returns the
    video's ``project_id`` and ``theme_id``."""
    if named is not None and (columns is None or tags):
        raise ValueError("named rows are for a new video, whose tags they name")
    if columns is not None:
        returning = "id, fair_rank"  # the turn the insert computed
        if named is not None:
            returning += ", project_id, theme_id"
        if hook:
            returning += f", owner_id, version, status, progress, {outbox.SNAPSHOT}"
        insert = _pg_insert(
            columns, _sources(guard, admission, named), returning, named=named is not None
        )
        source = f"v AS ({insert})"
        n = len(columns)
    else:
        source = "v AS (SELECT $1::int AS id)"
        n = 1
    history = ", ".join(f"${i}" for i in range(n + 1, n + 8))
    sql = (
        f"WITH {source}, h AS (INSERT INTO video_status_events (video_id, owner_id,"
        f" from_status, to_status, version, at, message, actor) SELECT id, {history} FROM v"
        " RETURNING id)"
    )
    after = n + 8
    if hook:  # its outbox row; the history row's time is its 5th value
        if columns is not None:
            sql += ", " + outbox.pg_cte("w", source="v, h", row="v", event="h.id", at=f"${n + 5}")
        else:  # the row saved already is visible to this statement
            sql += ", " + outbox.pg_cte(
                "w",
                source="videos AS s, h",
                row="s",
                event="h.id",
                at=f"${n + 5}",
                hooked="s.id = $1 AND s.webhook_url IS NOT NULL",
            )
    if tags:
        sql += (
            ", t AS (INSERT INTO video_tags (videos_id, tag_id)"
            f" SELECT v.id, u.tag FROM v, unnest(${after}::int[]) AS u(tag))"
        )
        after += 1
    elif named is not None and named[3]:  # the tags the named rows found
        sql += (
            ", t AS (INSERT INTO video_tags (videos_id, tag_id)"
            " SELECT v.id, u.tag FROM v, n, unnest(n.tag_ids) AS u(tag))"
        )
    ctes = _pg_conditions(after, guard, admission, named) if columns is not None else []
    if ctes:
        sql = f"WITH {', '.join(ctes)}, " + sql.removeprefix("WITH ")
    turn = "v.fair_rank" if columns is not None else "NULL::bigint AS fair_rank"
    if named is not None:  # one row either way: what was found, and the video if inserted
        found = ", ".join(f"l.{name}" for name in FOUND)
        return (
            sql + f" SELECT v.id, {turn}, h.id AS event_id, v.project_id, v.theme_id, {found}"
            " FROM l LEFT JOIN (v CROSS JOIN h) ON true"
        )
    return sql + f" SELECT v.id, {turn}, h.id AS event_id FROM v, h"


def _refused(admission: Admission | None) -> Exception:
    """What an insert that wrote no row raises: with an admission, :class:`NotAdmitted`
    (the story guard may have refused it as well; the caller tells which)."""
    return NotAdmitted() if admission is not None else StoryChanged()


def _shape(admission: Admission | None) -> tuple[str, int] | None:
    return (admission.sql, len(admission.params)) if admission is not None else None


async def _insert_alone(
    conn: Any, values: Mapping[str, Any], guard: list[Any], admission: Admission | None = None
) -> tuple[int, int]:
    """Insert a video's row by itself (guarded and admitted as :func:`record_created`'s
    own insert); returns its id and its turn (``fair_rank``, computed by the insert).

    Raises:
        StoryChanged: the guard found the story without that paragraph; nothing written.
        NotAdmitted: the admission refused it (see :func:`_refused`); nothing written.
    """
    extra = list(admission.params) if admission is not None else []
    if dialect.is_postgres():
        sql = _pg_insert(tuple(values), _sources(bool(guard), _shape(admission)), "id, fair_rank")
        ctes = _pg_conditions(len(values) + 1, bool(guard), _shape(admission))
        if ctes:
            sql = f"WITH {', '.join(ctes)} {sql}"
    else:
        columns = ", ".join(f'"{column}"' for column in values)
        # Numbered: the rank's expression repeats the owner's and the priority's values
        # (the plain ? of the guard and admission after them number on from the last).
        marks = ", ".join(_insert_marks(tuple(values), lambda i: f"?{i}"))
        conditions = [f"EXISTS ({_STORY_GUARD[dialect.SQLITE]})"] if guard else []
        if admission is not None:
            conditions.append(f"({admission.sql.format(*('?' for _ in extra))})")
        if conditions:
            sql = (
                f"INSERT INTO videos ({columns}) SELECT {marks}"
                f" WHERE {' AND '.join(conditions)} RETURNING id, fair_rank"
            )
        else:
            sql = f"INSERT INTO videos ({columns}) VALUES ({marks}) RETURNING id, fair_rank"
    inserted = await conn.execute_query_dict(sql, [*values.values(), *guard, *extra])
    if not inserted:
        raise _refused(admission)
    return int(inserted[0]["id"]), int(inserted[0]["fair_rank"])


async def record_created(
    video: Video,
    *,
    actor: str | None,
    message: str | None = None,
    tag_ids: Sequence[int] = (),
    paragraph_count: int | None = None,
    with_id: Callable[[int], Awaitable[Mapping[str, Any]]] | None = None,
    admission: Admission | None = None,
    named: Named | None = None,
) -> Change:
    """Write the first history row of a new ``queued`` video, and its tag links.

    A video not saved yet is inserted here too, checked as :meth:`Video.save` checks it
    (``paragraph_count`` as in :meth:`Video.check_paragraph_index`); on PostgreSQL the
    video, its history row and its tag links are then ONE statement, atomic without a
    transaction. Inside a caller's transaction, publish ``change.event`` after it commits.
    A new video with a story paragraph is inserted only while the story still has that
    paragraph, checked in the same statement under a lock (:data:`_STORY_GUARD`).

    Args:
        video: the new video (``queued``); inserted here unless it was already.
        actor: who asked (``user:12``).
        message: the history note (default ``queued``).
        tag_ids: the tags to link.
        paragraph_count: the story's paragraphs, when the caller just read them.
        with_id: for a video some of whose values need its id (a stored input image's
            key): called with the id once the row is inserted, returns those columns'
            values, which are written before the history row. Takes a statement more, so
            call it inside a transaction (the caller's, which then covers the file too).
        admission: the video is inserted only while this holds, checked by the inserting
            statement itself (a user's quota: :mod:`vidgen.services.quotas`).
        named: PostgreSQL only, for a new video without a paragraph index, ``tag_ids``
            or ``with_id``: the rows the request names, found by the inserting statement
            itself (:class:`Named`); the video's ``project_id`` and ``theme_id`` are set
            from them.

    Raises:
        ValidationError: the unsaved video failed its checks; nothing was written.
        IntegrityError: e.g. a repeated idempotency key; nothing was written.
        StoryChanged: the story lost that paragraph (or was deleted); nothing was written.
        NotAdmitted: the admission refused the video (or, with it, the story guard);
            nothing was written.
        NotFound: with ``named``, the statement wrote nothing (a named row is missing, or
            the admission refused); the caller looks for itself.
    """
    new = not video._saved_in_db
    if named is not None and (
        not new or tag_ids or with_id is not None or video.paragraph_index is not None
    ):
        raise ValueError("named rows are for a new video without tags, paragraph or image")
    if named is not None and not dialect.is_postgres():
        raise ValueError("named rows are found by PostgreSQL's statement only")
    values = await video.insert_values(paragraph_count=paragraph_count) if new else {}
    guard = (
        [video.story_id, video.owner_id, video.paragraph_index]
        if new and video.story_id is not None and video.paragraph_index is not None
        else []
    )
    conn = Video._meta.db
    if with_id is not None:
        if not new:
            raise ValueError("with_id is for a video that is not inserted yet")
        video.id, video.fair_rank = await _insert_alone(conn, values, guard, admission)
        video._saved_in_db = True
        await _set_columns(conn, video, await with_id(video.id))
        new, values, guard, admission = False, {}, [], None
    stamp = now()
    status = VideoStatus(video.status)
    history = [video.owner_id, None, status.value, video.version, stamp, message or "queued", actor]
    if dialect.is_postgres():
        params = [*values.values()] if new else [video.id]
        params += history
        if tag_ids:
            params.append(list(tag_ids))
        params += guard
        if admission is not None:
            params += admission.params
        if named is not None:
            params += named.params()
        hook = video.webhook_url is not None
        sql = _created_sql(
            tuple(values) if new else None,
            bool(tag_ids),
            bool(guard),
            _shape(admission),
            hook,
            named.shape if named is not None else None,
        )
        rows = await db.fetch(conn, sql, params)
        if named is not None and rows[0]["id"] is None:
            raise NotFound(rows[0])
        if not rows:
            raise _refused(admission)
        video_id, event_id = rows[0]["id"], rows[0]["event_id"]
        if named is not None:
            video.project_id, video.theme_id = rows[0]["project_id"], rows[0]["theme_id"]
        if rows[0]["fair_rank"] is not None:
            video.fair_rank = rows[0]["fair_rank"]
    else:
        async with in_transaction() as tx:
            if new:
                video_id, video.fair_rank = await _insert_alone(tx, values, guard, admission)
            else:
                video_id = video.id
            rows = await tx.execute_query_dict(
                "INSERT INTO video_status_events (video_id, owner_id, from_status, to_status,"
                " version, at, message, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [video_id, *history],
            )
            event_id = rows[0]["id"]
            if video.webhook_url is not None:
                await outbox.record(tx, video_id, event_id, stamp)
            if tag_ids:
                await tx.execute_query(
                    "INSERT INTO video_tags (videos_id, tag_id) VALUES "
                    + ", ".join("(?, ?)" for _ in tag_ids),
                    [value for tag_id in tag_ids for value in (video_id, tag_id)],
                )
    if new:
        video.id = video_id
        video._saved_in_db = True
    return Change(video.id, status, status, video.version, event_for(video, event_id))


async def _set_columns(conn: Any, video: Video, values: Mapping[str, Any]) -> None:
    """Set more columns of a video just inserted (no new version: nobody has seen it)."""
    if not values:
        return
    check_fields(values)
    meta = video._meta
    p = dialect.Params()
    sets = []
    for name, value in values.items():
        encoded = meta.fields_map[name].to_db_value(value, video)
        sets.append(f'"{meta.fields_db_projection[name]}" = {p(encoded)}')
    sql = f"UPDATE videos SET {', '.join(sets)} WHERE id = {p(video.id)}"
    await conn.execute_query(sql, p.values)
    for name, value in values.items():
        setattr(video, name, value)
