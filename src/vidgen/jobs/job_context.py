"""One claimed job as its worker runs it: the fence, the nudges from outside, the job's
database calls (in the order it made them, riding out outages) and its one write that may
be in flight while the output is fetched."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from vidgen import eventloop
from vidgen.events import channels
from vidgen.events.local import RESYNC
from vidgen.jobs import lifecycle, transient
from vidgen.jobs.lifecycle import Claimed, JobSpec, StaleAttempt
from vidgen.media import ingest
from vidgen.models import Video, VideoStatus

if TYPE_CHECKING:
    from vidgen.jobs.progress import ProgressBatcher
    from vidgen.runtime import Runtime

T = TypeVar("T")
S = VideoStatus
MAX_JOB_DELIVERIES = 256  # delivery ids remembered per running job


class JobContext:
    """One claimed job as its worker runs it: the fence, and the nudges from outside."""

    def __init__(
        self,
        runtime: Runtime,
        claimed: Claimed,
        *,
        worker_id: str,
        runner: lifecycle.Runner | None = None,
        on_last_write: Callable[[], None] | None = None,
        progress: ProgressBatcher | None = None,
    ) -> None:
        self.runtime = runtime
        # The worker's batch of progress reports (None: each report is a write of its own).
        self.progress = progress
        self.runner = runner  # sends the job's fenced writes (the worker's group writer)
        # Called once the attempt's last write starts: the worker may fill the slot now.
        self.on_last_write = on_last_write
        self.claimed = claimed
        self.prediction_id = claimed.prediction_id  # the one stored for this job, if any
        self.video_id = claimed.video_id
        self.attempt = claimed.attempt
        self.worker_id = worker_id
        self.cancel_requested = False  # set by the heartbeat from the database
        self.cancel_hint = False  # a cancel message arrived: check the database
        self.spec: JobSpec | None = claimed.spec
        self.finished = False  # the attempt's last write is under way or done
        self.slot_free = False  # no provider work left: the worker may fill the slot
        # The prediction id's write while the output is fetched beside it (pipeline._run);
        # every later database call of the job waits for it first.
        self.pending_write: asyncio.Task[None] | None = None
        # That write went wrong (taken over: StaleAttempt): the output must not be stored.
        self.write_error: BaseException | None = None
        # Set (from the event loop) once that write succeeded: the media stage's hold.
        self.write_done: threading.Event | None = None
        self.ingest: ingest.Ingest | None = None  # the media stage under way, if any
        self.started = time.monotonic()
        self._nudge = asyncio.Event()
        # When this attempt last asked the provider (submit or poll), by the loop's clock.
        self.last_poll: float | None = None
        # Webhook delivery ids already seen by this job (API processes de-duplicate too, but
        # each only its own deliveries).
        self.deliveries: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def log_extra(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "attempt": self.attempt, "worker_id": self.worker_id}

    def nudge(self) -> None:
        """Wake the job's wait (a webhook arrived or a cancel was requested)."""
        self._nudge.set()

    def polled(self) -> None:
        """Note that the provider was just asked (the floor of the next wait counts from here)."""
        self.last_poll = asyncio.get_running_loop().time()

    async def wait(self, seconds: float, *, floor: float = 0.0) -> None:
        """Sleep up to ``seconds``; a nudge ends the sleep early.

        A cancel (``cancel_hint``/``cancel_requested``) ends it at once. Any other nudge (a
        webhook) ends it as soon as ``floor`` seconds have passed since :meth:`polled`, never
        sooner: replayed or duplicate deliveries cannot make the job poll its provider faster
        than the provider allows (nor draw the 429s that would eat the retry budget).
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + max(0.0, seconds)
        since = self.last_poll if self.last_poll is not None else start
        earliest = min(deadline, since + max(0.0, floor))
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if not await eventloop.wait_event(self._nudge, remaining):
                break
            self._nudge.clear()
            if self.cancel_hint or self.cancel_requested:
                return
            deadline = earliest  # a webhook: poll as soon as the floor allows
        self._nudge.clear()

    def on_message(self, message: Any) -> None:
        """A message on the job's channel: a cancel request, a webhook, or the bus's RESYNC (a
        reconnect: messages may have been missed, so check the database for a cancel)."""
        if message is RESYNC:
            self.cancel_hint = True
        elif isinstance(message, dict) and message.get("type") == channels.CANCEL:
            self.cancel_hint = True
        elif isinstance(message, dict) and message.get("type") == channels.WEBHOOK:
            delivery = message.get("delivery_id")
            if delivery:
                if str(delivery) in self.deliveries:
                    return  # a replay (through another API process): no second nudge
                self.deliveries[str(delivery)] = None
                while len(self.deliveries) > MAX_JOB_DELIVERIES:
                    self.deliveries.popitem(last=False)
        self.nudge()

    async def cancel_wanted(self) -> bool:
        if self.cancel_requested:
            return True
        if self.cancel_hint:
            self.cancel_hint = False
            flag = await self.db(
                "read cancel flag",
                lambda: Video.filter(id=self.video_id).values_list("cancel_requested", flat=True),
            )
            self.cancel_requested = bool(flag and flag[0])
        return self.cancel_requested

    async def read_spec(self) -> JobSpec:
        """The job's request: from the claim, or (a claim made elsewhere) read once, fenced."""
        if self.claimed.spec is not None:
            return self.claimed.spec
        rows = await self.db(
            "read job",
            lambda: Video.filter(
                id=self.video_id, attempt=self.attempt, status=S.PROCESSING
            ).values(),
        )
        if not rows:
            raise StaleAttempt(f"video {self.video_id}: attempt {self.attempt} is not current")
        return JobSpec.from_row(rows[0])

    async def db(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """A database call of this job that rides out outages (see :mod:`vidgen.jobs.transient`).

        While the database is down the job waits here; its lease may expire meanwhile, in which
        case a fenced write finds the job taken over (StaleAttempt) and the attempt stops.
        Waits first for the job's write still in flight (:attr:`JobContext.pending_write`), so
        the job's statements run in the order it made them.
        """
        if self.pending_write is not None and self.pending_write is not asyncio.current_task():
            await self.settle_pending()
        if self.progress is None:
            return await transient.retrying(operation, what=what, extra=self.log_extra)
        # A batched report of this job is published first, and none is flushed meanwhile.
        await self.progress.settled(self.video_id)
        with self.progress.writing(self.video_id):
            return await transient.retrying(operation, what=what, extra=self.log_extra)

    async def settle_pending(self) -> None:
        """Wait for the job's write in flight, if any; its error (StaleAttempt) is raised here.
        Canceled meanwhile, the write runs on (a worker shutting down waits for it before it
        releases the job, so the id is kept)."""
        pending = self.pending_write
        if pending is None:
            return
        try:
            await asyncio.shield(pending)
        finally:
            if pending.done():
                self.pending_write = None

    def pending_done(self, done: threading.Event, task: asyncio.Task[None]) -> None:
        """The write in flight ended. Succeeded: open the media stage's hold. Otherwise (taken
        over, an error, canceled): the stage must store nothing; the error is raised where the
        job awaits the write, and one that nobody awaits (the job was canceled first) is
        retrieved here rather than reported as lost."""
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is None:
            done.set()
            return
        self.write_error = error
        if self.ingest is not None:
            self.ingest.abandon()  # a held stage is discarded by the job, which awaits the write


def retrieve_error(task: asyncio.Task[Any]) -> None:
    """Mark a write's error as seen. The job raises it where it awaits the write; a job
    canceled first never does, and the worker's release then goes by the row, not by it."""
    if not task.cancelled():
        task.exception()
