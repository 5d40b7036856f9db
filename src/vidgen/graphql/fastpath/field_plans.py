"""Which fields of a schema :mod:`.executor` may resolve inline, and how: the plans.

A plan is computed once per schema, object type and field (:func:`plan_field`):

- ``BASIC``: a Strawberry field without resolver, arguments or extensions (so without
  permission classes either): ``getattr(source, python_name)``, exactly what Strawberry's
  default resolver does;
- ``NODE_ID``: Relay's ``id`` on a type keeping Strawberry's ``resolve_id`` and
  ``resolve_typename``: the same global id string, from the row's id attribute;
- ``DIRECT``: a resolver made by :func:`direct`: its pure implementation is called with
  ``(root, context)``;
- ``TYPENAME``: ``__typename`` is the parent type's name.

Its value completes inline when that is plain: a leaf (scalar or enum, through the type's
own ``coerce_output_value``: :func:`coerce_leaf`), an object of an object type whose
``is_type_of`` needs no info (see :func:`info_free`), or a list of those. Every other field
has no plan: graphql-core executes it.
"""

from __future__ import annotations

import datetime as dt
import enum
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.type import GraphQLID, GraphQLString
from strawberry import relay
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info

BASIC, NODE_ID, DIRECT, TYPENAME = range(4)

_DIRECT_ATTR = "__vidgen_direct__"
_INFO_FREE_ATTR = "__vidgen_info_free__"

# Values that are neither awaitable nor exceptions, whatever the leaf type does with them.
PLAIN = frozenset({str, int, float, bool, dt.datetime, dt.date, dt.time})

# Results that are certainly not awaitable (no need to ask ``is_awaitable``).
SETTLED = PLAIN | {type(None), dict, list}

FALLBACK: Any = object()


def direct(implementation: Callable[[Any, Any], Any]) -> Callable[[Any, Info], Any]:
    """The resolver of a field whose value is ``implementation(root, context)``; the
    executor calls ``implementation`` itself, without building an ``Info`` (a ``DIRECT``
    plan)::

        @strawberry.field(description="...")
        @direct
        def video_url(root: Any, context: Context) -> str | None: ...

    The resolver takes the implementation's name, module and return annotation (the
    field's type, evaluated in that module). Only for implementations whose result
    depends on ``root`` and ``context`` alone and that have no effect beyond it: the
    executor may call one again, through graphql-core's path, when its result cannot be
    completed inline. A field with arguments, permission classes or extensions is not
    inlined.
    """

    def resolver(root: Any, info: Info) -> Any:
        return implementation(root, info.context)

    resolver.__name__ = implementation.__name__
    resolver.__qualname__ = implementation.__qualname__
    resolver.__module__ = implementation.__module__
    resolver.__doc__ = implementation.__doc__
    # Strawberry finds ``root`` by its name and ``info`` by its type (the class itself,
    # not a string to evaluate in a module that may not import it).
    resolver.__annotations__ = {"info": Info, "return": implementation.__annotations__["return"]}
    setattr(resolver, _DIRECT_ATTR, implementation)
    return resolver


def info_free(is_type_of: Callable[..., bool]) -> Callable[..., bool]:
    """Mark an ``is_type_of`` that never reads its ``info`` argument (it is given None)."""
    setattr(is_type_of, _INFO_FREE_ATTR, True)
    return is_type_of


# How a field's value completes inline (its type without the non-null wrapper).
STRING, LEAF, OBJECT, LIST, OTHER = range(5)


@dataclass(frozen=True, slots=True)
class InlinePlan:
    """How to resolve one field of one object type inline."""

    kind: int
    return_type: GraphQLOutputType
    attr: str = ""  # BASIC: the attribute; NODE_ID: the id attribute
    func: Callable[[Any, Any], Any] | None = None  # DIRECT
    type_name: str = ""  # NODE_ID: the parent type's name

    @property
    def non_null(self) -> bool:
        return is_non_null_type(self.return_type)

    @property
    def named(self) -> Any:
        """The return type without its non-null wrapper."""
        return_type = self.return_type
        return return_type.of_type if is_non_null_type(return_type) else return_type  # type: ignore[union-attr]

    @property
    def shape(self) -> int:
        named = self.named
        if named is GraphQLString or named is GraphQLID:
            return STRING
        if is_leaf_type(named):
            return LEAF
        if is_object_type(named):
            return OBJECT
        if is_list_type(named):
            return LIST
        return OTHER


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


