"""Live status: ``videoUpdated(id)`` and ``videoUpdates(projectId, storyId, after)``.

How an event becomes a Video at every subscriber, with ONE database read per process::

    bus event {video_id, version, ...} ──▶ VideoStates.at_least(video_id, version)
         (one load per (video, version) in this process: cached, in-flight loads shared)
                                          │  Video row + owner/theme/project/story + tags
                                          ▼  + status history, read once
    each subscriber: context.fresh_loaders() primed from that state ──▶ yield the row

Nested fields (``owner``, ``tags``, ``statusHistory``, ``eventCursor``...) resolve from
the primed loaders, so a thousand subscribers of one video cost the same three queries per
event as one subscriber.

Ordering and completeness:

- The bus subscription is registered BEFORE the database is read, so no change can fall
  between the snapshot and the first event. Events carry ``version``; anything not newer
  than what the subscriber already yielded is skipped.
- Pub/sub is at-most-once. After the bus reconnects it sends RESYNC; the subscriber re-reads
  the database (current state for ``videoUpdated``; the status history since its last
  cursor for ``videoUpdates``). A subscriber too slow for its bounded queue is dropped with
  an error that tells the client to reconnect.
- ``videoUpdates(after:)`` replays the event log after the cursor (the database is the
  log: status changes, and updates, deletes and restores as rows that keep the status),
  then tails live events; live events already replayed are skipped at the seam. Progress
  ticks have no row and are not replayed.

The bearer token is re-checked every ``REAUTH_SECONDS`` (shared per token and process), so a
revoked token ends its subscriptions with UNAUTHENTICATED. Graceful shutdown closes every
subscription (``app.state.close_subscriptions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.types import Info

from vidgen import errors, metrics, models
from vidgen.events.channels import owner_channel, video_channel
from vidgen.events.local import CLOSED, RESYNC, BusSubscription, SubscriberOverflow
from vidgen.graphql import types
from vidgen.graphql.context import REVOKED
from vidgen.services import users
from vidgen.services import videos as video_service

if TYPE_CHECKING:
    from vidgen.graphql.context import Context
    from vidgen.graphql.dataloaders import Loaders

logger = logging.getLogger(__name__)

#: Seconds between checks that a socket's token is still valid (revocation, expiry).
REAUTH_SECONDS = 15.0
#: How long one token check is reused by every subscription of that token in the process.
TOKEN_CHECK_TTL = 1.0
#: Events buffered per subscriber before it is dropped as too slow.
QUEUE_SIZE = 256
#: Video states kept per process (the latest loaded state of each recent video).
STATE_CACHE_SIZE = 4096
#: Status-history rows read per query while replaying.
REPLAY_BATCH = 500
#: Seconds a graceful shutdown waits for subscriptions to finish.
SHUTDOWN_WAIT = 5.0


class SubscriptionDropped(errors.VidgenError):
    """The subscriber fell behind (its queue overflowed): reconnect for the current state."""

    code = "RATE_LIMITED"

    def __init__(self) -> None:
        super().__init__(
            "This subscription fell behind and was dropped; subscribe again to get the "
            "current state.",
            reconnect=True,
        )


# --- video states: one load per (video, version) per process --------------------------------


@dataclass(frozen=True, eq=False)
class VideoState:
    """A video as committed at ``video.version``, with every relation a subscriber may ask
    for. Shared by all subscribers in the process: never mutate it.

    A state may be newer than the event being delivered (several changes committed before
    the load ran). :meth:`at_version` then gives the video as of the event's version: the
    event's status and progress over the loaded row, built once and shared as well, so each
    change is still delivered in order.
    """

    video: models.Video
    owner: models.User | None
    theme: models.Theme | None
    project: models.Project | None
    story: models.Story | None
    tags: list[models.Tag]
    history: list[models.VideoStatusEvent]
    _views: dict[int, models.Video] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> int:
        return int(self.video.version)

    @property
    def latest_event_id(self) -> int | None:
        return self.history[-1].id if self.history else None

    def history_at(self, version: int) -> list[models.VideoStatusEvent]:
        if version >= self.version:
            return self.history
        return [h for h in self.history if h.version <= version]

    def between(self, seen: int, version: int, *, after_id: int = 0) -> list[models.Video]:
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
        self, version: int, *, status: str | None = None, progress: float | None = None
    ) -> models.Video:
        """The video as of ``version`` (``status``/``progress`` from the event when known)."""
        if version >= self.version:
            return self.video
        past = self._views.get(version)
        if past is not None:
            return past
        history = self.history_at(version)
        entry = history[-1] if history else None
        past = copy.copy(self.video)
        past.version = version
        past.status = models.VideoStatus(
            status or (entry.to_status if entry is not None else self.video.status)
        )
        if progress is not None:
            past.progress = float(progress)
        elif past.status is models.VideoStatus.QUEUED:
            past.progress = 0.0
        if entry is not None and entry.version == version:
            past.updated_at = entry.at
        if past.status is not models.VideoStatus.COMPLETED:
            past.completed_at = None
        # Undo the later changes that kept the status (update, delete, restore), newest
        # first, from the values their event-log rows kept (tags are shown as they are now).
        for later in reversed(self.history):
            if later.version <= version:
                break
            for name, value in later.values_before().items():
                if name in _UNDOABLE:
                    setattr(past, name, value)
        self._views[version] = past
        return past

    def prime(self, loaders: Loaders, video: models.Video) -> None:
        """Fill one operation's loaders for ``video`` (this state at some version) so no
        nested field needs a query."""
        history = self.history_at(int(video.version))
        loaders.prime_video(video)
        if self.owner is not None:
            loaders.user_by_id.prime(self.owner.id, self.owner)
        if self.theme is not None:
            loaders.theme_by_id.prime(self.theme.id, self.theme)
        if self.project is not None:
            loaders.project_by_id.prime(self.project.id, self.project)
        if self.story is not None:
            loaders.story_by_id.prime(self.story.id, self.story)
        loaders.tags_by_video_id.prime(video.id, self.tags)
        loaders.status_history_by_video_id.prime(video.id, history)
        loaders.latest_event_id_by_video_id.prime(video.id, history[-1].id if history else None)


#: Video columns a past view takes back from a later change's event-log row.
_UNDOABLE = frozenset({"caption", "video_style", "theme_id", "deleted_at"})


def is_terminal(video: models.Video) -> bool:
    return models.VideoStatus(video.status).terminal


def event_view(state: VideoState, message: dict[str, Any]) -> models.Video:
    """The video as of one bus event."""
    return state.at_version(
        int(message.get("version") or 0),
        status=message.get("status"),
        progress=message.get("progress"),
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
        await models.Video.filter(id=video_id)
        .select_related("owner", "theme", "project", "story")
        .first()
    )
    if found is None:
        return None
    tags_q = models.Tag.filter(videos__id=video_id).order_by("name_key", "id")
    history_q = models.VideoStatusEvent.filter(video_id=video_id).order_by("id")
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
        loader: Callable[[int], Awaitable[VideoState | None]] = load_state,
        maxsize: int = STATE_CACHE_SIZE,
    ) -> None:
        self._loader = loader
        self._maxsize = maxsize
        self._cache: OrderedDict[int, VideoState] = OrderedDict()
        self._loading: dict[int, _Load] = {}
        self._tick = 0
        self.loads = 0  # database loads started (for tests and metrics)

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


# --- token re-checks, shared per token ---------------------------------------------------------


class TokenChecks:
    """``users.authenticate(token)`` at most once per ``ttl`` per token in this process."""

    def __init__(self, ttl: float = TOKEN_CHECK_TTL) -> None:
        self.ttl = ttl
        self._results: dict[str, tuple[float, models.User | None]] = {}
        self._running: dict[str, asyncio.Task[models.User | None]] = {}

    async def check(self, token: str | None) -> models.User | None:
        if not token:
            return None
        now = time.monotonic()
        hit = self._results.get(token)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        task = self._running.get(token)
        if task is None:
            task = asyncio.create_task(users.authenticate(token))
            self._running[token] = task
            task.add_done_callback(lambda t: self._store(token, t))
        return await asyncio.shield(task)

    def _store(self, token: str, task: asyncio.Task[models.User | None]) -> None:
        self._running.pop(token, None)
        if not task.cancelled() and task.exception() is None:
            if len(self._results) > 10_000:
                self._results.clear()
            self._results[token] = (time.monotonic(), task.result())


# --- live subscriptions of one server, for graceful shutdown ----------------------------------


class ActiveSubscriptions:
    """The open bus subscriptions of one app; :meth:`close_all` ends them cleanly."""

    def __init__(self) -> None:
        self._subs: set[BusSubscription] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._subs)

    @contextlib.contextmanager
    def track(self, sub: BusSubscription, field: str) -> Any:
        self._subs.add(sub)
        self._idle.clear()
        gauge = metrics.ACTIVE_SUBSCRIPTIONS.labels(field=field)
        gauge.inc()
        try:
            yield sub
        finally:
            gauge.dec()
            self._subs.discard(sub)
            if not self._subs:
                self._idle.set()

    async def close_all(self, wait: float = SHUTDOWN_WAIT) -> None:
        """Finish every subscription (clients get ``complete``) and wait for them."""
        for sub in tuple(self._subs):
            sub.close()
        if self._subs:
            logger.info(
                "closing %d subscription(s)", len(self._subs), extra={"action": "ws_shutdown"}
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), wait)


# One set of shared state per runtime (= per process in production; tests build several).
_shared: weakref.WeakKeyDictionary[Any, _Shared] = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class _Shared:
    states: VideoStates
    tokens: TokenChecks
    active: ActiveSubscriptions


def shared_for(owner: Any) -> _Shared:
    """The per-process (per-bus) state cache, token checks and registry."""
    found = _shared.get(owner)
    if found is None:
        found = _shared[owner] = _Shared(VideoStates(), TokenChecks(), ActiveSubscriptions())
    return found


def _shared_of(context: Context) -> _Shared:
    shared = shared_for(context.runtime.bus)
    request = context.request
    app = getattr(request, "app", None) if request is not None else None
    state = getattr(app, "state", None)
    if state is not None and getattr(state, "close_subscriptions", None) is None:
        state.close_subscriptions = shared.active.close_all
    return shared


# --- the watcher: one subscriber's loop -------------------------------------------------------


class _Watcher:
    """Reads one bus subscription; re-checks the token on schedule."""

    def __init__(self, context: Context, shared: _Shared, sub: BusSubscription) -> None:
        self.context = context
        self.shared = shared
        self.sub = sub
        if context.token_checks is None:  # a context not made by the view (tests)
            context.token_checks = shared.tokens
        settings = context.settings
        self.reauth_every = float(getattr(settings, "ws_reauth_seconds", REAUTH_SECONDS))
        self.next_check = time.monotonic() + self.reauth_every

    async def viewer(self) -> models.User:
        """Check the socket's token now (shared per token); UNAUTHENTICATED when it is gone."""
        user = await self.context.reauthenticate()
        if user is None:
            raise errors.Unauthenticated(self.context.auth_error or REVOKED)
        return user

    async def next(self) -> Any:
        """The next event dict, RESYNC or CLOSED; checks the token when it is due."""
        while True:
            wait = self.next_check - time.monotonic()
            if wait <= 0:
                self.next_check = time.monotonic() + self.reauth_every
                try:
                    await self.viewer()
                except errors.Unauthenticated:
                    raise
                except Exception:  # noqa: BLE001 - a database blip must not drop everyone
                    logger.warning(
                        "token re-check failed; keeping the subscription, retrying soon",
                        exc_info=True,
                        extra={"action": "ws_reauth_failed"},
                    )
                    self.next_check = time.monotonic() + min(self.reauth_every, 1.0)
                continue
            try:
                async with asyncio.timeout(wait):
                    return await self.sub.get()
            except TimeoutError:
                continue
            except SubscriberOverflow as exc:
                raise SubscriptionDropped() from exc

    def bind(self, state: VideoState, video: models.Video) -> None:
        """Give the operation fresh loaders, primed for the video about to be yielded."""
        state.prime(self.context.fresh_loaders(), video)


