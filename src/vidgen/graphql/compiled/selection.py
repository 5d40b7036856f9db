"""A document's selection sets, flattened once: fragments inlined, fields merged by name.

:func:`collect` is GraphQL's CollectFields for the documents a plan takes: the object type
of every selection set is known when it is compiled, so a fragment either applies to it
(same type, or an interface it implements) or not, once and for all. A directive anywhere
(``@skip``, ``@include``, ``@defer``, any other) makes the document :class:`Unsupported`:
its fields would depend on variables or on incremental delivery, which plans do not model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
)


class Unsupported(Exception):  # noqa: N818 - a verdict on a document, not a failure
    """The document has something no plan handles: it always runs through Strawberry."""


Fields = dict[str, list[FieldNode]]


def collect(
    schema: GraphQLSchema,
    object_type: GraphQLObjectType,
    selection_sets: Iterable[SelectionSetNode | None],
    fragments: dict[str, FragmentDefinitionNode],
) -> Fields:
    """The fields selected on ``object_type`` by ``selection_sets`` (the sub-selections of
    one response key, merged), by response key in document order."""
    found: Fields = {}
    for selection_set in selection_sets:
        if selection_set is not None:
            _collect(schema, object_type, selection_set, fragments, found, set())
    return found


def _collect(
    schema: GraphQLSchema,
    object_type: GraphQLObjectType,
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    found: Fields,
    visited: set[str],
) -> None:
    for selection in selection_set.selections:
        if selection.directives:
            raise Unsupported("a directive")
        if isinstance(selection, FieldNode):
            key = (selection.alias or selection.name).value
            found.setdefault(key, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is None or _applies(schema, condition.name.value, object_type):
                _collect(schema, object_type, selection.selection_set, fragments, found, visited)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in visited:
                continue
            visited.add(name)
            fragment = fragments.get(name)
            if fragment is None:
                raise Unsupported("an unknown fragment")
            if fragment.directives:
                raise Unsupported("a directive")
            if _applies(schema, fragment.type_condition.name.value, object_type):
                _collect(schema, object_type, fragment.selection_set, fragments, found, visited)
        else:  # pragma: no cover - graphql-core has no other selection
            raise Unsupported(type(selection).__name__)


def _applies(schema: GraphQLSchema, condition: str, object_type: GraphQLObjectType) -> bool:
    if condition == object_type.name:
        return True
    named: Any = schema.get_type(condition)
    if named is None or isinstance(named, GraphQLObjectType):
        return False
    return schema.is_sub_type(named, object_type)


def sub_selections(nodes: list[FieldNode]) -> list[SelectionSetNode | None]:
    return [node.selection_set for node in nodes]
