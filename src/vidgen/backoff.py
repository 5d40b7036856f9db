"""How long to wait before trying again to reach the database or Redis.

Capped exponential backoff with "equal jitter": the n-th retry waits between d/2 and d,
d = min(cap, base·2ⁿ). The fixed half keeps a reconnect storm bounded below; the random
half keeps many processes (workers after a database restart, every API process after a
Redis restart) from coming back in lock-step. Provider retries of a job follow their own
policy (:mod:`vidgen.jobs.retry`).
"""

from __future__ import annotations

import random

BASE_SECONDS = 0.1
CAP_SECONDS = 5.0


def delay(attempt: int, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first): in [d/2, d]."""
    ceiling = min(cap, base * (2 ** min(max(attempt, 0), 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