def _queue_size(context: Context) -> int:
    return int(getattr(context.settings, "ws_subscription_queue", QUEUE_SIZE))


def _parse_cursor(after: str | None) -> int | None:
    if after is None:
        return None
    try:
        value = int(after)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value < 2**63:  # event ids are 64-bit
        raise errors.BadUserInput(
            "after must be an eventCursor from a Video you received.", field="after"
        )
    return value


async def _group_id(
    value: strawberry.ID | None,
    type_name: str,
    model: type[Any],
    viewer: models.User,
    field: str,
) -> tuple[int, int] | None:
    """A project/story filter and its owner: the viewer's own (or, for an admin, anyone's),
    else NOT_FOUND."""
    if value is None:
        return None
    node_id = types.decode_id(value, type_name, field=field)
    query = model.filter(id=node_id) if node_id is not None else None
    if query is not None and not viewer.is_admin:
        query = query.filter(owner_id=viewer.id)
    owners = await query.values_list("owner_id", flat=True) if query is not None else []
    if not owners or node_id is None:
        raise errors.NotFound(type_name.lower())
    return node_id, owners[0]


def _feed_owner(viewer: models.User, *groups: tuple[int, int] | None) -> int:
    """Whose videos a ``videoUpdates`` follows: the viewer's, or (an admin filtering by
    another user's project or story) that user's. A project and a story of two different
    users share no video: the story is then not found."""
    owners = {group[1] for group in groups if group is not None}
    if len(owners) > 1:
        raise errors.NotFound("story")
    return owners.pop() if owners else viewer.id


