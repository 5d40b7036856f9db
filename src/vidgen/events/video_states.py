"""A video as committed at some version, loaded once per process for all its subscribers.

How a bus event becomes a video at every subscriber, with ONE database read per process::

    bus event {video_id, version, ...} ──▶ VideoStates.at_least(video_id, version)
         (one load per (video, version) in this process: cached, in-flight loads shared)
                                          │  Video row + owner/theme/project/story + tags
                                          ▼  + event log, read once
    each subscriber: the VideoState, shared (never mutated), as of the event's version

The loads started in one pass of the event loop are read together (:func:`load_states`),
for whichever videos they are: a burst of events over many videos costs three reads per
pass, not three per video.

A state may be newer than the event being delivered (several changes committed before the
load ran): :meth:`VideoState.at_version` then rebuilds the video as of the event's version
from the event log (:func:`vidgen.events.history.view_at`), and :meth:`VideoState.between`
gives the versions a subscriber missed (two processes publish after their commits, in
either order), so each change is still delivered in order.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortoise.fields.relational import ManyToManyRelation
from tortoise.models import Model

from vidgen import db, dialect
from vidgen.events.history import view_at
from vidgen.models import Project, Story, Tag, Theme, User, Video, VideoStatusEvent

#: Video states kept per process (the latest loaded state of each recent video).
STATE_CACHE_SIZE = 4096


@dataclass(frozen=True, eq=False)
class VideoState:
    """A video as committed at ``video.version``, with every relation a subscriber may ask
    for. Shared by all subscribers in the process: never mutate it.

    A state may be newer than the event being delivered (several changes committed before
    the load ran). :meth:`at_version` then gives the video as of the event's version: the
    event's status and progress over the loaded row, built once and shared as well, so each
    change is still delivered in order.
    """

    video: Video
    owner: User | None
    theme: Theme | None
    project: Project | None
    story: Story | None
    tags: list[Tag]
    history: list[VideoStatusEvent]
    _views: dict[int, Video] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> int:
        return int(self.video.version)

    def history_at(self, version: int) -> list[VideoStatusEvent]:
        if version >= self.version:
            return self.history
        return [h for h in self.history if h.version <= version]

    def between(self, seen: int, version: int, *, after_id: int = 0) -> list[Video]:
        """The video as of each logged change after version ``seen`` (and event id
        ``after_id``) and before ``version``, oldest first: what a subscriber missed when the
        event of ``version`` arrived before theirs (two processes publish after their
        commits, in either order)."""
        return [
            self.at_version(h.version, status=h.to_status)
            for h in self.history
            if seen < h.version < version and h.id > after_id
        ]

    def at_version(
        self,
        version: int,
        *,
        status: str | None = None,
        progress: float | None = None,
        state: dict[str, Any] | None = None,
    ) -> Video:
        """The video as of ``version`` (``status``/``progress``/``state`` from the event
        when known)."""
        if version >= self.version:
            return self.video
        past = self._views.get(version)
        if past is not None:
            return past
        past = view_at(
            self.video, self.history, version, status=status, progress=progress, state=state
        )
        self._views[version] = past
        return past

    def event_view(self, message: dict[str, Any]) -> Video:
        """The video as of one bus event (a :class:`~vidgen.events.messages.VideoEvent`
        dict)."""
        return self.at_version(
            int(message.get("version") or 0),
            status=message.get("status"),
            progress=message.get("progress"),
            state=message.get("state"),
        )


async def load_state(video_id: int) -> VideoState | None:
    """One video's :class:`VideoState` (:func:`load_states` for one id), or None when it
    does not exist."""
    return (await load_states([video_id])).get(video_id)


#: The most videos one batched load reads (its ``IN`` lists).
LOAD_BATCH = 256

#: Column-name prefixes of the joined relations in the row statement (``o_id``, ...).
_RELATIONS: tuple[tuple[str, type[Model], str, str], ...] = (
    ("owner", User, "users", "o_"),
    ("theme", Theme, "themes", "t_"),
    ("project", Project, "projects", "p_"),
    ("story", Story, "stories", "s_"),
)
_TAG_VIDEO = "_vt_video_id"  # the tag rows' video id (not a Tag column)


def _columns(model: type[Model]) -> list[str]:
    return list(model._meta.fields_db_projection.values())


@functools.cache
def _statements(postgres: bool) -> tuple[str, str, str]:
    """The three reads of :func:`load_states` with ``{ids}`` for the ids' condition: the
    video rows joined with their owner, theme, project and story (each relation's columns
    named with its prefix), the tags with their video's id, the history."""
    select = [f'v."{c}"' for c in _columns(Video)]
    joins = []
    for name, model, table, prefix in _RELATIONS:
        alias = prefix[0]
        select += [f'{alias}."{c}" AS "{prefix}{c}"' for c in _columns(model)]
        joins.append(f'LEFT OUTER JOIN "{table}" {alias} ON {alias}."id" = v."{name}_id"')
    rows = f'SELECT {", ".join(select)} FROM "videos" v {" ".join(joins)} WHERE v."id" {{ids}}'
    tag_columns = ", ".join(f't."{c}"' for c in _columns(Tag))
    link = Video._meta.fields_map["tags"]  # the link table and its columns
    video_key = f'vt."{link.backward_key}"'  # type: ignore[attr-defined]
    tags = (
        f'SELECT {tag_columns}, {video_key} AS "{_TAG_VIDEO}"'
        f' FROM "tags" t JOIN "{link.through}" vt'  # type: ignore[attr-defined]
        f' ON vt."{link.forward_key}" = t."id"'  # type: ignore[attr-defined]
        f' WHERE {video_key} {{ids}} ORDER BY t."name_key", t."id"'
    )
    history_columns = ", ".join(f'"{c}"' for c in _columns(VideoStatusEvent))
    history = (
        f'SELECT {history_columns} FROM "video_status_events"'
        ' WHERE "video_id" {ids} ORDER BY "id"'
    )
    return rows, tags, history


