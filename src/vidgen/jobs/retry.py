"""When a failed attempt runs again: exponential backoff with full jitter.

``delay = uniform(0, min(cap, base * 2 ** retry_count))`` (the "full jitter" of the AWS
architecture blog: spreads a thundering herd best), except that a provider's own
``Retry-After`` wins when it is longer. A Retry-After is never taken beyond a day
(:data:`MAX_WAIT_SECONDS`, the cap the provider layer also applies when it parses one).
A 429 that states no wait at all waits at least ``rate_limit_seconds``
(``VIDGEN_RATE_LIMIT_RETRY_SECONDS``, plus up to a quarter more as jitter): exponential
backoff from 2 s would spend the whole budget inside the provider's lock-out. The budget
is the video's ``max_retries`` (set from ``settings.max_retries`` when the video is
created).

Outages do not spend that budget: a failure that says the provider (or the host of its
output) cannot be reached or is overloaded right now (:data:`OUTAGE_CODES`: timeouts,
refused connections, 5xx, 429) re-queues the job with the same backoff, counted over the
failures in a row, for up to ``settings.provider_outage_seconds`` from the first of them.
Only past that do such failures spend the budget, so a provider down for minutes or hours
delays its jobs instead of failing them (and the stored prediction is resumed afterwards).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from vidgen.settings import Settings

# The longest wait a provider's hint can impose: a day (also what
# vidgen.providers.errors.MAX_RETRY_AFTER_SECONDS clamps to; this module does not import the
# HTTP layer). Anything longer, or infinite, would overflow the schedule's datetime.
MAX_WAIT_SECONDS = 24 * 3600.0

# The provider layer's error codes (``ProviderError.code``, set in vidgen.providers.errors)
# that this policy reacts to.
TIMEOUT = "timeout"
CONNECTION = "connection"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"  # a 429

# The codes that mean "the provider is not answering properly right now", not "this job
# is wrong": see the module docstring.
OUTAGE_CODES = frozenset({TIMEOUT, CONNECTION, SERVER_ERROR, RATE_LIMITED})

# Up to this fraction is added to the rate-limit fallback, so jobs throttled together do
# not all come back in the same instant.
RATE_LIMIT_JITTER = 0.25


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff parameters, normally from :class:`~vidgen.settings.Settings`."""

    base_seconds: float = 2.0
    cap_seconds: float = 300.0
    rate_limit_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            rate_limit_seconds=settings.rate_limit_retry_seconds,
        )

    def ceiling(self, retry_count: int) -> float:
        """The upper bound of the jittered delay before retry number ``retry_count + 1``."""
        exponent = min(max(retry_count, 0), 62)  # 2**62 already dwarfs any cap
        return min(self.cap_seconds, self.base_seconds * (2**exponent))

    def floor(
        self,
        retry_after: float | None,
        *,
        rate_limited: bool = False,
        rng: random.Random | None = None,
    ) -> float | None:
        """The least wait the provider asked for: its (bounded) Retry-After; for a 429
        without one, the rate-limit fallback (jittered); otherwise None."""
        hinted = bounded_wait(retry_after)
        if hinted is None and rate_limited:
            spread = 1.0 + (rng or random).uniform(0.0, RATE_LIMIT_JITTER)
            hinted = bounded_wait(self.rate_limit_seconds * spread)
        return hinted

    def delay(
        self,
        retry_count: int,
        *,
        retry_after: float | None = None,
        rate_limited: bool = False,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before the next attempt (finite, at most a day).

        Args:
            retry_count: retries already spent (0 before the first retry).
            retry_after: the provider's Retry-After hint, if it gave one.
            rate_limited: the failure was a 429 (a missing hint means the fallback).
            rng: a random source (tests pass a seeded one).
        """
        jittered = (rng or random).uniform(0.0, self.ceiling(retry_count))
        least = self.floor(retry_after, rate_limited=rate_limited, rng=rng)
        if least is not None and least > jittered:
            return least
        return jittered


def bounded_wait(seconds: float | None) -> float | None:
    """``seconds`` clamped to ``[0, MAX_WAIT_SECONDS]``; None (no hint) for None or NaN."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, float(seconds)), MAX_WAIT_SECONDS)


def is_rate_limited(code: str | None) -> bool:
    """True for the code of a 429 (its missing Retry-After means the rate-limit fallback)."""
    return code == RATE_LIMITED


def is_outage(code: str | None) -> bool:
    """True for an error code that means the provider is unreachable or overloaded."""
    return code in OUTAGE_CODES


def retries_left(retry_count: int, max_retries: int) -> bool:
    """True when one more retry fits in the budget."""
    return retry_count < max_retries
