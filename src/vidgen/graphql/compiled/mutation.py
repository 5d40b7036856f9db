"""``generateVideo`` compiled: the one hot mutation, run without Strawberry's execution.

A :class:`MutationPlan` covers an operation whose only root field is ``generateVideo``
(aliased or not) with a selection of Video fields that need no statement (the fields a
subscription event plan covers, :func:`~.plan.compile_event`), with no directive. Per
request it coerces the variables and the ``input`` argument as graphql-core does (directly
with ``coerce_input_value`` when ``input`` is the operation's one variable:
:func:`direct_variable`), converts ``input`` as Strawberry does (``convert_arguments``),
then calls the function the resolver
calls (:func:`vidgen.graphql.mutations.run_generate_video`: the same checks, quotas,
errors and writes) and builds the response from the plan's field encoders.

Before anything runs, the plan hands the request to Strawberry untouched (:class:`Fallback`)
when it is not signed in, when its text has NUL characters, when the variables or the input
do not coerce, or when it sends an input image. Once the mutation ran, its outcome is kept
on the request's context (``Context.answered``) when the answer would hold an error (the
service raised) or the plan cannot encode the video: then Strawberry answers, and its
resolver returns that outcome instead of running the mutation again. So the mutation runs
once either way, its errors are formatted by Strawberry's own machinery, and nothing is
written twice.

Documents of a schema with :class:`~vidgen.graphql.rate_limit.MutationRateLimit` (the
per-user mutation limit is on) have no mutation plan: the limit is spent by a Strawberry
extension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    VariableNode,
    get_named_type,
    type_from_ast,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.utilities import coerce_input_value, is_equal_type
from strawberry.types.arguments import convert_arguments

from vidgen import models
from vidgen.graphql.compiled import values
from vidgen.graphql.compiled.objects import Compiler, Source
from vidgen.graphql.compiled.selection import Unsupported, collect

ROOT = "generateVideo"
ROOT_ARGUMENT = "input"


@dataclass
class MutationPlan:
    operation: OperationDefinitionNode
    key: str  # the response key (alias or field name)
    node: FieldNode
    gfield: GraphQLField
    build: Callable[..., Any]  # (video, request) -> the field's value
    field: Any = None  # Strawberry's generateVideo field, found on first use

    direct: tuple[str, GraphQLInputType] | None = None  # see direct_variable

    def arguments(self, schema: GraphQLSchema, strawberry: Any, raw: dict[str, Any] | None) -> Any:
        """The converted ``input`` (a ``GenerateVideoInput``); raises :class:`Fallback`."""
        args = None
        if self.direct is not None and raw:
            # ``generateVideo(input: $v)`` with ``$v`` the operation's one variable: its
            # value coerced as graphql-core coerces it (a value that does not coerce takes
            # the general way below, which reports it).
            name, var_type = self.direct
            coerced = coerce_input_value(raw.get(name, Undefined), var_type)
            if coerced is not Undefined:
                args = {ROOT_ARGUMENT: coerced}
        if args is None:
            args = self._coerced(schema, raw)
        field = self.field
        if field is None:
            field = self.field = strawberry.get_field_for_type(ROOT, "Mutation")
        try:
            kwargs = convert_arguments(
                args,
                field.arguments,
                scalar_registry=strawberry.schema_converter.scalar_registry,
                config=strawberry.config,
            )
        except Exception as exc:  # noqa: BLE001 - Strawberry reports it
            raise values.Fallback from exc
        given = kwargs["input"]
        if given.input_image is not None:  # a file: Strawberry reads it
            raise values.Fallback
        return given

    def _coerced(self, schema: GraphQLSchema, raw: dict[str, Any] | None) -> dict[str, Any]:
        """The field's arguments, coerced by graphql-core's executor functions."""
        definitions = self.operation.variable_definitions
        if definitions:
            coerced = get_variable_values(schema, definitions, raw or {})
            if isinstance(coerced, list):
                raise values.Fallback  # Strawberry reports the variables' errors
        else:
            coerced = {}
        try:
            return get_argument_values(self.gfield, self.node, coerced)
        except GraphQLError as exc:
            raise values.Fallback from exc


def compile_mutation(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> MutationPlan:
    """The plan of a ``generateVideo`` operation (valid, no directive on the operation);
    raises :class:`Unsupported`."""
    from vidgen.graphql.compiled.plan import _fragments

    fragments = _fragments(document)
    mutation_type = schema.mutation_type
    assert mutation_type is not None
    fields = collect(schema, mutation_type, [operation.selection_set], fragments)
    if len(fields) != 1:
        raise Unsupported("one root field")
    ((key, nodes),) = fields.items()
    if len(nodes) != 1 or nodes[0].name.value != ROOT:
        raise Unsupported(nodes[0].name.value)
    compiler = Compiler(schema, fragments)
    body = compiler.object("Video", nodes, Source(models.Video, compiler.code, "video"))
    build = compiler.code.function("video, request", body)
    plan = MutationPlan(operation, key, nodes[0], mutation_type.fields[ROOT], build)
    plan.direct = direct_variable(schema, operation, nodes[0], plan.gfield)
    return plan


def direct_variable(
    schema: GraphQLSchema, operation: OperationDefinitionNode, node: FieldNode, gfield: GraphQLField
) -> tuple[str, GraphQLInputType] | None:
    """``(name, type)`` of the variable when the operation has ONE variable, without a
    default, of a non-null type, and the field's one argument is that variable: then the
    argument is the variable's value as ``coerce_input_value`` coerces it, which is what
    ``get_variable_values`` and ``get_argument_values`` make of it (less their checks for
    cases that cannot arise here: a missing or null value, a default, a value nested
    deeper than the type, which is not recursive). None otherwise."""
    definitions = operation.variable_definitions or ()
    arguments = node.arguments or ()
    if len(definitions) != 1 or len(arguments) != 1 or list(gfield.args) != [ROOT_ARGUMENT]:
        return None
    (definition,), (argument,) = definitions, arguments
    if definition.default_value is not None or definition.directives:
        return None
    if argument.name.value != ROOT_ARGUMENT or not isinstance(argument.value, VariableNode):
        return None
    name = definition.variable.name.value
    var_type = type_from_ast(schema, definition.type)
    arg_def = gfield.args[ROOT_ARGUMENT]
    if argument.value.name.value != name or var_type is None:
        return None
    if not is_equal_type(var_type, arg_def.type):
        return None
    if not isinstance(var_type, GraphQLNonNull) or _recursive(var_type, set()):
        return None
    if (arg_def.out_name or ROOT_ARGUMENT) != ROOT_ARGUMENT:
        return None
    return name, var_type


def _recursive(type_: Any, seen: set[str]) -> bool:
    """Whether an input type contains itself (then its values could nest without bound)."""
    named = get_named_type(type_)
    if not isinstance(named, GraphQLInputObjectType):
        return False
    if named.name in seen:
        return True
    seen = seen | {named.name}
    return any(_recursive(field.type, seen) for field in named.fields.values())
