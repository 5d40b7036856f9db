"""Field execution without per-field machinery where it cannot change the result.

graphql-core executes every field the same way: a response path, a ``GraphQLResolveInfo``,
Strawberry's resolver wrapper (its ``Info``, argument conversion, the field-extension
chain), awaitable checks, then ``complete_value``. For a page of 50 videos with their
relations that is about a thousand fields per request, and most of the request's time,
although most fields only read an attribute of an ORM row.

:class:`FastFields` (an executor mixin) resolves some fields inline, from a plan computed
once per schema and field:

- ``BASIC``: a Strawberry field without resolver, arguments or extensions (so without
  permission classes either): ``getattr(source, python_name)``, exactly what Strawberry's
  default resolver does;
- ``NODE_ID``: Relay's ``id`` on a type keeping Strawberry's ``resolve_id`` and
  ``resolve_typename``: the same global id string, from the row's id attribute;
- ``DIRECT``: a sync resolver without arguments or extensions marked with :func:`direct`:
  its pure implementation is called with ``(root, context)``;
- ``TYPENAME``: ``__typename`` is the parent type's name.

and completes their values inline when that is plain: a leaf (scalar or enum, through the
type's own ``coerce_output_value``), an object of an object type whose ``is_type_of`` needs
no info (see :func:`info_free`), or a list of those. Its sub-selection goes through
graphql-core's own ``collect_and_execute_subfields``, so fields below are planned again.

Everything else takes graphql-core's path, unchanged. So does every case where the inline
path could differ: an exception from the resolver or the coercion, None for a non-null
type, an awaitable or exception as value, an ``is_type_of`` that says no, a value that is
not a list where a list is expected, directives on a list field (``@stream``), incremental
delivery (``@defer``: a position context), and middleware. Those checks all happen before
anything is executed below the field, and the plans only inline pure reads, so the
fallback simply executes the field again, as graphql-core would have: its result, errors,
error paths and null propagation are then graphql-core's. Errors raised below an inline
field are handled with graphql-core's ``handle_field_error``, as ``execute_field`` does.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.pyutils import Path, Undefined, gather_with_cancel
from graphql.type import GraphQLID, GraphQLString
from strawberry import relay
from strawberry.schema.schema_converter import GraphQLCoreConverter

BASIC, NODE_ID, DIRECT, TYPENAME = range(4)

_DIRECT_ATTR = "__vidgen_direct__"
_INFO_FREE_ATTR = "__vidgen_info_free__"

# Values that are neither awaitable nor exceptions, whatever the leaf type does with them.
_PLAIN = frozenset({str, int, float, bool, dt.datetime, dt.date, dt.time})

# Results that are certainly not awaitable (no need to ask ``is_awaitable``).
_SETTLED = _PLAIN | {type(None), dict, list}

_FALLBACK: Any = object()


def direct(implementation: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    """Mark a resolver as ``implementation(root, context)``, which the executor may call
    instead of the resolver (without building an ``Info``).

    Only for sync resolvers without arguments (besides ``root`` and ``info``), permission
    classes or field extensions, whose result is exactly ``implementation(root,
    info.context)``, and when calling it has no effect beyond its result (it may be
    called again, by graphql-core's path, when its result cannot be completed inline).
    """

    def mark(resolver: Any) -> Any:
        setattr(resolver, _DIRECT_ATTR, implementation)
        return resolver

    return mark


def info_free(is_type_of: Callable[..., bool]) -> Callable[..., bool]:
    """Mark an ``is_type_of`` that never reads its ``info`` argument (it is given None)."""
    setattr(is_type_of, _INFO_FREE_ATTR, True)
    return is_type_of


@dataclass(frozen=True, slots=True)
class Plan:
    """How to resolve one field of one object type inline."""

    kind: int
    return_type: GraphQLOutputType
    attr: str = ""  # BASIC: the attribute; NODE_ID: the id attribute
    func: Callable[[Any, Any], Any] | None = None  # DIRECT
    type_name: str = ""  # NODE_ID: the parent type's name


def _strawberry_field(field: GraphQLField) -> Any:
    return (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)


def _is_default_node_id(parent: GraphQLObjectType, resolver: Any) -> str | None:
    """The id attribute when ``resolver`` is Relay's ``Node.id`` on a type that keeps
    the default ``resolve_id``/``resolve_typename``; else None."""
    func = getattr(resolver.wrapped_func, "__func__", None)
    if func is None or func is not relay.Node._id.__func__:  # type: ignore[attr-defined]
        return None
    definition = (parent.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    origin = getattr(definition, "origin", None)
    if not (isinstance(origin, type) and issubclass(origin, relay.Node)):
        return None
    if (
        origin.resolve_id.__func__ is not relay.Node.resolve_id.__func__  # type: ignore[attr-defined]
        or origin.resolve_typename.__func__ is not relay.Node.resolve_typename.__func__  # type: ignore[attr-defined]
    ):
        return None
    try:
        return origin.resolve_id_attr()
    except Exception:  # noqa: BLE001 - no usable NodeID annotation: not inlined
        return None


def plan_field(parent: GraphQLObjectType, name: str, field: GraphQLField) -> Plan | None:
    """The inline plan of ``parent.name``, or None for graphql-core's path."""
    if name == "__typename":
        return Plan(TYPENAME, field.type)
    if field.args:
        return None
    definition = _strawberry_field(field)
    if definition is None or definition.extensions:
        return None
    resolve_name = getattr(field.resolve, "__name__", "")
    resolver = definition.base_resolver
    if resolver is None:
        # Strawberry resolves a basic field with its default resolver; inline only the
        # stock one (getattr) and only when Strawberry took its basic path too.
        if resolve_name != "_get_basic_result" or definition.default_resolver is not getattr:
            return None
        return Plan(BASIC, field.type, attr=definition.python_name)
    if resolve_name != "_resolver" or definition.is_async:
        return None  # async, or wrapped for exception handlers
    attr = _is_default_node_id(parent, resolver)
    if attr is not None:
        return Plan(NODE_ID, field.type, attr=attr, type_name=parent.name)
    implementation = getattr(resolver.wrapped_func, _DIRECT_ATTR, None)
    if implementation is not None:
        return Plan(DIRECT, field.type, func=implementation)
    return None


_plans: weakref.WeakKeyDictionary[GraphQLSchema, dict[GraphQLObjectType, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _type_plans(schema: GraphQLSchema, parent: GraphQLObjectType) -> dict[str, Plan | None]:
    by_type = _plans.get(schema)
    if by_type is None:
        by_type = _plans[schema] = {}
    plans = by_type.get(parent)
    if plans is None:
        plans = {name: plan_field(parent, name, field) for name, field in parent.fields.items()}
        plans["__typename"] = Plan(TYPENAME, GraphQLNonNull(GraphQLString))
        by_type[parent] = plans
    return plans


def _is_type_of_inline(object_type: GraphQLObjectType) -> bool:
    """True when ``object_type``'s ``is_type_of`` (if any) may be called without info."""
    check = object_type.is_type_of
    if check is None:
        return True
    return bool(getattr(getattr(check, "__func__", check), _INFO_FREE_ATTR, False))


class FastFields:
    """Executor mixin (before graphql-core's executor in the bases); see the module
    docstring. ``fast_fields = False`` turns it off (graphql-core's path for every field)."""

    fast_fields: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager  # type: ignore[attr-defined]
        # Middleware wraps every resolver: then nothing is inlined.
        self._inline = self.fast_fields and not getattr(manager, "middlewares", None)

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
        plans = _type_plans(self.schema, parent_type)  # type: ignore[attr-defined]
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable  # type: ignore[attr-defined]
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                node = field_details_list[0].node
                plan = plans.get(node.name.value)
                result = _FALLBACK
                if plan is not None and not node.arguments:
                    result = self._execute_inline(
                        plan, parent_type, source_value, field_details_list, path, response_name
                    )
                if result is _FALLBACK:
                    result = self.execute_field(  # type: ignore[attr-defined]
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        position_context,
                    )
                    if result is Undefined:
                        continue
                results[response_name] = result
                if type(result) not in _SETTLED and is_awaitable(result):
                    awaitable_fields.append(response_name)
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

    def _execute_inline(
        self,
        plan: Plan,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path | None,
        response_name: str,
    ) -> Any:
        """The field's completed value (or an awaitable of it), or ``_FALLBACK`` when
        graphql-core must execute it (nothing below it has run then)."""
        kind = plan.kind
        try:
            if kind == BASIC:
                value = getattr(source, plan.attr)
            elif kind == DIRECT:
                value = plan.func(source, self.context_value)  # type: ignore[misc, attr-defined]
            elif kind == NODE_ID:
                if isinstance(source, relay.Node):
                    return _FALLBACK  # Strawberry then asks the row's own class
                node_id = getattr(source, plan.attr)
                if node_id is None or type(node_id) not in _PLAIN:
                    return _FALLBACK
                raw = f"{plan.type_name}:{node_id}".encode()
                return base64.b64encode(raw).decode()
            else:  # TYPENAME
                return parent_type.name
        except Exception:  # noqa: BLE001 - graphql-core's path raises and reports it
            return _FALLBACK
        return_type = plan.return_type
        if value is None:
            return _FALLBACK if is_non_null_type(return_type) else None
        named = return_type.of_type if is_non_null_type(return_type) else return_type  # type: ignore[union-attr]
        if is_leaf_type(named):
            return _coerce_leaf(named, value)
        if self.is_awaitable(value) or isinstance(value, Exception):  # type: ignore[attr-defined]
            return _FALLBACK
        field_path = Path(path, response_name, parent_type.name)
        try:
            if is_object_type(named):
                completed = self._complete_object(named, field_details_list, field_path, value)
            elif is_list_type(named):
                completed = self._complete_list(named, field_details_list, field_path, value)
            else:
                return _FALLBACK  # abstract types: graphql-core resolves the runtime type
        except Exception as raw_error:  # raised below this field: as execute_field does
            self.handle_field_error(raw_error, return_type, field_details_list, field_path)  # type: ignore[attr-defined]
            return None
        if completed is _FALLBACK or not self.is_awaitable(completed):  # type: ignore[attr-defined]
            return completed
        return self._await_completed(completed, return_type, field_details_list, field_path)

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
        if not _is_type_of_inline(object_type):
            return _FALLBACK
        check = object_type.is_type_of
        if check is not None and not check(value, None):
            return _FALLBACK  # graphql-core raises its "Expected value of type" error
        return self.collect_and_execute_subfields(  # type: ignore[attr-defined]
            object_type, field_details_list, path, value, None
        )

    def _complete_list(
        self, list_type: GraphQLList[Any], field_details_list: Any, path: Path, value: Any
    ) -> Any:
        if type(value) is not list and type(value) is not tuple:
            return _FALLBACK
        if any(details.node.directives for details in field_details_list):
            return _FALLBACK  # @stream (and any other directive): graphql-core's path
        item_type = list_type.of_type
        item_non_null = is_non_null_type(item_type)
        named = item_type.of_type if item_non_null else item_type
        if is_leaf_type(named):
            completed_leaves = []
            for item in value:
                if item is None:
                    if item_non_null:
                        return _FALLBACK
                    completed_leaves.append(None)
                    continue
                leaf = _coerce_leaf(named, item)
                if leaf is _FALLBACK:
                    return _FALLBACK
                completed_leaves.append(leaf)
            return completed_leaves
        if not is_object_type(named) or not _is_type_of_inline(named):
            return _FALLBACK
        check = named.is_type_of
        is_awaitable = self.is_awaitable  # type: ignore[attr-defined]
        for item in value:  # every check before anything below runs
            if item is None:
                if item_non_null:
                    return _FALLBACK
            elif (
                is_awaitable(item)
                or isinstance(item, Exception)
                or (check is not None and not check(item, None))
            ):
                return _FALLBACK
        execute = self.collect_and_execute_subfields  # type: ignore[attr-defined]
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(value):
                if item is None:
                    completed.append(None)
                    continue
                item_path = path.add_key(index, None)
                try:
                    result = execute(named, field_details_list, item_path, item, None)
                except Exception as raw_error:  # as complete_list_item_value does
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)  # type: ignore[attr-defined]
                    completed.append(None)
                    continue
                if is_awaitable(result):
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


def _coerce_leaf(leaf_type: Any, value: Any) -> Any:
    """``complete_leaf_value`` for a value that is neither None, awaitable nor an
    exception; ``_FALLBACK`` for anything graphql-core would not simply return."""
    kind = type(value)
    if kind is str and (leaf_type is GraphQLString or leaf_type is GraphQLID):
        return value
    if kind not in _PLAIN and not isinstance(value, enum.Enum):
        return _FALLBACK
    try:
        coerced = leaf_type.coerce_output_value(value)
    except Exception:  # noqa: BLE001 - graphql-core's path raises and reports it
        return _FALLBACK
    if coerced is None or coerced is Undefined:
        return _FALLBACK
    return coerced
