"""Input objects built from their plans equal what Strawberry's own conversion builds."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from dataclasses import MISSING
from typing import Any

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryList, StrawberryOptional
from strawberry.types.enum import has_enum_definition
from strawberry.types.unset import UNSET

from vidgen.graphql.fastpath import inputs
from vidgen.graphql.fastpath.inputs import InputBuilder
from vidgen.graphql.schema import build_schema

SCHEMA = build_schema()
DEFINITIONS = inputs.input_definitions(SCHEMA)


def context() -> InputContext:
    return InputContext(
        info=None,
        config=SCHEMA.config,
        scalar_registry=SCHEMA.schema_converter.scalar_registry,
        path=(),
    )


def sample(type_: Any, n: int) -> Any:
    """A value of ``type_`` as graphql-core hands it to Strawberry (``n`` varies it)."""
    if isinstance(type_, StrawberryOptional):
        return sample(type_.of_type, n)
    if isinstance(type_, StrawberryList):
        return [sample(type_.of_type, n + i) for i in range(n % 3 + 1)]
    if has_enum_definition(type_):
        members = list(type_)
        return members[n % len(members)]
    if type_ is str or type_ is strawberry.ID:
        return f"v{n}"
    if type_ is int:
        return n
    if type_ is float:
        return n + 0.5
    if type_ is bool:
        return n % 2 == 0
    if type_ is dt.datetime:
        return dt.datetime(2026, 1, 1, n % 24, tzinfo=dt.UTC)
    return object()  # Upload and other opaque scalars pass through as they are


def values(definition: Any) -> list[dict[str, Any]]:
    """Whole values, each field left out in turn, and each nullable field null in turn."""
    fields = [
        (SCHEMA.config.name_converter.from_field(f), f.resolve_type(type_definition=definition))
        for f in definition.fields
    ]
    full = {name: sample(type_, i) for i, (name, type_) in enumerate(fields)}
    found = [full, {}]
    for name, type_ in fields:
        found.append({k: v for k, v in full.items() if k != name})
        if isinstance(type_, StrawberryOptional):
            found.append({**full, name: None})
    return found


@pytest.fixture
def strawberry_way():
    """Convert with Strawberry's own path: the plans off for the duration."""

    def convert(cls: type, value: dict[str, Any]) -> Any:
        definition = cls.__strawberry_definition__
        hook, definition.from_input = definition.from_input, None
        try:
            return convert_argument(
                value, cls, SCHEMA.schema_converter.scalar_registry, SCHEMA.config
            )
        finally:
            definition.from_input = hook

    return convert


def test_every_input_type_has_a_plan() -> None:
    names = {d.name for d in DEFINITIONS}
    assert {"GenerateVideoInput", "VideoFilter", "UpdateVideoInput"} <= names
    assert all(isinstance(d.from_input, InputBuilder) for d in DEFINITIONS)


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_plan_builds_what_strawberry_builds(definition, strawberry_way) -> None:
    cls = definition.origin
    for value in values(definition):
        ours = definition.from_input(cls, value, context())
        theirs = strawberry_way(cls, value)
        assert type(ours) is type(theirs) is cls
        for field in definition.fields:
            mine, expected = getattr(ours, field.python_name), getattr(theirs, field.python_name)
            assert mine == expected or (mine is expected), (definition.name, field.python_name)
            if isinstance(expected, list):
                graphql_name = SCHEMA.config.name_converter.from_field(field)
                assert mine is not value.get(graphql_name)  # a copy, never the request's


def test_left_out_fields_get_none_or_keep_their_default() -> None:
    definition = next(d for d in DEFINITIONS if d.name == "UpdateVideoInput")
    built = definition.from_input(definition.origin, {}, context())
    for field in definition.fields:
        assert field.default_value is not MISSING
        assert getattr(built, field.python_name) is UNSET
    generate = next(d for d in DEFINITIONS if d.name == "GenerateVideoInput")
    built = generate.from_input(generate.origin, {"prompt": "p"}, context())
    assert built.prompt == "p" and built.provider == "local" and built.tags is None


# Module level: the annotations are resolved from this module's names.
@strawberry.enum
class Colour(enum.Enum):
    RED = "red"


@strawberry.input
class Inner:
    name: str


@strawberry.input
class Outer:
    inner: Inner
    inners: list[Inner] | None = None
    node: strawberry.relay.GlobalID | None = None
    colours: list[Colour] | None = None
    some_field: str | None = None


@strawberry.input
class WithMaybe:
    name: strawberry.Maybe[str]
    note: strawberry.Maybe[str | None]


@strawberry.type
class EchoQuery:
    @strawberry.field
    def echo(self, value: Outer) -> str:
        return value.some_field or "-"

    @strawberry.field
    def maybe(self, value: WithMaybe) -> str:
        return repr((value.name, value.note))


def echo_context(schema: strawberry.Schema) -> InputContext:
    return InputContext(
        info=None,
        config=schema.config,
        scalar_registry=schema.schema_converter.scalar_registry,
        path=(),
    )


def test_fields_that_need_converting_go_through_strawberry() -> None:
    schema = strawberry.Schema(query=EchoQuery)
    inputs.install(schema)
    definition = Outer.__strawberry_definition__
    assert isinstance(definition.from_input, InputBuilder)
    node = strawberry.relay.GlobalID("Video", "1")
    value = {
        "inner": {"name": "a"},
        "inners": [{"name": "b"}, {"name": "c"}],
        "node": str(node),
        "colours": [Colour.RED],
        "someField": "s",
    }
    built = definition.from_input(Outer, value, echo_context(schema))
    assert built.inner == Inner(name="a") and built.inners == [Inner(name="b"), Inner(name="c")]
    assert built.node == node and built.colours == [Colour.RED] and built.some_field == "s"
    nulls = definition.from_input(
        Outer, {"inner": {"name": "a"}, "node": None}, echo_context(schema)
    )
    assert nulls.node is None and nulls.inners is None
    [plan] = definition.from_input._plans.values()
    assert {name: how for name, _, how, _ in plan} == {
        "inner": inputs.CONVERT,
        "inners": inputs.CONVERT,
        "node": inputs.CONVERT,
        "colours": inputs.LIST_COPY,
        "someField": inputs.AS_IS,
    }
    assert list(itertools.islice(values(definition), 1))  # the sampler copes with it too


def test_types_with_maybe_fields_keep_strawberrys_conversion_and_null_check() -> None:
    schema = strawberry.Schema(query=EchoQuery)
    inputs.install(schema)
    assert WithMaybe.__strawberry_definition__.from_input is None
    refused = schema.execute_sync("{ maybe(value: {name: null, note: null}) }")
    assert refused.errors and "cannot be explicitly set to null" in refused.errors[0].message
    given = schema.execute_sync('{ maybe(value: {name: "n", note: null}) }')
    assert given.errors is None
    assert given.data == {"maybe": "(Some('n'), Some(None))"}


def test_a_plan_follows_the_schema_that_uses_it() -> None:
    # The hook is on the class, shared by every schema built from it: each schema's names.
    camel = strawberry.Schema(query=EchoQuery)
    inputs.install(camel)
    snake = strawberry.Schema(query=EchoQuery, config=StrawberryConfig(auto_camel_case=False))
    query = '{ echo(value: {inner: {name: "a"}, %s: "x"}) }'
    assert camel.execute_sync(query % "someField").data == {"echo": "x"}
    assert snake.execute_sync(query % "some_field").data == {"echo": "x"}
    assert camel.execute_sync(query % "someField").data == {"echo": "x"}
