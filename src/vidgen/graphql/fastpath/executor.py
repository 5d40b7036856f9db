"""Field execution without per-field machinery where it cannot change the result.

graphql-core executes every field the same way: a response path, a ``GraphQLResolveInfo``,
Strawberry's resolver wrapper (its ``Info``, argument conversion, the field-extension
chain), awaitable checks, then ``complete_value``. For a page of 50 videos with their
relations that is about a thousand fields per request, and most of the request's time,
although most fields only read an attribute of an ORM row.

:class:`FastFields` (an executor mixin) resolves the fields that have a plan (see
:mod:`.field_plans`: attribute reads, Relay ids, ``direct`` resolvers, ``__typename``)
inline and completes their values inline when that is plain. Its sub-selection goes
through graphql-core's own ``collect_subfields``, so fields below are planned again.

Everything else takes graphql-core's path, unchanged. So does every case where the inline
path could differ: an exception from the resolver or the coercion, None for a non-null
type, an awaitable or exception as value, an ``is_type_of`` that says no, a value that is
not a list where a list is expected, directives on a list field (``@stream``), incremental
delivery (``@defer``: a position context), and middleware. Those checks all happen before
anything is executed below the field, and the plans only inline pure reads, so the
fallback simply executes the field again, as graphql-core would have: its result, errors,
error paths and null propagation are then graphql-core's. Errors raised below an inline
field are handled with graphql-core's ``handle_field_error``, as ``execute_field`` does.

Within a query (not a mutation or subscription), an object reached again under the same
selection, when that selection only reads attributes, ids and type names into leaves (a
page's owner, its projects, themes and tags), reuses the values completed the first time,
provided that completion never left the inline path (so no error was recorded for it).

:func:`is_awaitable` is the executor's awaitable check: Strawberry's, except that an ORM
row is a plain value.
"""

from __future__ import annotations

import base64
from typing import Any