async def _fetch_for(template: str, video_ids: list[int], postgres: bool) -> Sequence[Any]:
    if postgres:  # one prepared statement whatever the number of ids
        sql, params = template.format(ids="= ANY($1::int[])"), [video_ids]
    else:
        sql, params = template.format(ids=f"IN ({', '.join('?' * len(video_ids))})"), video_ids
    return await db.fetch(Video._meta.db, sql, params)


async def load_states(video_ids: list[int]) -> dict[int, VideoState]:
    """The :class:`VideoState` of each video, with three reads for all of them, one after
    the other: the video rows (joined with owner, theme, project and story), then their
    tags, then their status history. Videos not found are left out.

    The rows are read first, on purpose. The reads are separate statements (separate
    snapshots on PostgreSQL), and a status change commits its history row together with
    the version it bumps: a history read that starts after the row was read holds every
    history row up to the row's ``version`` (newer rows are cut off here). Read them the
    other way round, or at once, and a row could come back newer than its history, and the
    event for that version would go out without its own history entry.

    The statements are written here and the instances built from the raw rows
    (:func:`vidgen.db.row_builder`), as the ORM builds them for
    ``Video.filter(id__in=...).select_related("owner", "theme", "project", "story")
    .prefetch_related("tags")`` and the history query: equal objects, field by field
    (tests/live/test_video_states_sql.py), for a fraction of the CPU. Loads happen per
    event batch, and with few events per batch they are most of what an event costs.
    """
    if not video_ids:
        return {}
    postgres = dialect.is_postgres()
    rows_sql, tags_sql, history_sql = _statements(postgres)
    async with db.one_connection():  # PostgreSQL: one pool acquire for the three reads
        rows = await _fetch_for(rows_sql, video_ids, postgres)
        if not rows:
            return {}
        found = [row["id"] for row in rows]
        tag_rows = await _fetch_for(tags_sql, found, postgres)
        history_rows = await _fetch_for(history_sql, found, postgres)
    build_video = db.row_builder(Video)
    related = [
        (f"_{name}", prefix + "id", db.row_builder(model, prefix))
        for name, model, _, prefix in _RELATIONS
    ]
    videos: dict[int, Video] = {}
    for row in rows:
        video = build_video(row)
        for attr, key, build in related:
            _set(video, attr, None if row[key] is None else build(row))
        videos[video.id] = video
    tags: dict[int, list[Tag]] = {video_id: [] for video_id in found}
    if tag_rows:
        build_tag = db.row_builder(Tag)
        shared: dict[int, Tag] = {}  # a tag on several videos is one instance, as prefetched
        for row in tag_rows:
            tag = shared.get(row["id"])
            if tag is None:
                tag = shared[row["id"]] = build_tag(row)
            tags[row[_TAG_VIDEO]].append(tag)
    history: dict[int, list[VideoStatusEvent]] = {video_id: [] for video_id in found}
    if history_rows:
        build_event = db.row_builder(VideoStatusEvent)
        for row in history_rows:
            history[row["video_id"]].append(build_event(row))
    tags_field = Video._meta.fields_map["tags"]
    states = {}
    for video_id, video in videos.items():
        version = int(video.version)
        relation = ManyToManyRelation(video, tags_field)  # what ``video.tags`` gives
        relation._set_result_for_query(tags[video_id])
        _set(video, "_tags", relation)
        states[video_id] = VideoState(
            video=video,
            owner=video._owner,  # type: ignore[attr-defined]
            theme=video._theme,  # type: ignore[attr-defined]
            project=video._project,  # type: ignore[attr-defined]
            story=video._story,  # type: ignore[attr-defined]
            tags=list(tags[video_id]),
            history=[h for h in history[video_id] if h.version <= version],
        )
    return states


