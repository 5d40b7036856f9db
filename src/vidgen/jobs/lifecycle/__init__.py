"""The video lifecycle: the ONE writer of a video's ``status`` and ``version`` and of its
event-log rows (``video_status_events``) and attempt rows. Everything else asks it.

Every change checks the transition, bumps ``version``, stamps ``updated_at`` (and
``completed_at`` on success), writes its event-log row, and is published on the event bus
only after its transaction commits (:func:`publish`, or the operation's ``bus``).
``tests/jobs/test_one_writer.py`` fails when such a write appears anywhere else.

::

    queued ──▶ processing ──▶ completed | failed | canceled
      │  ▲          │
      │  └──────────┘  (retryable error, rescue of an expired lease, graceful release)
      └──▶ canceled
    failed | canceled ──▶ queued  (manual retry)

Writes by a worker are fenced on ``attempt``: a worker whose lease was swept while it was
still alive finds its ``WHERE id = … AND attempt = …`` matching nothing and gets
:class:`StaleAttempt`, so it can never overwrite a newer attempt.

The operations, by module:

- :mod:`.create`: :func:`record_created`, a new queued video with its first history row
  and tag links (one statement on PostgreSQL);
- :mod:`.transitions`: :func:`transition` (a status change: the API, the sweeper, releases;
  it may close the attempt row), :func:`touch` (columns of a running job that keep the
  status: the cancel flag), :func:`report_progress` and :func:`report_progress_many` (a
  worker's batch of them in one statement);
- :mod:`.edits`: :func:`edit`, :func:`soft_delete`, :func:`restore` (changes that keep the
  status, logged with what they replaced: :mod:`vidgen.events.history`), and
  :func:`locked`;
- :mod:`.claim`: :func:`apply_claim` (queued → processing for the jobs the queue picked)
  and :func:`claimed_by`;
- :mod:`.fenced`: the worker's hot path, ONE statement each on PostgreSQL:
  :func:`store_prediction` and :func:`finish` (processing → completed | failed |
  canceled | queued, history row, attempt row closed);
- :mod:`.films`: :func:`link_clips`, a new film's clips (with the film's creation);
- :mod:`.rules` (the transitions, the errors) and :mod:`.publishing` (a change's event).
"""

from vidgen.jobs.lifecycle.claim import Claimed, JobSpec, apply_claim, claimed_by
from vidgen.jobs.lifecycle.create import Named, NotFound, record_created
from vidgen.jobs.lifecycle.edits import edit, locked, restore, soft_delete
from vidgen.jobs.lifecycle.fenced import CANCELED_INSTEAD, Runner, finish, store_prediction
from vidgen.jobs.lifecycle.films import FilmPart, link_clips
from vidgen.jobs.lifecycle.publishing import event_for, publish
from vidgen.jobs.lifecycle.rules import (
    Admission,
    Change,
    IllegalTransition,
    NotAdmitted,
    StaleAttempt,
    StoryChanged,
    now,
)
from vidgen.jobs.lifecycle.transitions import (
    AttemptEnd,
    report_progress,
    report_progress_many,
    touch,
    transition,
)

__all__ = [
    "CANCELED_INSTEAD",
    "Admission",
    "AttemptEnd",
    "Change",
    "Claimed",
    "FilmPart",
    "IllegalTransition",
    "JobSpec",
    "Named",
    "NotAdmitted",
    "NotFound",
    "Runner",
    "StaleAttempt",
    "StoryChanged",
    "apply_claim",
    "claimed_by",
    "edit",
    "event_for",
    "finish",
    "link_clips",
    "locked",
    "now",
    "publish",
    "record_created",
    "report_progress",
    "report_progress_many",
    "restore",
    "soft_delete",
    "store_prediction",
    "touch",
    "transition",
]
