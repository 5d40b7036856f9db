"""Shared event results: execute a subscription event's selection set once, deliver it to
every subscriber with the same key.

graphql-core runs a subscription's selection set again for every subscriber and every
event, with the yielded object as the root value. A thousand subscribers of one video sent
the same document therefore built the same result a thousand times (≈0.4 ms of CPU each).
Here the per-event execution is memoised, per process and per schema, by::

    (document text, operation name, variables, root type, id, version, the root object,
     the viewer's scope: "admin" or "user <id>")

so each distinct result is computed once and its ``data`` is shared by every subscriber
with the same key.

Why the key is enough (what a result depends on):

- the document and variables pick the fields and their arguments;
- the root value is the very object the subscription yielded (compared by identity, with
  its ``version``): :mod:`.subscriptions` shares one object per (video, version) between
  its subscribers and never mutates it; the relations come from loaders primed from the
  same shared state;
- the viewer: what a Video exposes is the same for everyone allowed to see it (the
  subscription resolvers check that before yielding), except fields that list through the
  services, scoped by viewer (``project { videos }``: an admin sees every owner's videos,
  a user their own). Admins share one scope; each user has their own;
- the schema and its settings (signed URLs use the server's secret and public URL, not the
  viewer; a shared URL was signed at most :data:`MAX_AGE` seconds before).

What is never shared:

- results with errors: every subscriber then executes on its own, so errors (and their
  logging and masking by the extensions) stay per subscriber;
- incremental results, roots that are not ORM rows with a ``version``, and contexts
  without a viewer.

Concurrent subscribers of one event wait for the first one's execution instead of running
their own; if it fails or is cancelled they execute for themselves. Memory is bounded: an
LRU of :data:`CACHE_SIZE` results, each kept at most :data:`MAX_AGE` seconds.

Hooked into the schema's executor class (:class:`SharedEventResults` is a mixin), nowhere
else: queries and mutations are not touched. An event whose selection the compiled plans
cover (:func:`compiled_event`) is built from the row by its plan instead of graphql-core's
executor; the memo shares it the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from graphql import ExecutionResult, GraphQLSchema
from tortoise.models import Model

from vidgen.models import Video

#: Results kept per schema (a few events of every video being watched).
CACHE_SIZE = 512
#: Seconds a result may be reused (bounds the age of the signed URLs it carries).
MAX_AGE = 10.0

_NOT_CACHEABLE = object()


@dataclass(eq=False)
class _Entry:
    """One key's result: ``data`` once executed without errors, ``pending`` meanwhile."""

    root: Any  # the yielded object: a hit needs this very object
    stored_at: float
    data: dict[str, Any] | None = None
    pending: asyncio.Future[dict[str, Any] | None] | None = None
    text: str | None = None  # ``data`` as JSON, encoded once for every subscriber


def _shareable(result: Any) -> dict[str, Any] | None:
    """The data of a result every subscriber may get, or None (errors, incremental...)."""
    if type(result) is not ExecutionResult or result.errors or result.extensions:
        return None
    return result.data


@dataclass(eq=False)
class EventResults:
    """A bounded memo of per-event subscription results (one per schema).

    Attributes:
        executions: Selection sets executed by subscribers that went through the memo.
        shared: Deliveries served with a result another subscriber's execution made.
        encodings: Shared results encoded as JSON (once each: see :meth:`encoded`).
        spliced: ``next`` messages written with an encoding made for another subscriber.
    """

    maxsize: int = CACHE_SIZE
    max_age: float = MAX_AGE
    clock: Callable[[], float] = time.monotonic
    executions: int = 0
    shared: int = 0
    encodings: int = 0
    spliced: int = 0
    _entries: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)
    _by_data: dict[int, _Entry] = field(default_factory=dict)  # id(entry.data) -> entry

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._by_data.clear()

    def encoded(self, data: Any, encode: Callable[[Any], str]) -> str | None:
        """``data`` as JSON when it is a shared result held here: encoded by the first
        subscriber's send, the same text for every other one (their ``next`` messages differ
        only in the subscription id, which the caller splices in). None for any other data
        (not shared, or evicted): the caller encodes it as usual.

        The key of a result already holds the viewer's scope, so subscribers with another
        view never share an encoding, as they never share a result.
        """
        entry = self._by_data.get(id(data))
        if entry is None or entry.data is not data:
            return None
        if entry.text is None:
            entry.text = encode(data)
            self.encodings += 1
        else:
            self.spliced += 1
        return entry.text

    def _forget(self, entry: _Entry) -> None:
        if entry.data is not None and self._by_data.get(id(entry.data)) is entry:
            del self._by_data[id(entry.data)]

    def _settle(self, entry: _Entry, data: dict[str, Any]) -> None:
        entry.data = data
        self._by_data[id(data)] = entry

    def run(
        self,
        key: Hashable,
        root: Any,
        execute: Callable[[], Any],
        is_awaitable: Callable[[Any], bool],
    ) -> Any:
        """``execute()``'s result for ``key``: remembered, joined while another subscriber
        computes it, or computed here (and remembered when it has no errors).

        Args:
            key: What the result depends on (see the module docstring).
            root: The yielded object; an entry made for another object is never used.
            execute: Runs the selection set; returns an ``ExecutionResult`` or an
                awaitable of one.
            is_awaitable: The executor's awaitable check.

        Returns:
            An ``ExecutionResult`` or an awaitable of one, like ``execute``.
        """
        entry = self._entries.get(key)
        if entry is not None:
            if entry.root is root and self.clock() - entry.stored_at <= self.max_age:
                self._entries.move_to_end(key)
                if entry.data is not None:
                    self.shared += 1
                    return ExecutionResult(entry.data, None)
                assert entry.pending is not None
                return self._join(entry.pending, execute, is_awaitable)
            del self._entries[key]
            self._forget(entry)
        self.executions += 1
        result = execute()
        if not is_awaitable(result):
            data = _shareable(result)
            if data is not None:
                entry = _Entry(root=root, stored_at=self.clock())
                self._settle(entry, data)
                self._put(key, entry)
            return result
        loop = asyncio.get_running_loop()
        entry = _Entry(root=root, stored_at=self.clock(), pending=loop.create_future())
        self._put(key, entry)
        return self._lead(key, entry, result)

    def _put(self, key: Hashable, entry: _Entry) -> None:
        old = self._entries.get(key)
        if old is not None and old is not entry:
            self._forget(old)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._forget(self._entries.popitem(last=False)[1])

    async def _lead(self, key: Hashable, entry: _Entry, result: Awaitable[Any]) -> Any:
        data = None
        try:
            value = await result
            data = _shareable(value)
            return value
        finally:
            # Settled even when cancelled: the subscribers waiting then execute themselves.
            pending, entry.pending = entry.pending, None
            if data is None:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            else:
                if self._entries.get(key) is entry:
                    self._settle(entry, data)
                else:
                    entry.data = data  # evicted meanwhile: shared with its waiters only
                entry.stored_at = self.clock()
            if pending is not None and not pending.done():
                pending.set_result(data)

    async def _join(
        self,
        pending: asyncio.Future[dict[str, Any] | None],
        execute: Callable[[], Any],
        is_awaitable: Callable[[Any], bool],
    ) -> Any:
        data = await asyncio.shield(pending)  # a waiter's cancellation stays its own
        if data is not None:
            self.shared += 1
            return ExecutionResult(data, None)
        self.executions += 1  # the first execution failed: errors are each subscriber's
        result = execute()
        return await result if is_awaitable(result) else result