_set = object.__setattr__


@dataclass(eq=False)
class _Load:
    task: asyncio.Task[VideoState | None]
    tick: int  # started after every registration with a smaller tick
    min_version: int  # started after this version was committed


class VideoStates:
    """Per-process cache of the latest loaded :class:`VideoState` per video.

    A request for "at least version v" is served from the cache, or joins a load already
    running that is sure to see v, or starts one. A request for "the current state as of
    tick t" (a fresh snapshot after subscribing, or after RESYNC) only joins loads started
    after t, so it can never return a state older than the subscription.

    Loads run in their own tasks: a subscriber that goes away does not cancel a load that
    others wait for.
    """

    def __init__(
        self,
        loader: Callable[[int], Awaitable[VideoState | None]] | None = None,
        maxsize: int = STATE_CACHE_SIZE,
    ) -> None:
        # None: the loads asked for while a read is in flight, or in one pass of the
        # event loop, are read together (load_states), as a burst of events for many
        # videos asks for them.
        self._loader = loader or self._batched
        self._maxsize = maxsize
        self._cache: OrderedDict[int, VideoState] = OrderedDict()
        self._loading: dict[int, _Load] = {}
        self._tick = 0
        self.loads = 0  # database loads started (for tests and metrics)
        self.reads = 0  # batched reads (load_states calls) made for them
        self._batch: dict[int, asyncio.Future[VideoState | None]] = {}
        self._reads: set[asyncio.Task[None]] = set()

    def tick(self) -> int:
        """A point in time: loads started later are guaranteed to be newer."""
        self._tick += 1
        return self._tick

    async def at_least(self, video_id: int, version: int) -> VideoState | None:
        cached = self._cache.get(video_id)
        if cached is not None and cached.version >= version:
            self._cache.move_to_end(video_id)
            return cached
        running = self._loading.get(video_id)
        if running is not None and running.min_version >= version:
            return await asyncio.shield(running.task)
        return await self._start(video_id, min_version=version)

    async def current(self, video_id: int, *, since: int) -> VideoState | None:
        running = self._loading.get(video_id)
        if running is not None and running.tick > since:
            return await asyncio.shield(running.task)
        return await self._start(video_id, min_version=0)

    async def _start(self, video_id: int, *, min_version: int) -> VideoState | None:
        self.loads += 1
        task = asyncio.create_task(self._loader(video_id), name=f"video-state-{video_id}")
        load = _Load(task=task, tick=self.tick(), min_version=min_version)
        self._loading[video_id] = load
        task.add_done_callback(lambda t: self._finished(video_id, load, t))
        return await asyncio.shield(task)

    async def _batched(self, video_id: int) -> VideoState | None:
        """Join the next read. One read (of up to :data:`LOAD_BATCH` videos per statement)
        is in flight at a time: loads asked for meanwhile wait for it to end and are then
        read together, so the more events arrive per read's time, the more each read
        serves. Idle, a load is read in the pass it was asked for."""
        future = self._batch.get(video_id)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._batch and not self._reads:
                loop.call_soon(self._read_batch)
            future = self._batch[video_id] = loop.create_future()
        return await asyncio.shield(future)

    def _read_batch(self) -> None:
        batch, self._batch = self._batch, {}
        ids = list(batch)
        for start in range(0, len(ids), LOAD_BATCH):
            part = {video_id: batch[video_id] for video_id in ids[start : start + LOAD_BATCH]}
            task = asyncio.get_running_loop().create_task(self._read(part))
            self.reads += 1
            self._reads.add(task)
            task.add_done_callback(self._read_done)

    def _read_done(self, task: asyncio.Task[None]) -> None:
        self._reads.discard(task)
        if not self._reads and self._batch:
            self._read_batch()  # what was asked for while it ran

    async def _read(self, batch: dict[int, asyncio.Future[VideoState | None]]) -> None:
        try:
            states = await load_states(list(batch))
        except BaseException as exc:
            for future in batch.values():
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for video_id, future in batch.items():
            if not future.done():
                future.set_result(states.get(video_id))

    def _finished(self, video_id: int, load: _Load, task: asyncio.Task[Any]) -> None:
        if self._loading.get(video_id) is load:
            del self._loading[video_id]
        if task.cancelled() or task.exception() is not None:
            return
        state = task.result()
        if state is None:
            self._cache.pop(video_id, None)
            return
        cached = self._cache.get(video_id)
        if cached is None or state.version >= cached.version:
            self._cache[video_id] = state
            self._cache.move_to_end(video_id)
            while len(self._cache) > self._maxsize:
                self._cache.popitem(last=False)

    def clear(self) -> None:
        self._cache.clear()
