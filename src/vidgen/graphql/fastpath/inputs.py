"""Input objects built from a plan made once per input type, not re-derived per request.

Strawberry converts an input object's value field by field, and for every field of every
request it converts the field's name to its GraphQL name, resolves the field's type
annotation and walks the type to find out that a plain scalar needs no converting. For
``generateVideo`` (18 input fields) that was about a tenth of the server's time per request.

:func:`install` gives each of the schema's input types a ``from_input`` hook (Strawberry's
own extension point for types that build their own value): an :class:`InputBuilder` holding
a plan made on first use, for each field its GraphQL name, its Python name, and whether its
value is used as it is. That is exactly the case where Strawberry's ``convert_argument``
returns the value unchanged (a scalar or an enum, optional or not, other than a Relay
``GlobalID``), or a copy of the list (a list of those). Every other field (nested inputs,
``GlobalID``, ``Maybe``, lazy types) is converted by Strawberry itself
(``InputContext.convert``), with its path, nulls included. Fields the client left out get
``None`` when they have no default, as Strawberry gives them, and keep the class's default
otherwise. Types with a ``Maybe`` field keep Strawberry's own conversion: Strawberry skips
its check of explicit nulls for ``Maybe`` fields in types that set the hook. The hook lives
on the class's definition, shared by every schema built from it, so plans are kept per (name
converter, scalar registry). ``tests/api/test_input_plans.py`` compares both ways on every
input type of the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.types.arguments import InputContext, _is_leaf_type
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryObjectDefinition,
    StrawberryOptional,
)
from strawberry.types.enum import has_enum_definition

AS_IS, LIST_COPY, CONVERT = 0, 1, 2


class InputBuilder:
    """Builds one input type's value from a plan (its ``from_input`` hook; see the module
    docstring)."""

    def __init__(self, definition: StrawberryObjectDefinition) -> None:
        self.definition = definition
        self._plans: dict[tuple[int, int], list[tuple[str, str, int, Any]]] = {}
        self._unset = {
            field.python_name: None
            for field in definition.fields
            if field.default_value is MISSING and field.default_factory is MISSING
        }

    def __call__(self, cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        key = (id(context.config.name_converter), id(context.scalar_registry))
        fields = self._plans.get(key)
        if fields is None:
            fields = self._plans[key] = self._plan(context)
        kwargs: dict[str, Any] = dict(self._unset)
        for graphql_name, python_name, how, type_ in fields:
            if graphql_name not in value:
                continue
            item = value[graphql_name]
            if how == AS_IS or (item is None and how == LIST_COPY):
                kwargs[python_name] = item
            elif how == LIST_COPY:
                # A copy, as Strawberry makes: graphql-core hands the same default list to
                # every request that omits the value.
                kwargs[python_name] = list(item)
            else:
                kwargs[python_name] = context.convert(item, type_, graphql_name)
        return cls(**kwargs)

    def _plan(self, context: InputContext) -> list[tuple[str, str, int, Any]]:
        definition = self.definition
        registry = context.scalar_registry
        fields = []
        for field in definition.fields:
            type_ = field.resolve_type(type_definition=definition)
            name = context.config.name_converter.from_field(field)
            fields.append((name, field.python_name, _how(type_, registry), type_))
        return fields


def _how(type_: Any, registry: Mapping[object, Any]) -> int:
    if isinstance(type_, StrawberryMaybe):
        return CONVERT
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
        if isinstance(type_, StrawberryMaybe):
            return CONVERT
    if isinstance(type_, StrawberryList):
        item = type_.of_type
        if isinstance(item, StrawberryOptional):
            item = item.of_type
        return LIST_COPY if _plain(item, registry) else CONVERT
    return AS_IS if _plain(type_, registry) else CONVERT


def _plain(type_: Any, registry: Mapping[object, Any]) -> bool:
    """A value Strawberry passes through unchanged: a scalar or an enum, not a GlobalID."""
    if type_ is GlobalID or isinstance(type_, StrawberryMaybe | StrawberryOptional):
        return False
    if has_enum_definition(type_):
        return True
    return _is_leaf_type(type_, registry, skip_classes=(GlobalID,))


def install(schema: Any) -> None:
    """Give every input type of ``schema`` its plan (types that build their own value,
    like pydantic inputs, keep theirs)."""
    for definition in input_definitions(schema):
        if definition.from_input is None and not _has_maybe(definition):
            definition.from_input = InputBuilder(definition)


def _has_maybe(definition: StrawberryObjectDefinition) -> bool:
    for field in definition.fields:
        type_ = field.resolve_type(type_definition=definition)
        if isinstance(type_, StrawberryOptional) and not isinstance(type_, StrawberryMaybe):
            type_ = type_.of_type
        if isinstance(type_, StrawberryMaybe):
            return True
    return False


def input_definitions(schema: Any) -> list[StrawberryObjectDefinition]:
    """The Strawberry definitions of the schema's input object types."""
    found = []
    for graphql_type in schema._schema.type_map.values():
        extensions = getattr(graphql_type, "extensions", None) or {}
        definition = extensions.get("strawberry-definition")
        if isinstance(definition, StrawberryObjectDefinition) and definition.is_input:
            found.append(definition)
    return found
