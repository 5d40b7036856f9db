"""When a failed attempt runs again: exponential backoff with full jitter.

``delay = uniform(0, min(cap, base * 2 ** retry_count))`` (the "full jitter" of the AWS
architecture blog: spreads a thundering herd best), except that a provider's own
``Retry-After`` wins when it is longer. The budget is the video's ``max_retries``
(set from ``settings.max_retries`` when the video is created).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vidgen.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff parameters, normally from :class:`~vidgen.settings.Settings`."""

    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(base_seconds=settings.retry_base_seconds, cap_seconds=settings.retry_cap_seconds)

    def ceiling(self, retry_count: int) -> float:
        """The upper bound of the jittered delay before retry number ``retry_count + 1``."""
        exponent = min(max(retry_count, 0), 62)  # 2**62 already dwarfs any cap
        return min(self.cap_seconds, self.base_seconds * (2**exponent))

    def delay(
        self,
        retry_count: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before the next attempt.

        Args:
            retry_count: retries already spent (0 before the first retry).
            retry_after: the provider's Retry-After hint, if it gave one.
            rng: a random source (tests pass a seeded one).
        """
        jittered = (rng or random).uniform(0.0, self.ceiling(retry_count))
        if retry_after is not None and retry_after > jittered:
            return float(retry_after)
        return jittered


def retries_left(retry_count: int, max_retries: int) -> bool:
    """True when one more retry fits in the budget."""
    return retry_count < max_retries
