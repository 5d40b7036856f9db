"""Counters for throttling, shared by every API process: in Redis when ``VIDGEN_REDIS_URL``
is set, in this process's memory otherwise (the embedded mode has one API process).

Two kinds, each one atomic step (a Lua script in Redis, code without an ``await`` in
memory), so concurrent requests cannot all slip past a limit:

- sliding windows (:meth:`RateStore.acquire`): one entry per attempt under each of several
  keys, taken only while every key holds fewer than its limit within the window; an entry
  can be given back (:meth:`RateStore.forget`) and a key emptied (:meth:`RateStore.clear`).
- token buckets (:meth:`RateStore.take`): ``burst`` tokens, refilled at ``rate`` a second.

Redis keys expire with their window, so nothing needs cleaning. Redis reads its own clock
(``TIME``), so API processes with skewed clocks agree. When Redis cannot be reached the
stores let requests through and log it (throttling is a brake, not the only lock: passwords
are still checked); ``vidgen_throttled_total`` shows what was refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

#: The memory store looks for keys that hold nothing once every this many calls.
_PRUNE_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` entries under ``key`` within the window."""

    key: str
    count: int


class RateStore(Protocol):
    async def acquire(self, limits: Sequence[Limit], *, window: float) -> tuple[str, float]:
        """Take one entry under every key if each holds fewer than its count within the
        last ``window`` seconds. Returns ``(entry id, 0)``, or ``("", wait)`` with the
        seconds until all of them would have room (nothing was taken)."""
        ...

    async def forget(self, key: str, entry: str) -> None:
        """Give one entry back."""
        ...

    async def clear(self, key: str) -> None:
        """Empty a key."""
        ...

    async def take(self, key: str, *, rate: float, burst: int, cost: int = 1) -> float:
        """Take ``cost`` tokens from the bucket ``key`` (``burst`` tokens, refilled at
        ``rate`` a second): 0 when taken, else the seconds until there are enough
        (nothing taken)."""
        ...

    async def close(self) -> None: ...


class MemoryRates:
    """The in-process store (see the module docstring)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        # key -> (window, entries as (time, entry id), oldest first)
        self._windows: dict[str, tuple[float, deque[tuple[float, str]]]] = {}
        # key -> (tokens, when counted, when full again)
        self._buckets: dict[str, tuple[float, float, float]] = {}
        self._calls = 0

    def _entries(self, key: str, now: float, window: float) -> deque[tuple[float, str]]:
        _, entries = self._windows.setdefault(key, (window, deque()))
        self._windows[key] = (window, entries)
        while entries and entries[0][0] <= now - window:
            entries.popleft()
        return entries

    async def acquire(self, limits: Sequence[Limit], *, window: float) -> tuple[str, float]:
        now = self._clock()
        self._prune(now)
        wait = 0.0
        for limit in limits:
            entries = self._entries(limit.key, now, window)
            if len(entries) >= limit.count:
                # Room comes when the entry that makes the count too many leaves.
                oldest = entries[len(entries) - limit.count][0]
                wait = max(wait, oldest + window - now)
        if wait > 0:
            return "", wait
        entry = uuid.uuid4().hex
        for limit in limits:
            self._windows[limit.key][1].append((now, entry))
        return entry, 0.0

    async def forget(self, key: str, entry: str) -> None:
        found = self._windows.get(key)
        if found is not None:
            window, entries = found
            self._windows[key] = (window, deque(item for item in entries if item[1] != entry))

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    async def take(self, key: str, *, rate: float, burst: int, cost: int = 1) -> float:
        now = self._clock()
        self._prune(now)
        tokens, at, _ = self._buckets.get(key, (float(burst), now, now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / rate
        self._buckets[key] = (tokens, now, now + (burst - tokens) / rate)
        return wait

    def _prune(self, now: float) -> None:
        """Now and then, drop keys that hold nothing any more (they would only use memory)."""
        self._calls += 1
        if self._calls < _PRUNE_EVERY:
            return
        self._calls = 0
        for key, (window, entries) in list(self._windows.items()):
            if not entries or entries[-1][0] <= now - window:
                del self._windows[key]
        for key, (_, _, full) in list(self._buckets.items()):
            if full <= now:
                del self._buckets[key]

    async def close(self) -> None:
        return None


# KEYS: the keys; ARGV: window (s), entry id, then each key's count. Returns nil when taken,
# else the wait in seconds (as text: Lua numbers reach Redis as integers).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local limit = tonumber(ARGV[2 + i])
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return tostring(wait) end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return false
"""

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, cost. Returns nil when taken, else the
# wait in seconds (as text).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local result = false
if tokens >= cost then
  tokens = tokens - cost
else
  result = tostring((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return result
"""


class RedisRates:
    """The Redis store (see the module docstring). Its own small connection pool, connected
    on first use.

    Args:
        url: ``redis://…``.
        namespace: the deployment's key prefix (``VIDGEN_REDIS_NAMESPACE``).
        timeout: seconds a command may take before the request goes on without it.
    """

    def __init__(self, url: str, *, namespace: str | None = None, timeout: float = 1.0) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # A blocking pool: requests beyond its connections wait their turn (a plain pool
        # raises, which would let them through unthrottled).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=16,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Once more on a fresh connection (Redis restarted), then go on without it.
            retry=Retry(NoBackoff(), 1),
            client_name="vidgen:rates",
        )
        self._client = aioredis.Redis.from_pool(pool)  # closing it closes the pool
        self._prefix = f"{namespace}:" if namespace else ""
        self._acquire = self._client.register_script(_ACQUIRE)
        self._take = self._client.register_script(_TAKE)

    def _key(self, key: str) -> str:
        return f"{self._prefix}vidgen:rate:{key}"

    async def acquire(self, limits: Sequence[Limit], *, window: float) -> tuple[str, float]:
        entry = uuid.uuid4().hex
        keys = [self._key(limit.key) for limit in limits]
        args = [repr(float(window)), entry, *(limit.count for limit in limits)]
        try:
            wait = await self._acquire(keys=keys, args=args)
        except _errors() as exc:
            _unavailable(exc)
            return entry, 0.0
        return ("", float(wait)) if wait is not None else (entry, 0.0)

    async def forget(self, key: str, entry: str) -> None:
        try:
            await self._client.zrem(self._key(key), entry)
        except _errors() as exc:
            _unavailable(exc)

    async def clear(self, key: str) -> None:
        try:
            await self._client.delete(self._key(key))
        except _errors() as exc:
            _unavailable(exc)

    async def take(self, key: str, *, rate: float, burst: int, cost: int = 1) -> float:
        try:
            wait = await self._take(keys=[self._key(key)], args=[repr(rate), burst, cost])
        except _errors() as exc:
            _unavailable(exc)
            return 0.0
        return float(wait) if wait is not None else 0.0

    async def close(self) -> None:
        await self._client.aclose()


def _errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def _unavailable(exc: BaseException) -> None:
    logger.warning(
        "throttling counters unavailable (Redis); letting the request through: %s",
        exc,
        extra={"action": "throttle.unavailable"},
    )


def create_rates(redis_url: str | None, *, namespace: str | None = None) -> RateStore:
    """The Redis store when a URL is set, else the in-process one (as the event bus)."""
    if redis_url:
        return RedisRates(redis_url, namespace=namespace)
    return MemoryRates()
