"""Live status: ``videoUpdated(id)`` and ``videoUpdates(projectId, storyId, after)``.

The domain does the work: :mod:`vidgen.events.video_states` loads each (video, version)
once per process and rebuilds older versions from the event log; :mod:`vidgen.events.feed`
replays the log after a cursor and de-duplicates live events. Here each subscriber's loop
reads its bus subscription, checks the viewer, primes one operation's loaders from the
shared state and yields the video for Strawberry to format::

    bus event ──▶ VideoStates.at_least(video_id, version) ──▶ VideoState (shared)
                                          │
    each subscriber: context.fresh_loaders() primed from that state ──▶ yield the row

Nested fields (``owner``, ``tags``, ``statusHistory``, ``eventCursor``...) resolve from
the primed loaders, so a thousand subscribers of one video cost the same three queries per
event as one subscriber.

Ordering and completeness:

- The bus subscription is registered BEFORE the database is read, so no change can fall
  between the snapshot and the first event. Events carry ``version``; anything not newer
  than what the subscriber already yielded is skipped.
- Pub/sub is at-most-once. After the bus reconnects it sends RESYNC; the subscriber re-reads
  the database (current state for ``videoUpdated``; the event log since its last cursor
  for ``videoUpdates``). A subscriber too slow for its bounded queue is dropped with an
  error that tells the client to reconnect.

The bearer token is re-checked every ``REAUTH_SECONDS`` (shared per token and process), so a
revoked token ends its subscriptions with UNAUTHENTICATED. Graceful shutdown closes every
subscription (``app.state.close_subscriptions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.types import Info

from vidgen import errors, eventloop, metrics, models
from vidgen.events.channels import owner_channel, video_channel
from vidgen.events.feed import Feed
from vidgen.events.local import CLOSED, RESYNC, BusSubscription, SubscriberOverflow
from vidgen.events.video_states import VideoState, VideoStates
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


# --- priming one operation's loaders from a shared state ---------------------------------


def prime(loaders: Loaders, state: VideoState, video: models.Video) -> None:
    """Hand one operation's loaders the rows of ``state`` for ``video`` (``state`` at some
    version), so no nested field needs a query. Each loader is primed when the document
    first uses it (most documents use none): a subscriber's event makes no loader it does
    not need."""
    loaders.add_primer(_Primer(state, video))


class _Primer:
    """What each loader of one event's operation is primed with (see :func:`prime`)."""

    __slots__ = ("state", "video")

    def __init__(self, state: VideoState, video: models.Video) -> None:
        self.state = state
        self.video = video

    def __call__(self, name: str, loader: Any) -> None:
        state, video = self.state, self.video
        if name == "video_by_id":
            loader.prime(video.id, video)
        elif name == "user_by_id":
            if state.owner is not None:
                loader.prime(state.owner.id, state.owner)
        elif name in _RELATIONS:
            row = getattr(state, _RELATIONS[name])
            if row is not None:
                loader.prime(row.id, row)
        elif name == "tags_by_video_id":
            loader.prime(video.id, state.tags)
        elif name == "status_history_by_video_id":
            loader.prime(video.id, state.history_at(int(video.version)))
        elif name == "latest_event_id_by_video_id":
            history = state.history_at(int(video.version))
            loader.prime(video.id, history[-1].id if history else None)


_RELATIONS = {"theme_by_id": "theme", "project_by_id": "project", "story_by_id": "story"}


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

    def hold(self, sub: BusSubscription) -> None:
        """Close ``sub`` at shutdown (its owner counts its own subscriptions)."""
        self._subs.add(sub)
        self._idle.clear()

    def release(self, sub: BusSubscription) -> None:
        self._subs.discard(sub)
        if not self._subs:
            self._idle.set()

    @contextlib.contextmanager
    def track(self, sub: BusSubscription, field: str) -> Any:
        self.hold(sub)
        gauge = metrics.ACTIVE_SUBSCRIPTIONS.labels(field=field)
        gauge.inc()
        try:
            yield sub
        finally:
            gauge.dec()
            self.release(sub)

    async def close_all(self, wait: float = SHUTDOWN_WAIT) -> None:
        """Finish every subscription (clients get ``complete``) and wait for them."""
        for sub in tuple(self._subs):
            sub.close()
        if self._subs:
            logger.info(
                "closing %d subscription(s)", len(self._subs), extra={"action": "ws_shutdown"}
            )
        await eventloop.wait_event(self._idle, wait)


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


def shared_of(context: Context) -> _Shared:
    """:func:`shared_for` the context's bus; the app's graceful shutdown closes them."""
    return _shared_of(context)


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
        prime(self.context.fresh_loaders(), state, video)


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
            while not models.VideoStatus(current.status).terminal:
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
                    view = found.event_view(message) if found is not None else None
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
            feed = Feed(owner, project[0] if project else None, story[0] if story else None)
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
