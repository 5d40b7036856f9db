"""A ``videoUpdates`` feed: one owner's videos (optionally one project's or story's), as the
event log replays them after a cursor and as live bus events bring them, each change once.

The event log is the database (``video_status_events``: status changes, and edits,
deletes and restores as rows that keep the status); progress ticks have no row and are not
replayed. Live events already replayed are skipped at the seam, and a live event that
overtook earlier changes of its video (published later, or lost) brings them first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

from vidgen.events.video_states import STATE_CACHE_SIZE, VideoState, VideoStates
from vidgen.models import Video, VideoStatusEvent

#: Event-log rows read per query while replaying.
REPLAY_BATCH = 500
#: Videos whose last delivered version a feed remembers (as many as states are cached).
REMEMBERED_VIDEOS = STATE_CACHE_SIZE


class Feed:
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
            await VideoStatusEvent.filter(owner_id=self.owner_id)
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
            while len(self.versions) > REMEMBERED_VIDEOS:
                self.versions.popitem(last=False)
                # Its changes up to here were delivered: a later event of it must not
                # bring them back as missed (see live()).
                self.forgotten = self.cursor

    async def replay(self, states: VideoStates) -> AsyncGenerator[tuple[Video, VideoState], None]:
        """Logged changes after the cursor (status changes, updates, deletes, restores),
        oldest first: the video as of each change."""
        since = states.tick()
        while True:
            query = VideoStatusEvent.filter(owner_id=self.owner_id, id__gt=self.cursor)
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
    ) -> list[tuple[Video, VideoState]]:
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
        # the latest REMEMBERED_VIDEOS videos are kept), since the position this feed
        # started from, or where it last forgot one, whichever is later.
        seen = self.versions.get(video_id, 0)
        after_id = 0 if seen else max(self.origin, self.forgotten)
        missed = state.between(seen, version, after_id=after_id)
        self._remember(video_id, version)
        if event_id is not None:
            self.cursor = max(self.cursor, int(event_id))
        return [(view, state) for view in missed] + [(state.event_view(message), state)]
