"""Every channel name of the event bus, and what goes on each. Made here and nowhere else.

- :func:`video_channel` and :func:`owner_channel`: a committed change of a video
  (:class:`~vidgen.events.messages.VideoEvent`), on both; ``videoUpdated`` follows the first,
  ``videoUpdates`` the second.
- :data:`WAKEUP_CHANNEL`: a job became due (``{"type": "wakeup"}``); idle workers claim.
- :func:`job_channel`: nudges for the worker running one job: :data:`CANCEL` (a cancel was
  requested) and :data:`WEBHOOK` (the provider called back about its prediction).
"""

from __future__ import annotations

PREFIX = "vidgen:"
WAKEUP_CHANNEL = f"{PREFIX}wakeup"

#: The ``type`` of a wake-up message.
WAKEUP = "wakeup"
#: The ``type`` of a job-channel nudge: a cancel was requested.
CANCEL = "cancel"
#: The ``type`` of a job-channel nudge: a webhook arrived (with ``prediction_id``, maybe
#: ``state`` and ``delivery_id``).
WEBHOOK = "webhook"


def video_channel(video_id: int) -> str:
    return f"{PREFIX}video:{video_id}"


def owner_channel(owner_id: int) -> str:
    return f"{PREFIX}owner:{owner_id}"


def job_channel(video_id: int) -> str:
    """Nudges for the worker running one job (cancel requested, webhook arrived)."""
    return f"{PREFIX}job:{video_id}"
