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
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tortoise.query_utils import Prefetch

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
    """Read one video, then its tags and status history (those two run together).

    The video row is read first, on purpose. The reads are separate statements (separate
    snapshots on PostgreSQL), and a status change commits its history row together with
    the version it bumps: a history read that starts after the row was read holds every
    history row up to the row's ``version`` (newer rows are cut off by ``history_at``).
    Run all three at once and the row could come back newer than the history, and the
    event for that version would go out without its own history entry.
    """
    found = (
        await Video.filter(id=video_id).select_related("owner", "theme", "project", "story").first()
    )
    if found is None:
        return None
    tags_q = Tag.filter(videos__id=video_id).order_by("name_key", "id")
    history_q = VideoStatusEvent.filter(video_id=video_id).order_by("id")
    tags, history = await asyncio.gather(tags_q, history_q)
    version = int(found.version)
    history = [h for h in history if h.version <= version]  # changes newer than the row
    return VideoState(
        video=found,
        owner=found.owner,
        theme=found.theme,
        project=found.project,
        story=found.story,
        tags=list(tags),
        history=history,
    )


#: The most videos one batched load reads (its ``IN`` lists).
LOAD_BATCH = 256


async def load_states(video_ids: list[int]) -> dict[int, VideoState]:
    """:func:`load_state` for several videos with the same three reads, each for all of
    them: the rows first (their tags prefetched right after), then the history. The same
    order as one video's, so the same guarantee: a video's history holds every row up to
    its row's ``version``. Videos not found are left out."""
    rows = (
        await Video.filter(id__in=video_ids)
        .select_related("owner", "theme", "project", "story")
        .prefetch_related(Prefetch("tags", queryset=Tag.all().order_by("name_key", "id")))
    )
    if not rows:
        return {}
    history: dict[int, list[VideoStatusEvent]] = {row.id: [] for row in rows}
    for event in await VideoStatusEvent.filter(video_id__in=list(history)).order_by("id"):
        history[event.video_id].append(event)  # type: ignore[attr-defined]
    states = {}
    for found in rows:
        version = int(found.version)
        states[found.id] = VideoState(
            video=found,
            owner=found.owner,
            theme=found.theme,
            project=found.project,
            story=found.story,
            tags=list(found.tags),
            history=[h for h in history[found.id] if h.version <= version],
        )
    return states


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
        # None: the loads started in one pass of the event loop are read together
        # (load_states), as a burst of events for many videos asks for them.
        self._loader = loader or self._batched
        self._maxsize = maxsize
        self._cache: OrderedDict[int, VideoState] = OrderedDict()
        self._loading: dict[int, _Load] = {}
        self._tick = 0
        self.loads = 0  # database loads started (for tests and metrics)
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
        future = self._batch.get(video_id)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._batch:
                loop.call_soon(self._read_batch)
            future = self._batch[video_id] = loop.create_future()
        return await asyncio.shield(future)

    def _read_batch(self) -> None:
        batch, self._batch = self._batch, {}
        ids = list(batch)
        for start in range(0, len(ids), LOAD_BATCH):
            part = {video_id: batch[video_id] for video_id in ids[start : start + LOAD_BATCH]}
            task = asyncio.get_running_loop().create_task(self._read(part))
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)

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
