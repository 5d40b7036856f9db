"""Each user's mutations, rate-limited (``VIDGEN_USER_MUTATIONS_PER_MINUTE``).

A schema extension, in the schema only when the setting is on: before a signed-in user's
mutation runs, it spends one token per root field (aliases and fragments included, so one
request cannot hide many) from the user's bucket
(:meth:`vidgen.services.throttle.Throttle.mutations`). An empty bucket answers RATE_LIMITED
with ``retryAfter`` and runs nothing. Sign-in and sign-up (no viewer) have their own
throttles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.execution import ExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from vidgen import errors


def root_fields(document: DocumentNode, operation_name: str | None) -> int:
    """How many root fields the operation selects (at least 1; ``__typename`` is free)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations:
        return 1
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }

    def count(selections: SelectionSetNode, seen: frozenset[str]) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += selection.name.value != "__typename"
            elif isinstance(selection, InlineFragmentNode):
                total += count(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:
                    total += count(fragments[name].selection_set, seen | {name})
        return total

    return max(1, count(operations[0].selection_set, frozenset()))


class MutationRateLimit(SchemaExtension):
    """Spends the viewer's mutation tokens before a mutation runs (see the module)."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context
        if context.result is None and context.operation_type is OperationType.MUTATION:
            app: Any = context.context
            viewer = getattr(app, "viewer", None)
            if viewer is not None and context.graphql_document is not None:
                count = root_fields(context.graphql_document, context.operation_name)
                try:
                    await app.runtime.throttle.mutations(user_id=viewer.id, count=count)
                except errors.RateLimited as exc:
                    context.result = ExecutionResult(
                        data=None, errors=[GraphQLError(exc.message, original_error=exc)]
                    )
        yield