# --- the resolvers ----------------------------------------------------------------------------


async def watch_video(info: Info, id: strawberry.ID) -> AsyncGenerator[models.Video, None]:
    context: Context = info.context
    context.require_viewer()
    shared = _shared_of(context)
    video_id = types.decode_id(id, "Video")
    bus = context.runtime.bus
    async with bus.subscribe(video_channel(video_id or 0), maxsize=_queue_size(context)) as sub:
        since = shared.states.tick()  # registered: any load started later misses nothing
        with shared.active.track(sub, "videoUpdated"):
            watcher = _Watcher(context, shared, sub)
            viewer = await watcher.viewer()
            state = await shared.states.current(video_id, since=since) if video_id else None
            if state is None or not video_service.can_view(viewer, state.video):
                raise errors.NotFound("video")
            watcher.bind(state, state.video)
            yield state.video
            last = state.version
            current = state.video
            while not is_terminal(current):
                message = await watcher.next()
                if message is CLOSED:
                    return
                if message is RESYNC:
                    found = await shared.states.current(video_id, since=shared.states.tick())
                    view = found.video if found is not None else None
                else:
                    version = int(message.get("version") or 0)
                    if version <= last:
                        continue
                    found = await shared.states.at_least(video_id, version)
                    view = event_view(found, message) if found is not None else None
                if found is None or view is None:
                    return  # purged
                if view.version <= last:
                    continue
                for missed in found.between(last, view.version):
                    watcher.bind(found, missed)
                    yield missed
                current, last = view, view.version
                watcher.bind(found, view)
                yield view


