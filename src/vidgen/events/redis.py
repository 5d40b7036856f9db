"""The Redis event bus: ONE pub/sub connection per process, fanned out to local queues.

::

    publish() ──▶ Redis PUBLISH ──▶ every process's single PSUBSCRIBE "vidgen:*"
                                        │  (one supervised reader task)
                                        ▼
                                  LocalSubscribers ──▶ bounded queue per local subscriber

Why it looks like this:

- One pattern subscription per process, made once at start-up: local subscribers come and
  go without any Redis command, so subscribing costs nothing and a subscriber registered
  locally is live at once (no gap between "subscribed" and "listening").
- The reader owns every read of the pub/sub connection (redis-py is not safe with two
  readers). It reads the connection's replies with a timeout (``read_response``, not
  ``PubSub.get_message``: see :meth:`RedisBus._read`) and sends its own PING every
  ``health_interval`` seconds; a connection that answers nothing for ``liveness_timeout``
  seconds (a half-open TCP peer) is treated as lost.
- redis-py's own silent reconnect is switched off for the pub/sub connection: a reconnect
  must be *noticed*, because messages published meanwhile are gone (pub/sub is
  at-most-once). After every (re)subscription the reader sends :data:`~vidgen.events.local.
  RESYNC` to every local subscription, which re-reads the database (the log).
- On connection loss the reader retries with capped exponential backoff and jitter
  (:mod:`vidgen.backoff`), for ever, without a process restart; :meth:`RedisBus.ping`
  reports False meanwhile (readiness).
- Publishing never drops a change for lack of a pooled connection. Every ``publish`` goes
  to one ordered outbox in the process, and ONE flusher task sends whatever has gathered
  there as one command: a hundred jobs reporting progress at once make a handful of round
  trips on one connection, not a hundred connections (the pool once had 50 and publishes
  beyond it were dropped). A caller of ``publish`` waits for its message's first attempt
  only; a caller of :meth:`RedisBus.enqueue_many` (a mutation, which answers its client once
  its change is committed) does not wait at all: its messages are queued in the same order
  and go out on the flusher's next command.
- A publish that fails (Redis down) stays in the outbox, in order, and the flusher retries
  it with backoff until Redis answers; then it goes out late rather than never. The outbox
  holds at most ``publish_backlog`` messages: beyond that the oldest are dropped (logged
  once per outage) and subscribers recover them from the database on RESYNC.
  :meth:`RedisBus.publish_or_raise` is the exception, for a caller that can still have its
  sender retry (a webhook answered 503): it sends at once on the pool (waiting up to
  ``publish_wait`` for a connection), raises :class:`~vidgen.events.bus.PublishFailed`
  and leaves the logging to that caller.
- Liveness is judged by Redis, not by the clock of a busy event loop: the connection is
  declared dead only when a PING has gone unanswered for ``liveness_timeout`` AND a read
  started after that found nothing. A loop starved by delivery work for 15 s reads the
  PONG waiting in its socket and carries on.
- Several messages published together (a video event on its three channels plus the
  workers' wake-up) go as ONE command: a small Lua script PUBLISHes the (channel, payload)
  pairs in order (EVALSHA; EVAL when Redis lost its script cache, e.g. after a restart; a
  pipeline if Redis refuses scripts). A message sent to several channels is encoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import NoPermissionError, NoScriptError, RedisError, ResponseError

from vidgen import backoff, eventloop, metrics
from vidgen.events.bus import PublishFailed
from vidgen.events.channels import PREFIX
from vidgen.events.local import RESYNC, LocalSubscribers, SubscribeLocally

logger = logging.getLogger(__name__)

#: Errors that mean "the connection (or Redis) is gone"; anything else is a bug and logged
#: with its traceback, but the supervisor keeps going either way.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, EOFError)

#: Publishes ARGV = channel, payload, channel, payload, ... in order, atomically.
_PUBLISH_SCRIPT = """
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""
_PUBLISH_SHA = hashlib.sha1(_PUBLISH_SCRIPT.encode()).hexdigest()