def plan_field(parent: GraphQLObjectType, name: str, field: GraphQLField) -> InlinePlan | None:
    """The inline plan of ``parent.name``, or None for graphql-core's path."""
    if name == "__typename":
        return InlinePlan(TYPENAME, field.type)
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
        return InlinePlan(BASIC, field.type, attr=definition.python_name)
    if resolve_name != "_resolver" or definition.is_async:
        return None  # async, or wrapped for exception handlers
    attr = _is_default_node_id(parent, resolver)
    if attr is not None:
        return InlinePlan(NODE_ID, field.type, attr=attr, type_name=parent.name)
    implementation = getattr(resolver.wrapped_func, _DIRECT_ATTR, None)
    if implementation is not None:
        return InlinePlan(DIRECT, field.type, func=implementation)
    return None


_plans: weakref.WeakKeyDictionary[GraphQLSchema, dict[GraphQLObjectType, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def type_plans(schema: GraphQLSchema, parent: GraphQLObjectType) -> dict[str, InlinePlan | None]:
    by_type = _plans.get(schema)
    if by_type is None:
        by_type = _plans[schema] = {}
    plans = by_type.get(parent)
    if plans is None:
        plans = {name: plan_field(parent, name, field) for name, field in parent.fields.items()}
        plans["__typename"] = InlinePlan(TYPENAME, GraphQLNonNull(GraphQLString))
        by_type[parent] = plans
    return plans


_type_checks: weakref.WeakKeyDictionary[GraphQLObjectType, tuple[bool, Any]] = (
    weakref.WeakKeyDictionary()
)


def type_check(object_type: GraphQLObjectType) -> tuple[bool, Any]:
    """(may complete inline, its ``is_type_of`` or None): inline only when there is no
    ``is_type_of`` or one that never reads its info (:func:`info_free`)."""
    found = _type_checks.get(object_type)
    if found is None:
        check = object_type.is_type_of
        inline = check is None or bool(
            getattr(getattr(check, "__func__", check), _INFO_FREE_ATTR, False)
        )
        found = _type_checks[object_type] = (inline, check)
    return found


NORMAL = -1  # an entry executed by graphql-core's execute_field

# One field of a selection: (response name, field details, kind, attribute, function,
# shape, non-null, named type, parent type name for NODE_ID, return type, (may complete
# inline, is_type_of) of an OBJECT's type).
Entry = tuple[str, Any, int, str, Any, int, bool, Any, str, Any, tuple[bool, Any]]
_NO_CHECK = (False, None)


def field_entries(plans: dict[str, InlinePlan | None], grouped_field_set: Any) -> list[Entry]:
    entries: list[Entry] = []
    for response_name, field_details_list in grouped_field_set.items():
        node = field_details_list[0].node
        plan = plans.get(node.name.value)
        if plan is None or node.arguments:
            entries.append(
                (
                    response_name,
                    field_details_list,
                    NORMAL,
                    "",
                    None,
                    OTHER,
                    False,
                    None,
                    "",
                    None,
                    _NO_CHECK,
                )
            )
        else:
            entries.append(
                (
                    response_name,
                    field_details_list,
                    plan.kind,
                    plan.attr,
                    plan.func,
                    plan.shape,
                    plan.non_null,
                    plan.named,
                    plan.type_name,
                    plan.return_type,
                    type_check(plan.named) if plan.shape == OBJECT else _NO_CHECK,
                )
            )
    return entries


def reads_only(entry: Entry) -> bool:
    """A field completed from an attribute read, an id or a type name into a leaf."""
    return entry[2] in (BASIC, NODE_ID, TYPENAME) and entry[5] in (STRING, LEAF)


def coerce_leaf(leaf_type: Any, value: Any) -> Any:
    """``complete_leaf_value`` for a value that is neither None, awaitable nor an
    exception; ``FALLBACK`` for anything graphql-core would not simply return."""
    kind = type(value)
    if kind is str and (leaf_type is GraphQLString or leaf_type is GraphQLID):
        return value
    if kind not in PLAIN and not isinstance(value, enum.Enum):
        return FALLBACK
    try:
        coerced = leaf_type.coerce_output_value(value)
    except Exception:  # noqa: BLE001 - graphql-core's path raises and reports it
        return FALLBACK
    if type(coerced) not in SETTLED or coerced is None:
        return FALLBACK  # None, Undefined or anything unusual: graphql-core's path
    return coerced