from graphql import (
    GraphQLList,
    GraphQLObjectType,
    OperationType,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry import relay
from strawberry.execution import optimized_is_awaitable
from tortoise.models import Model

from vidgen.graphql.fastpath.field_plans import (
    BASIC,
    DIRECT,
    FALLBACK,
    LEAF,
    LIST,
    NODE_ID,
    OBJECT,
    PLAIN,
    SETTLED,
    STRING,
    TYPENAME,
    Entry,
    coerce_leaf,
    field_entries,
    reads_only,
    type_check,
    type_plans,
)


def is_awaitable(value: Any) -> bool:
    """Strawberry's check, except that an ORM row is a plain value.

    Tortoise models define ``__await__`` (awaiting a row just returns it; see
    docs/library-notes.md), so to graphql-core
    every row a resolver returns looked pending: it completed each one through a coroutine
    and gathered sibling fields in tasks. Awaiting a row gives the row itself, so treating it
    as a value changes no result, only the cost.
    """
    cls = type(value)
    if cls in _ROW_TYPES:
        return False
    if issubclass(cls, Model):
        _ROW_TYPES.add(cls)
        return False
    return optimized_is_awaitable(value) and not isinstance(value, Model)


_ROW_TYPES: set[type] = set()  # the model classes seen (a type test is cheaper)


class FastFields:
    """Executor mixin (before graphql-core's executor in the bases); see the module
    docstring. ``fast_fields = False`` turns it off (graphql-core's path for every field)."""

    fast_fields: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager  # type: ignore[attr-defined]
        # Middleware wraps every resolver: then nothing is inlined.
        self._inline = self.fast_fields and not getattr(manager, "middlewares", None)
        # Per operation (shared with per-event copies, like graphql-core's own memo of
        # collected subfields): the entries of each grouped field set, and of each
        # (object type, field group) below an inline field. Keys hold ids: the values
        # keep the keyed objects alive.
        self._programs: dict[int, tuple[Any, list[Entry]]] = {}
        self._subprograms: dict[tuple[Any, int], tuple[Any, list[Entry] | None, bool]] = {}
        # Leaf-only selections of the same object, within one query: see _execute_object.
        self._memo: dict[tuple[int, int], tuple[Any, Any, dict[str, Any]]] | None = (
            {} if self.operation.operation == OperationType.QUERY else None  # type: ignore[attr-defined]
        )
        self._fell_back = False
        self._list_plans: dict[tuple[int, int], tuple[Any, ...]] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        if position_context is not None or not self._inline:
            return super().execute_fields(  # type: ignore[misc]
                parent_type, source_value, path, grouped_field_set, position_context
            )
        program = self._programs.get(id(grouped_field_set))
        if program is None:
            plans = type_plans(self.schema, parent_type)  # type: ignore[attr-defined]
            program = self._programs[id(grouped_field_set)] = (
                grouped_field_set,
                field_entries(plans, grouped_field_set),
            )
        return self._run(parent_type, source_value, path, program[1])

    def _execute_object(
        self, object_type: GraphQLObjectType, field_details_list: Any, path: Path, value: Any
    ) -> Any:
        """``collect_and_execute_subfields`` for a value completed inline."""
        key = (object_type, id(field_details_list))
        program = self._subprograms.get(key)
        if program is None:
            grouped_field_set, new_defer_usages = self.collect_subfields(  # type: ignore[attr-defined]
                object_type, field_details_list
            )[:2]
            entries = None
            if not new_defer_usages:
                plans = type_plans(self.schema, object_type)  # type: ignore[attr-defined]
                entries = field_entries(plans, grouped_field_set)
            program = self._subprograms[key] = (
                field_details_list,
                entries,
                entries is not None and all(reads_only(entry) for entry in entries),
            )
        _, entries, leaf_reads = program
        if entries is None:  # @defer below: graphql-core's incremental path
            return self.collect_and_execute_subfields(  # type: ignore[attr-defined]
                object_type, field_details_list, path, value, None
            )
        memo = self._memo
        if not leaf_reads or memo is None:
            return self._run(object_type, value, path, entries)
        # The same object under the same leaf-only selection (a page's owner, its projects,
        # tags...) completes to the same values: attribute reads and ids, no resolver runs,
        # and nothing changes a row while a query executes. Reused only when the first
        # completion took the inline path all along (no error could have been recorded).
        # (Callers look the memo up before they make a path: see _memoized.)
        fell_back, self._fell_back = self._fell_back, False
        result = self._run(object_type, value, path, entries)
        if not self._fell_back and type(result) is dict:
            memo[id(value), id(field_details_list)] = (value, field_details_list, result)
        self._fell_back = fell_back or self._fell_back
        return result

    def _run(
        self, parent_type: GraphQLObjectType, source: Any, path: Path | None, entries: list[Entry]
    ) -> Any:
        """graphql-core's ``execute_fields`` over ``entries``, inlining what it may."""
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable  # type: ignore[attr-defined]
        context = self.context_value  # type: ignore[attr-defined]
        memo = self._memo
        awaitable_fields: list[str] = []
        try:
            for entry in entries:
                (
                    name,
                    details,
                    kind,
                    attr,
                    func,
                    shape,
                    non_null,
                    named,
                    type_name,
                    rtype,
                    tcheck,
                ) = entry
                result = FALLBACK
                if kind == BASIC or kind == DIRECT:
                    try:
                        value = getattr(source, attr) if kind == BASIC else func(source, context)
                    except Exception:  # noqa: BLE001 - graphql-core's path raises, reports it
                        value = FALLBACK
                    if value is FALLBACK:
                        pass
                    elif shape == STRING and type(value) is str:
                        result = value
                    elif value is None:
                        result = FALLBACK if non_null else None
                    elif shape <= LEAF:
                        result = coerce_leaf(named, value)
                    elif (
                        shape == OBJECT
                        and memo is not None
                        and (hit := memo.get((id(value), id(details)))) is not None
                        and hit[0] is value
                    ):
                        # Completed before under this very field: so it passed the checks
                        # below then (they depend only on the value and the field).
                        results[name] = hit[2]
                        continue
                    elif (
                        shape == OBJECT
                        and tcheck[0]
                        and not is_awaitable(value)
                        and not isinstance(value, Exception)
                        and (tcheck[1] is None or tcheck[1](value, None))
                    ):
                        field_path = Path(path, name, parent_type.name)
                        try:
                            result = self._execute_object(named, details, field_path, value)
                        except Exception as raw_error:  # raised below: as execute_field does
                            self.handle_field_error(raw_error, rtype, details, field_path)  # type: ignore[attr-defined]
                            result = None
                        else:
                            if type(result) is not dict and is_awaitable(result):
                                result = self._await_completed(result, rtype, details, field_path)
                                awaitable_fields.append(name)
                        results[name] = result
                        continue
                    elif shape == LIST and not is_awaitable(value):
                        field_path = Path(path, name, parent_type.name)
                        result = self._complete(shape, named, rtype, details, field_path, value)
                        if result is not FALLBACK:
                            if type(result) not in SETTLED and is_awaitable(result):
                                awaitable_fields.append(name)
                            results[name] = result
                            continue
                elif kind == NODE_ID:
                    if not isinstance(source, relay.Node):  # else: the row's own class
                        node_id = getattr(source, attr, None)
                        if node_id is not None and type(node_id) in PLAIN:
                            result = base64.b64encode(f"{type_name}:{node_id}".encode()).decode()
                elif kind == TYPENAME:
                    result = parent_type.name
                if result is FALLBACK:
                    self._fell_back = True
                    result = self.execute_field(  # type: ignore[attr-defined]
                        parent_type, source, details, Path(path, name, parent_type.name), None
                    )
                    if result is Undefined:
                        continue
                    if type(result) not in SETTLED and is_awaitable(result):
                        awaitable_fields.append(name)
                results[name] = result
        except Exception:
            if awaitable_fields:
                self.settle_in_background(  # type: ignore[attr-defined]
                    [results[field] for field in awaitable_fields]
                )
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _complete(
        self,
        shape: int,
        named: Any,
        return_type: Any,
        field_details_list: Any,
        path: Path,
        value: Any,
    ) -> Any:
        """The completed object or list (or an awaitable of it), or ``FALLBACK`` when
        graphql-core must execute the field (nothing below it has run then)."""
        if isinstance(value, Exception):
            return FALLBACK
        try:
            if shape == OBJECT:
                completed = self._complete_object(named, field_details_list, path, value)
            else:
                completed = self._complete_list(named, field_details_list, path, value)
        except Exception as raw_error:  # raised below this field: as execute_field does
            self.handle_field_error(raw_error, return_type, field_details_list, path)  # type: ignore[attr-defined]
            return None
        if completed is FALLBACK or type(completed) in SETTLED:
            return completed
        if not self.is_awaitable(completed):  # type: ignore[attr-defined]
            return completed
        return self._await_completed(completed, return_type, field_details_list, path)

    async def _await_completed(
        self, completed: Any, return_type: Any, field_details_list: Any, path: Path
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)  # type: ignore[attr-defined]
            return None

    def _complete_object(
        self, object_type: GraphQLObjectType, field_details_list: Any, path: Path, value: Any
    ) -> Any:
        inline, check = type_check(object_type)
        if not inline:
            return FALLBACK
        if check is not None and not check(value, None):
            return FALLBACK  # graphql-core raises its "Expected value of type" error
        return self._execute_object(object_type, field_details_list, path, value)

    def _list_plan(self, list_type: GraphQLList[Any], field_details_list: Any) -> tuple[Any, ...]:
        """What :meth:`_complete_list` needs of a list field, computed once per operation:
        (directives on the field, item type, items non-null, named item type, a leaf,
        an object type completed inline, its is_type_of)."""
        key = (id(list_type), id(field_details_list))
        plan = self._list_plans.get(key)
        if plan is None:
            item_type = list_type.of_type
            item_non_null = is_non_null_type(item_type)
            named = item_type.of_type if item_non_null else item_type
            inline, check = type_check(named) if is_object_type(named) else (False, None)
            plan = (
                any(details.node.directives for details in field_details_list),
                item_type,
                item_non_null,
                named,
                is_leaf_type(named),
                inline,
                check,
                (list_type, field_details_list),  # keeps the keyed objects alive
            )
            self._list_plans[key] = plan
        return plan

    def _complete_list(
        self, list_type: GraphQLList[Any], field_details_list: Any, path: Path, value: Any
    ) -> Any:
        if type(value) is not list and type(value) is not tuple:
            return FALLBACK
        directives, item_type, item_non_null, named, leaf, inline, check, _ = self._list_plan(
            list_type, field_details_list
        )
        if directives:
            return FALLBACK  # @stream (and any other directive): graphql-core's path
        if leaf:
            completed_leaves = []
            for item in value:
                if item is None:
                    if item_non_null:
                        return FALLBACK
                    completed_leaves.append(None)
                    continue
                leaf = coerce_leaf(named, item)
                if leaf is FALLBACK:
                    return FALLBACK
                completed_leaves.append(leaf)
            return completed_leaves
        if not inline:  # not an object type, or not one completed inline
            return FALLBACK
        is_awaitable = self.is_awaitable  # type: ignore[attr-defined]
        execute = self._execute_object
        memo = self._memo
        memo_tag = id(field_details_list)
        for item in value:  # every check before anything below runs
            if item is None:
                if item_non_null:
                    return FALLBACK
            elif memo is not None and (hit := memo.get((id(item), memo_tag))) and hit[0] is item:
                continue  # completed before as an item of this field: it passed then
            elif (
                is_awaitable(item)
                or isinstance(item, Exception)
                or (check is not None and not check(item, None))
            ):
                return FALLBACK
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(value):
                if item is None:
                    completed.append(None)
                    continue
                if memo is not None:
                    hit = memo.get((id(item), memo_tag))
                    if hit is not None and hit[0] is item:
                        completed.append(hit[2])
                        continue
                item_path = path.add_key(index, None)
                try:
                    result = execute(named, field_details_list, item_path, item)
                except Exception as raw_error:  # as complete_list_item_value does
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)  # type: ignore[attr-defined]
                    completed.append(None)
                    continue
                if type(result) is not dict and is_awaitable(result):
                    completed.append(
                        self._await_completed(result, item_type, field_details_list, item_path)
                    )
                    awaitable_indices.append(index)
                else:
                    completed.append(result)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed[i] for i in awaitable_indices])  # type: ignore[attr-defined]
            raise
        if not awaitable_indices:
            return completed

        async def get_completed() -> list[Any]:
            if len(awaitable_indices) == 1:
                index = awaitable_indices[0]
                completed[index] = await completed[index]
            else:
                awaited = await gather_with_cancel(*(completed[i] for i in awaitable_indices))
                for index, item in zip(awaitable_indices, awaited, strict=True):
                    completed[index] = item
            return completed

        return get_completed()