@dataclass
class BusStats:
    """Counters for metrics and tests (monotonic except ``connected``/``subscribers``)."""

    connected: bool = False
    connects: int = 0  # successful (re)subscriptions, the first one included
    reconnects: int = 0  # successful subscriptions after a lost connection
    connection_errors: int = 0  # reader failures (each one starts a backoff)
    published: int = 0
    publish_errors: int = 0  # failed attempts to send a message (kept for retry)
    publish_dropped: int = 0  # messages given up (outbox full, or closed during an outage)
    published_late: int = 0  # messages sent on a retry after an outage
    received: int = 0  # messages read from Redis
    delivered: int = 0  # message x local subscriber deliveries
    overflows: int = 0  # local subscribers dropped for being too slow
    subscribers: int = 0


class RedisBus(SubscribeLocally):
    """Event bus over Redis pub/sub (see the module docstring).

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS).
        namespace: optional prefix for the Redis channel names, so several deployments
            (or test runs) can share one Redis without hearing each other.
        backoff_base: first reconnect delay in seconds (doubles per failure).
        backoff_cap: the longest reconnect delay.
        health_interval: seconds between the reader's PINGs on the pub/sub connection.
        liveness_timeout: seconds without any reply after which the connection is dead.
        read_timeout: how long one read of the subscription waits (bounds shutdown and
            health checks).
        connect_timeout: TCP connect timeout for both connections.
        start_timeout: how long :meth:`start` waits for the first subscription before it
            returns anyway (the reader keeps trying in the background).
        publish_retries: extra attempts of one publish on a connection error.
        publish_wait: how long :meth:`publish_or_raise` waits for a pooled connection.
        publish_backlog: messages kept for retry while Redis is unreachable.
        max_connections: the publishing pool's size (the flusher uses one of them).
        client_name: Redis ``CLIENT SETNAME`` prefix (``<name>:sub`` / ``<name>:pub``).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        health_interval: float = 5.0,
        liveness_timeout: float = 12.0,
        read_timeout: float = 1.0,
        connect_timeout: float = 2.0,
        start_timeout: float = 5.0,
        publish_retries: int = 2,
        publish_wait: float = 5.0,
        publish_backlog: int = 100_000,
        max_connections: int = 50,
        client_name: str = "vidgen",
    ) -> None:
        self.url = url
        self._ns = f"{namespace}:" if namespace else ""
        self._pattern = f"{self._ns}{PREFIX}*"
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.health_interval = health_interval
        self.liveness_timeout = liveness_timeout
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.start_timeout = start_timeout
        self.publish_retries = publish_retries
        self.publish_wait = publish_wait
        self.publish_backlog = publish_backlog
        self.max_connections = max_connections
        self.client_name = client_name
        self._local = LocalSubscribers()
        self._stats = BusStats()
        self._publisher: aioredis.Redis | None = None
        # The flusher's own connection (see _send_held): from a pool of one, without
        # redis-py's per-command socket timeout (the flusher bounds each send itself).
        self._held_pool: aioredis.ConnectionPool | None = None
        self._held: Any = None
        self._held_timeout = max(connect_timeout, 2.0)
        self._listener: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._scripts = True  # False once Redis refused EVAL (ACL, disabled)
        self._outbox: deque[_Pending] = deque()
        self._outbox_messages = 0
        self._outbox_ready = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failing = False  # the last send failed: callers do not wait for a retry

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the reader and wait (up to ``start_timeout``) for the first subscription.

        Never raises because Redis is down: the process starts, reports "not ready", and
        the reader connects as soon as Redis is back.
        """
        if self._reader is not None:
            return
        self._closing = False
        # A blocking pool: a publish waits (up to publish_wait) for a connection instead of
        # failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=max(self.connect_timeout, 2.0),
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), self.publish_retries),
            client_name=f"{self.client_name}:pub",
            max_connections=self.max_connections,
            timeout=self.publish_wait,
        )
        self._publisher = aioredis.Redis.from_pool(pool)  # the pool closes with the client
        self._held_pool = aioredis.ConnectionPool.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            client_name=f"{self.client_name}:pub",
            max_connections=1,
        )
        # No silent retries on the listening connection: the supervisor must see every loss.
        self._listener = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            client_name=f"{self.client_name}:sub",
            # RESP2: redis-py parses a pub/sub message a third cheaper than as a RESP3 push,
            # and the hub reads every message published in the deployment.
            protocol=2,
        )
        self._reader = asyncio.create_task(self._supervise(), name="vidgen-redis-bus-reader")
        self._flusher = asyncio.create_task(self._flush_forever(), name="vidgen-redis-bus-flusher")
        if not await eventloop.wait_event(self._connected, self.start_timeout):
            logger.warning(
                "event bus: Redis not reachable yet, continuing (readiness reports it)",
                extra={"action": "bus_start_degraded"},
            )

    async def close(self, *, drain: float = 2.0) -> None:
        """Send what the outbox still holds (for up to ``drain`` seconds), stop the reader
        and close both connections. Safe to call twice."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            if self._outbox and not self._failing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(drain):
                        await self._drained()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            if self._outbox_messages:
                self._stats.publish_dropped += self._outbox_messages
                logger.warning(
                    "event bus: closing with %d unpublished message(s) (subscribers resync)",
                    self._outbox_messages,
                    extra={"action": "bus_publish_dropped"},
                )
            self._release_all()
        self._closing = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._connected.clear()
        self._stats.connected = False
        await self._drop_held()
        if self._held_pool is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._held_pool.aclose()
            self._held_pool = None
        for client in (self._publisher, self._listener):
            if client is not None:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await client.aclose()
        self._publisher = self._listener = None

    # --- publishing --------------------------------------------------------------------
    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Publish one message; on a Redis outage log and count, never raise."""
        await self.publish_many([(channel, message)])

    async def publish_or_raise(self, channel: str, message: dict[str, Any]) -> None:
        """Publish one message; on a Redis outage (after the short retry) count it and
        raise :class:`~vidgen.events.bus.PublishFailed` instead of logging it dropped."""
        await self.publish_many([(channel, message)], raise_errors=True)

    async def publish_many(
        self, items: list[tuple[str, dict[str, Any]]], *, raise_errors: bool = False
    ) -> None:
        """Publish several messages, in order (a message object listed for several channels
        is encoded once). They join the outbox behind everything published before them and
        go out with it in one round trip; this returns once they were sent, or once their
        first attempt failed (then they stay queued for retry). ``raise_errors``: as
        :meth:`publish_or_raise`, sent at once and never queued."""
        if not items:
            return
        if self._publisher is None:
            raise RuntimeError("RedisBus.publish() before start()")
        args = self._batch_args(items)
        if raise_errors:
            try:
                await self._send_pooled(args)
            except CONNECTION_ERRORS as exc:
                self._stats.publish_errors += len(items)
                raise PublishFailed(str(exc)) from exc
            self._stats.published += len(items)
            return
        pending = self._queue(args, len(items))
        if self._failing:
            return  # Redis is down: the retry is the flusher's, the caller goes on
        await asyncio.shield(pending.done)

    def enqueue_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue several messages in the outbox, in order, and return at once: they go out
        with the flusher's next command, behind everything published before them, exactly
        as :meth:`publish_many` sends them (ordered, retried through an outage, never
        dropped short of ``publish_backlog``); only the caller does not wait for the round
        trip. For a request that answers its client once its change is committed (a
        mutation): the event follows within the flusher's round trip."""
        if not items:
            return
        if self._publisher is None:
            raise RuntimeError("RedisBus.enqueue_many() before start()")
        self._queue(self._batch_args(items), len(items))

    def _queue(self, args: list[str], count: int) -> _Pending:
        pending = _Pending(args, asyncio.get_running_loop().create_future())
        self._outbox.append(pending)
        self._outbox_messages += count
        self._trim_outbox()
        self._outbox_ready.set()
        return pending

    def _trim_outbox(self) -> None:
        """Drop the oldest messages beyond ``publish_backlog`` (subscribers resync)."""
        dropped = 0
        while self._outbox_messages > self.publish_backlog and len(self._outbox) > 1:
            old = self._outbox.popleft()
            n = len(old.args) // 2
            self._outbox_messages -= n
            dropped += n
            old.release()
        if dropped:
            self._stats.publish_dropped += dropped
            logger.warning(
                "event bus: publish outbox full (%d), %d oldest message(s) dropped "
                "(subscribers resync from the database)",
                self.publish_backlog,
                dropped,
                extra={"action": "bus_publish_dropped"},
            )

    async def _drained(self) -> None:
        """Wait until the last queued message was sent (or its first attempt failed)."""
        if self._outbox:
            await asyncio.shield(self._outbox[-1].done)

    def _release_all(self) -> None:
        while self._outbox:
            self._outbox.popleft().release()
        self._outbox_messages = 0

    async def _flush_forever(self) -> None:
        """The one sender of the outbox: everything queued goes out as one command (up to
        :data:`FLUSH_MAX` messages), oldest first; a failed send is retried with backoff."""
        failures = 0
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            batch: list[_Pending] = []
            args: list[str] = []
            for pending in self._outbox:
                if batch and len(args) + len(pending.args) > 2 * FLUSH_MAX:
                    break
                batch.append(pending)
                args.extend(pending.args)
            count = len(args) // 2
            try:
                await self._send(args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the flusher must never die
                self._stats.publish_errors += count
                if not self._failing:
                    self._failing = True
                    logger.warning(
                        "event bus: publish failed (%s); %d message(s) kept, retrying until "
                        "Redis answers",
                        exc,
                        self._outbox_messages,
                        extra={"action": "bus_publish_failed"},
                    )
                for pending in self._outbox:  # nobody waits for a retry
                    pending.release()
                delay = backoff.delay(failures, base=self.backoff_base, cap=self.backoff_cap)
                failures += 1
                await asyncio.sleep(delay)
                continue
            # Late: released by a failed attempt (its caller stopped waiting). A message
            # that joined the outbox after the last failure goes out on time.
            late = sum(len(pending.args) // 2 for pending in batch if pending.done.done())
            for _ in batch:
                self._outbox.popleft().release()
            self._outbox_messages -= count
            self._stats.published += count
            if self._failing:
                self._stats.published_late += late
                if not self._outbox:
                    self._failing = False
                    failures = 0
                    logger.info(
                        "event bus: publishing again after an outage (%d message(s) sent late)",
                        self._stats.published_late,
                        extra={"action": "bus_publish_resumed"},
                    )

    async def _send(self, args: list[str]) -> None:
        """The flusher's send: on the one connection it holds (:meth:`_send_held`), or
        through the pool (:meth:`_send_pooled`) while it has none, once Redis refused
        scripts, and to retry a command the held connection failed (with redis-py's own
        retries, as every send had before)."""
        if self._scripts:
            try:
                if await self._send_held(args):
                    return
            except CONNECTION_ERRORS:
                pass  # the held connection is closed; the pool retries on a fresh one
        await self._send_pooled(args)

    async def _send_held(self, args: list[str]) -> bool:
        """Send one flush on the flusher's own connection, packed here: one write and one
        reply, none of the pool's checks and bookkeeping around each command (a flush per
        mutation, so it counts). False when the command must go through the pool instead
        (scripts refused). The connection is closed and dropped on any failure but a
        script-cache miss, which EVAL answers on it."""
        conn = self._held
        if conn is None:
            assert self._held_pool is not None
            conn = self._held = await self._held_pool.get_connection()
        if len(args) == 2:
            command = _pack(("PUBLISH", *args))
        else:
            command = _pack(("EVALSHA", _PUBLISH_SHA, "0", *args))
        done = False
        try:
            async with asyncio.timeout(self._held_timeout):
                await conn.send_packed_command(command, check_health=False)
                try:
                    await conn.read_response()
                except NoScriptError:
                    # Not cached yet, or Redis restarted / SCRIPT FLUSH: EVAL caches it.
                    await conn.send_packed_command(
                        _pack(("EVAL", _PUBLISH_SCRIPT, "0", *args)), check_health=False
                    )
                    await conn.read_response()
            done = True
        except ResponseError as exc:
            done = True  # an error reply, read in full: the connection is fine
            if not _scripts_refused(exc):
                raise
            return False  # the pool's way finds out and switches to pipelines
        finally:
            if not done:  # cancelled, timed out or lost: what is left unread is unknown
                await self._drop_held()
        return True

    async def _drop_held(self) -> None:
        conn, self._held = self._held, None
        if conn is not None and self._held_pool is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self._held_pool.release(conn)

    async def _send_pooled(self, args: list[str]) -> None:
        client = self._publisher
        assert client is not None
        if len(args) == 2:
            await client.publish(args[0], args[1])
        else:
            await self._publish_batch(client, args)

    def _batch_args(self, items: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """channel, payload, channel, payload, ... (namespaced channels, encoded payloads)."""
        args: list[str] = []
        encoded: dict[int, str] = {}  # id(message) -> JSON; ``items`` keeps them alive
        for channel, message in items:
            payload = encoded.get(id(message))
            if payload is None:
                payload = encoded[id(message)] = _encode(message)
            args.append(self._ns + channel)
            args.append(payload)
        return args

    async def _publish_batch(self, client: aioredis.Redis, args: list[str]) -> None:
        """PUBLISH every (channel, payload) pair of ``args`` with one script call (one
        command, not a pipeline of many); a pipeline where Redis refuses scripts."""
        if self._scripts:
            try:
                try:
                    await client.execute_command("EVALSHA", _PUBLISH_SHA, 0, *args)
                except NoScriptError:
                    # Not cached yet, or Redis restarted / SCRIPT FLUSH: EVAL caches it again.
                    await client.execute_command("EVAL", _PUBLISH_SCRIPT, 0, *args)
                return
            except ResponseError as exc:
                if not _scripts_refused(exc):
                    raise
                self._scripts = False
                logger.warning(
                    "event bus: Redis refuses scripts (%s); publishing with pipelines",
                    exc,
                    extra={"action": "bus_no_scripts"},
                )
        async with client.pipeline(transaction=False) as pipe:
            for i in range(0, len(args), 2):
                pipe.publish(args[i], args[i + 1])
            await pipe.execute()

    # --- subscribing -------------------------------------------------------------------

    # --- health ------------------------------------------------------------------------
    async def ping(self) -> bool:
        """True when the subscription is live and Redis answers a PING (readiness)."""
        if not self._connected.is_set() or self._publisher is None:
            return False
        try:
            async with asyncio.timeout(self.connect_timeout):
                return bool(await self._publisher.ping())
        except (TimeoutError, *CONNECTION_ERRORS):
            return False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def stats(self) -> BusStats:
        self._stats.subscribers = self._local.count
        self._stats.overflows = self._local.overflows
        return BusStats(**asdict(self._stats))

    @property
    def subscriber_count(self) -> int:
        return self._local.count

    async def wait_connected(self, within: float | None = None) -> bool:
        """Wait until the subscription is live (tests, start-up scripts)."""
        return await eventloop.wait_event(self._connected, within)

    # --- the reader --------------------------------------------------------------------
    async def _supervise(self) -> None:
        """Keep one pattern subscription alive for ever; back off between failures."""
        failures = 0
        ever_connected = False
        while not self._closing:
            pubsub = None
            try:
                assert self._listener is not None
                pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
                await pubsub.psubscribe(self._pattern)
                await self._confirm(pubsub)
                # Subscribed for sure (Redis answers in order): from here nothing is missed.
                failures = 0
                self._stats.connects += 1
                self._stats.connected = True
                if ever_connected:
                    self._stats.reconnects += 1
                    metrics.BUS_RECONNECTS.inc()
                    logger.info(
                        "event bus: reconnected to Redis, resyncing subscribers",
                        extra={"action": "bus_reconnected", "subscribers": self._local.count},
                    )
                ever_connected = True
                self._connected.set()
                self._local.broadcast(RESYNC)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the supervisor must never die
                if self._closing:
                    break
                self._connected.clear()
                self._stats.connected = False
                self._stats.connection_errors += 1
                delay = backoff.delay(failures, base=self.backoff_base, cap=self.backoff_cap)
                failures += 1
                if isinstance(exc, CONNECTION_ERRORS):
                    logger.warning(
                        "event bus: Redis connection lost (%s), retrying in %.2fs",
                        exc,
                        delay,
                        extra={"action": "bus_disconnected", "attempt": failures},
                    )
                else:
                    logger.exception(
                        "event bus: reader failed, retrying in %.2fs",
                        delay,
                        extra={"action": "bus_reader_error", "attempt": failures},
                    )
                await _discard(pubsub)
                pubsub = None
                await asyncio.sleep(delay)
            finally:
                if pubsub is not None:
                    await _discard(pubsub)

    async def _confirm(self, pubsub: Any) -> None:
        """Wait for a PONG after PSUBSCRIBE: proof that the subscription is active."""
        token = f"confirm:{time.monotonic_ns()}"
        await pubsub.ping(token)
        deadline = time.monotonic() + self.liveness_timeout
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=self.read_timeout)
            if message is None:
                continue
            if message["type"] == "pong" and _text(message["data"]) == token:
                return
            if message["type"] == "pmessage":  # already live: do not lose it
                self._dispatch(message)
        raise ConnectionError("no reply to PSUBSCRIBE/PING from Redis")

    async def _read(self, pubsub: Any) -> None:
        """Read and dispatch until the connection fails. Dead means: a PING unanswered for
        ``liveness_timeout`` AND a read that started after that deadline found nothing (a
        starved loop that gets to read late still finds the PONG, and goes on)."""
        ping_sent: float | None = None  # an unanswered PING, when it was sent
        next_ping = time.monotonic() + self.health_interval
        # Replies are read straight from the subscription's connection (RESP2 arrays:
        # ``[b"pmessage", pattern, channel, data]``, ``[b"pong", data]``), not through
        # ``PubSub.get_message``: its health check, retry wrapper and message dict cost
        # more than the message itself, and it would reconnect a closed connection
        # silently, where this raises and the supervisor resubscribes and resyncs.
        read = pubsub.connection.read_response
        while not self._closing:
            started = time.monotonic()
            reply = await read(timeout=self.read_timeout, disconnect_on_error=False)
            now = time.monotonic()
            if reply is not None:
                ping_sent = None  # any reply proves the connection alive
                next_ping = now + self.health_interval
                if _is_message(reply):
                    self._dispatch_reply(reply)
                    # What Redis already sent goes out too before delivery runs (up to
                    # READ_BATCH): in a burst, subscribers then serve several events per
                    # turn, and the live fan-out writes each socket's messages of a turn
                    # at once (graphql/live_fanout.py).
                    for _ in range(READ_BATCH - 1):
                        more = await read(timeout=0, disconnect_on_error=False)
                        if more is None:
                            break
                        if _is_message(more):
                            self._dispatch_reply(more)
                    await asyncio.sleep(0)  # let delivery run between batches
                continue
            if ping_sent is not None and started - ping_sent > self.liveness_timeout:
                raise ConnectionError(f"no reply from Redis for {now - ping_sent:.1f}s")
            if ping_sent is None and now >= next_ping:
                ping_sent = now
                await pubsub.ping("health")

    def _dispatch_reply(self, reply: list[Any]) -> None:
        """A ``pmessage`` reply: ``[b"pmessage", pattern, channel, data]``."""
        self._dispatch({"channel": reply[2], "data": reply[3]})

    def _dispatch(self, message: dict[str, Any]) -> None:
        self._stats.received += 1
        channel = _text(message["channel"])
        if self._ns:
            if not channel.startswith(self._ns):
                return
            channel = channel[len(self._ns) :]
        if not self._local.has(channel):
            return  # decode only what someone here listens to
        try:
            payload = json.loads(message["data"])
        except (ValueError, TypeError):
            logger.warning(
                "event bus: undecodable message ignored",
                extra={"action": "bus_bad_message", "channel": channel},
            )
            return
        # One decoded dict shared by every local subscriber: treat it as read-only.
        self._stats.delivered += self._local.dispatch(channel, payload)


#: The most messages the reader dispatches before letting delivery run (already received
#: ones only: it never waits to fill a batch).
READ_BATCH = 64

#: The most messages one flush sends in one command.
FLUSH_MAX = 512


class _Pending:
    """Messages of one ``publish_many`` call waiting in the outbox, and their caller."""

    __slots__ = ("args", "done")

    def __init__(self, args: list[str], done: asyncio.Future[None]) -> None:
        self.args = args
        self.done = done

    def release(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


# What json.dumps(message, separators=(",", ":"), default=str) builds on every call.
_encoder = json.JSONEncoder(separators=(",", ":"), default=str)


def _encode(message: dict[str, Any]) -> str:
    return _encoder.encode(message)


def _pack(parts: tuple[str, ...]) -> bytes:
    """A command in RESP (an array of bulk strings, UTF-8), as redis-py packs it."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _scripts_refused(exc: ResponseError) -> bool:
    """EVAL itself is not allowed (ACL, renamed/disabled command), as opposed to a failure of
    this particular call. (redis-py strips the "ERR " of the reply.)"""
    return isinstance(exc, NoPermissionError) or str(exc).lower().startswith("unknown command")


def _is_message(reply: Any) -> bool:
    """Whether a reply read from the subscription is a published message."""
    return type(reply) is list and len(reply) == 4 and reply[0] in (b"pmessage", "pmessage")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _discard(pubsub: Any) -> None:
    if pubsub is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2.0):
            await pubsub.aclose()