_results: weakref.WeakKeyDictionary[GraphQLSchema, EventResults] = weakref.WeakKeyDictionary()


def results_for(schema: GraphQLSchema) -> EventResults:
    """The memo of one schema (one per app: results depend on its settings)."""
    found = _results.get(schema)
    if found is None:
        found = _results[schema] = EventResults()
    return found


def _no_json(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _operation_key(executor: Any) -> Hashable:
    """What the subscription's document, operation and variables contribute to the key
    (computed once per subscription), or ``_NOT_CACHEABLE``."""
    operation = executor.operation
    if operation.loc is None:
        return _NOT_CACHEABLE
    try:
        variables = json.dumps(executor.variable_values.coerced, sort_keys=True, default=_no_json)
    except (TypeError, ValueError):
        return _NOT_CACHEABLE  # not plain JSON: no reliable key, execute every time
    name = operation.name.value if operation.name is not None else None
    return (operation.loc.source.body, name, variables)


def _viewer_scope(context: Any) -> Hashable | None:
    viewer = getattr(context, "viewer", None)
    if viewer is None:
        return None
    return ("admin",) if viewer.is_admin else ("user", viewer.id)


def event_key(executor: Any, operation_key: Hashable) -> Hashable | None:
    """The memo key of one event's execution, or None when it must not be shared."""
    root = executor.root_value
    if operation_key is _NOT_CACHEABLE or not isinstance(root, Model):
        return None
    version = getattr(root, "version", None)
    scope = _viewer_scope(executor.context_value)
    if version is None or scope is None:
        return None
    return (operation_key, type(root), root.pk, version, id(root), scope)


class SharedEventResults:
    """Executor mixin (before graphql-core's executor in the bases): subscription events
    execute through the schema's :class:`EventResults`; everything else as usual."""

    _shared_operation_key: Hashable | None = None  # set on per-event executors only

    def build_per_event_executor(self, payload: Any) -> Any:
        operation_key = self.__dict__.get("_shared_subscription_key")
        if operation_key is None:
            operation_key = self._shared_subscription_key = _operation_key(self)
        executor = super().build_per_event_executor(payload)  # type: ignore[misc]
        executor._shared_operation_key = operation_key
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        parent = super()
        if self._shared_operation_key is None:
            return parent.execute_operation(serially)  # type: ignore[misc]

        def execute() -> Any:
            # The compiled plan's answer when it has one (same data), else graphql-core's.
            data = compiled_event(self)
            if data is not None:
                return ExecutionResult(data, None)
            return parent.execute_operation(serially)  # type: ignore[misc]

        key = event_key(self, self._shared_operation_key)
        if key is None:
            return execute()
        return results_for(self.schema).run(  # type: ignore[attr-defined]
            key,
            self.root_value,  # type: ignore[attr-defined]
            execute,
            self.is_awaitable,  # type: ignore[attr-defined]
        )


def compiled_event(executor: Any) -> dict[str, Any] | None:
    """One event's ``data`` from the compiled plans (docs/graphql-execution.md): the
    subscription's selection built straight from the yielded video row, or None when
    graphql-core must execute it (a relation, a directive, an error...)."""
    from vidgen.graphql.compiled import plans_for  # it imports the types, built after this

    root = executor.root_value
    settings = getattr(executor.context_value, "settings", None)
    operation = executor.operation
    if not isinstance(root, Video) or settings is None or operation.loc is None:
        return None
    name = operation.name.value if operation.name is not None else None
    viewer = getattr(executor.context_value, "viewer", None)
    plans = plans_for(executor.schema, settings)
    return plans.event_result(operation.loc.source.body, name, None, viewer, root)
