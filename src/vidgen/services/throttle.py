"""Throttling: failed logins, registrations and each user's mutations (docs/limits.md).

- Logins: failed attempts within a sliding window (``login_window_seconds``), per email
  (``login_max_failures_per_email``) and per client address
  (``login_max_failures_per_address``). Each attempt takes its place BEFORE the password is
  checked, so a burst of concurrent guesses cannot all pass while the first ones are being
  hashed; a success gives its place back and forgets the email's failures. Past either
  limit the answer is RATE_LIMITED with ``retryAfter``, decided before any account is
  looked up: the same for an email that has an account and one that has none.
- Registrations: attempts per client address within ``register_window_seconds``
  (``register_max_per_address``), successful or not (a refused one tells whether an email
  has an account).
- Mutations: a token bucket per user (``user_mutations_per_minute``, ``user_mutation_burst``;
  off unless set); each root field of a mutation costs one token.

The counters live in a :mod:`~vidgen.services.rate_stores` store: Redis when scaled (every
API process shares them), memory when embedded. Emails are kept only as a hash. IPv6
clients are counted by their /64 network (one host holds the whole of it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidgen import errors, metrics
from vidgen.services.rate_stores import Limit, RateStore, create_rates

if TYPE_CHECKING:
    from vidgen.settings import Settings

logger = logging.getLogger(__name__)


def _email_key(email: str) -> str:
    address = (email or "").strip().lower()
    digest = hashlib.sha256(address.encode("utf-8", "surrogatepass")).hexdigest()
    return f"login:email:{digest[:32]}"


def address_key(address: str) -> str:
    """The counter a client address falls under: itself, or its /64 network for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _wait_text(seconds: float) -> str:
    if seconds >= 120:
        return f"{math.ceil(seconds / 60)} minutes"
    whole = max(1, math.ceil(seconds))
    return "1 second" if whole == 1 else f"{whole} seconds"


class Throttle:
    """This process's throttles (one per :class:`~vidgen.runtime.Runtime`)."""

    def __init__(self, store: RateStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    @classmethod
    def create(cls, settings: Settings) -> Throttle:
        return cls(create_rates(settings.redis_url, namespace=settings.redis_namespace), settings)

    async def close(self) -> None:
        await self.store.close()

    async def login_attempt(self, *, email: str, address: str | None) -> LoginAttempt:
        """Take a place for one sign-in attempt; call :meth:`LoginAttempt.succeeded` when
        the password was right.

        Raises:
            RateLimited: too many failures for this email or from this address lately.
        """
        settings = self.settings
        limits = [Limit(_email_key(email), settings.login_max_failures_per_email)]
        if address:
            limits.append(
                Limit(f"login:addr:{address_key(address)}", settings.login_max_failures_per_address)
            )
        entry, wait = await self.store.acquire(limits, window=settings.login_window_seconds)
        if not entry:
            metrics.THROTTLED.labels(kind="login").inc()
            logger.info("sign-in throttled", extra={"action": "throttle.login", "client": address})
            raise errors.RateLimited(
                f"Too many failed sign-ins; try again in {_wait_text(wait)}.", retry_after=wait
            )
        return LoginAttempt(self.store, limits, entry)

    async def registration(self, *, address: str | None) -> None:
        """Count one registration attempt from ``address``.

        Raises:
            RateLimited: too many from this address lately.
        """
        if not address:
            return
        settings = self.settings
        limit = Limit(f"register:addr:{address_key(address)}", settings.register_max_per_address)
        entry, wait = await self.store.acquire([limit], window=settings.register_window_seconds)
        if not entry:
            metrics.THROTTLED.labels(kind="register").inc()
            raise errors.RateLimited(
                f"Too many sign-ups from your address; try again in {_wait_text(wait)}.",
                retry_after=wait,
            )

    async def mutations(self, *, user_id: int, count: int) -> None:
        """Spend ``count`` of the user's mutation tokens (nothing when the limit is off).

        Raises:
            RateLimited: not enough tokens now (``retryAfter``: until there are), or more
                mutations in one request than the bucket holds.
        """
        per_minute = self.settings.user_mutations_per_minute
        if per_minute is None:
            return
        burst = self.settings.user_mutation_burst or max(1, math.ceil(per_minute))
        if count > burst:
            metrics.THROTTLED.labels(kind="mutation").inc()
            raise errors.RateLimited(f"A request may hold at most {burst} mutations.")
        wait = await self.store.take(
            f"mutations:user:{user_id}", rate=per_minute / 60, burst=burst, cost=count
        )
        if wait > 0:
            metrics.THROTTLED.labels(kind="mutation").inc()
            raise errors.RateLimited(
                f"Too many changes at once; try again in {_wait_text(wait)}.", retry_after=wait
            )


@dataclass(slots=True)
class LoginAttempt:
    """A sign-in attempt holding its place in the failure counters."""

    store: RateStore
    limits: list[Limit]
    entry: str

    async def succeeded(self) -> None:
        """The password was right: the email's failures are forgotten, and this attempt
        no longer counts against the address."""
        email, *addresses = self.limits
        await self.store.clear(email.key)
        for limit in addresses:
            await self.store.forget(limit.key, self.entry)