async def watch_videos(
    info: Info,
    project_id: strawberry.ID | None = None,
    story_id: strawberry.ID | None = None,
    after: str | None = None,
) -> AsyncGenerator[models.Video, None]:
    context: Context = info.context
    viewer = context.require_viewer()
    shared = _shared_of(context)
    cursor = _parse_cursor(after)
    project = await _group_id(project_id, "Project", models.Project, viewer, "projectId")
    story = await _group_id(story_id, "Story", models.Story, viewer, "storyId")
    owner = _feed_owner(viewer, project, story)
    bus = context.runtime.bus
    async with bus.subscribe(owner_channel(owner), maxsize=_queue_size(context)) as sub:
        with shared.active.track(sub, "videoUpdates"):
            watcher = _Watcher(context, shared, sub)
            await watcher.viewer()
            feed = _Feed(owner, project[0] if project else None, story[0] if story else None)
            if cursor is None:
                # Nothing to replay now, but remember where "now" is for a later RESYNC.
                feed.cursor = feed.origin = await feed.head()
            else:
                feed.cursor = feed.origin = cursor
                async for view, state in feed.replay(shared.states):
                    watcher.bind(state, view)
                    yield view
            while True:
                message = await watcher.next()
                if message is CLOSED:
                    return
                if message is RESYNC:
                    async for view, state in feed.replay(shared.states):
                        watcher.bind(state, view)
                        yield view
                    continue
                for view, state in await feed.live(message, shared.states):
                    watcher.bind(state, view)
                    yield view


class _Feed:
    """One ``videoUpdates`` subscriber's position: the history cursor and, per video, the
    last version yielded (live events at or below either are duplicates)."""

    def __init__(self, owner_id: int, project_id: int | None, story_id: int | None) -> None:
        self.owner_id = owner_id
        self.project_id = project_id
        self.story_id = story_id
        self.cursor = 0
        self.origin = 0  # the cursor the feed started from (see live())
        self.forgotten = 0  # the cursor when a video's last version was last forgotten
        self.replayed: set[int] = set()  # history ids yielded by replays (seam de-dup)
        self.versions: OrderedDict[int, int] = OrderedDict()

    def _matches(self, project_id: Any, story_id: Any) -> bool:
        if self.project_id is not None and project_id != self.project_id:
            return False
        return not (self.story_id is not None and story_id != self.story_id)

    async def head(self) -> int:
        row = (
            await models.VideoStatusEvent.filter(owner_id=self.owner_id)
            .order_by("-id")
            .first()
            .values_list("id", flat=True)
        )
        return int(row or 0)

    def _seen(self, video_id: int, version: int) -> bool:
        return self.versions.get(video_id, 0) >= version

    def _remember(self, video_id: int, version: int) -> None:
        if version > self.versions.get(video_id, 0):
            self.versions[video_id] = version
            self.versions.move_to_end(video_id)
            while len(self.versions) > STATE_CACHE_SIZE:
                self.versions.popitem(last=False)
                # Its changes up to here were delivered: a later event of it must not
                # bring them back as missed (see live()).
                self.forgotten = self.cursor

    async def replay(
        self, states: VideoStates
    ) -> AsyncGenerator[tuple[models.Video, VideoState], None]:
        """Logged changes after the cursor (status changes, updates, deletes, restores),
        oldest first: the video as of each change."""
        since = states.tick()
        while True:
            query = models.VideoStatusEvent.filter(owner_id=self.owner_id, id__gt=self.cursor)
            if self.project_id is not None:
                query = query.filter(video__project_id=self.project_id)
            if self.story_id is not None:
                query = query.filter(video__story_id=self.story_id)
            rows = await query.order_by("id").limit(REPLAY_BATCH)
            if not rows:
                return
            loaded: dict[int, VideoState | None] = {}
            for row in rows:
                if row.video_id not in loaded:
                    loaded[row.video_id] = await states.current(row.video_id, since=since)
                state = loaded[row.video_id]
                self.cursor = max(self.cursor, row.id)
                if state is None or self._seen(row.video_id, row.version):
                    continue
                self.replayed.add(row.id)
                self._remember(row.video_id, row.version)
                yield state.at_version(row.version, status=row.to_status), state
            if len(rows) < REPLAY_BATCH:
                return

    async def live(
        self, message: dict[str, Any], states: VideoStates
    ) -> list[tuple[models.Video, VideoState]]:
        """The videos to yield for one live event: none when it is a duplicate; before it,
        the logged changes of that video it overtook (published later than it, or lost)
        since the last version this feed yielded."""
        video_id = int(message["video_id"])
        version = int(message.get("version") or 0)
        event_id = message.get("event_id")
        if not self._matches(message.get("project_id"), message.get("story_id")):
            return []
        if event_id is not None and int(event_id) in self.replayed:
            return []
        if self._seen(video_id, version):
            return []
        state = await states.at_least(video_id, version)
        if state is None:
            return []
        # Since the last version yielded; for a video not yielded yet (or forgotten: only
        # the latest STATE_CACHE_SIZE videos are kept), since the position this feed
        # started from, or where it last forgot one, whichever is later.
        seen = self.versions.get(video_id, 0)
        after_id = 0 if seen else max(self.origin, self.forgotten)
        missed = state.between(seen, version, after_id=after_id)
        self._remember(video_id, version)
        if event_id is not None:
            self.cursor = max(self.cursor, int(event_id))
        return [(view, state) for view in missed] + [(event_view(state, message), state)]


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The video's current state at once, then every change in version order; "
        "ends after a terminal status. Another user's video is NOT_FOUND."
    )
    async def video_updated(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[types.Video, None]:
        async for video in watch_video(info, id):
            yield video  # type: ignore[misc]

    @strawberry.subscription(
        description="Every change to the viewer's videos (optionally one project's or story's). "
        "With after (an eventCursor) the changes missed since then are replayed first."
    )
    async def video_updates(
        self,
        info: Info,
        project_id: strawberry.ID | None = None,
        story_id: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[types.Video, None]:
        async for video in watch_videos(info, project_id, story_id, after):
            yield video  # type: ignore[misc]
