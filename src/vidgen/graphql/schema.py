"""The schema: Query, Mutation, Subscription, limits and caches.

``build_schema(settings)`` makes the schema a server runs (limits from the settings);
``schema`` is a default-settings instance for ``vidgen export-schema`` and tests; the SDL
does not depend on the settings. Extensions are passed as classes or factories, never as
shared instances (an instance would share its ExecutionContext between requests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionContext

from vidgen.graphql.errors import ErrorCodes, log_errors
from vidgen.graphql.event_results import SharedEventResults
from vidgen.graphql.fastpath import inputs
from vidgen.graphql.fastpath.executor import FastFields, is_awaitable
from vidgen.graphql.guards import RejectNulCharacters
from vidgen.graphql.mutations import Mutation
from vidgen.graphql.observability import OperationMetrics
from vidgen.graphql.queries import Query
from vidgen.graphql.rate_limit import MutationRateLimit
from vidgen.graphql.subscriptions import Subscription
from vidgen.settings import Settings

CACHE_SIZE = 512


def _ignore_introspection(context: IgnoreContext) -> bool:
    # GraphiQL's introspection query is deeper than any real query needs to be.
    return context.field_name.startswith("__")


class ParseCache(ParserCache):
    """Strawberry's ParserCache, minus a bug: in 0.341 a syntax error raised inside its
    ``on_parse`` escapes the operation hook, so no extension (ErrorCodes) sees the error
    (docs/library-notes.md). Here a failed parse is left to Strawberry's own parser, which
    reports it normally."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except GraphQLError:
            context.graphql_document = None  # parsed again (and reported) by Strawberry
        yield


class VidgenExecutionContext(SharedEventResults, FastFields, StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution where an ORM row is a plain value (``is_awaitable``) and
    plain fields resolve inline (see .fastpath.executor); a subscription event's selection
    set runs once per process for all its subscribers with the same key (see .event_results)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_awaitable = is_awaitable


class PlainExecutionContext(VidgenExecutionContext):
    """:class:`VidgenExecutionContext` with every field on graphql-core's path (tests
    compare the two)."""

    fast_fields = False


class VidgenSchema(strawberry.Schema):
    """Logs unexpected errors with their trace (and only those) in one place."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, lambda: execution_context.operation_name if execution_context else None)


def _limits(settings: Settings) -> Callable[[], SchemaExtension]:
    # The rules are built ONCE, so the validation cache (keyed by the rule classes) hits.
    rules = [
        *QueryDepthLimiter(
            max_depth=settings.max_query_depth, should_ignore=_ignore_introspection
        ).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    return lambda: AddValidationRules(rules)


def build_schema(
    settings: Settings | None = None, *, fast_fields: bool = True
) -> strawberry.Schema:
    """The schema with limits from ``settings`` (defaults when None); ``fast_fields=False``
    executes every field through graphql-core's path (see .fastpath.executor)."""
    settings = settings or Settings(_env_file=None)
    max_tokens = settings.max_query_tokens
    extensions: list[Any] = [
        OperationMetrics,  # first: it reads the codes ErrorCodes gives (hooks exit in reverse)
        ErrorCodes,
        RejectNulCharacters,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        _limits(settings),
        lambda: ParseCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
    ]
    if settings.user_mutations_per_minute is not None:
        extensions.append(MutationRateLimit)  # only then: no cost to any operation otherwise
    built = VidgenSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        # Not sort_schema=True: in strawberry 0.341 it rebuilds enums as plain graphql-core
        # enums, which then cannot serialize Python enum members ("Enum 'VideoStatus' cannot
        # represent value"; docs/library-notes.md). The SDL is stable anyway: graphql-core
        # prints the types in the order it reaches them from the root types.
        config=StrawberryConfig(),
        execution_context_class=VidgenExecutionContext if fast_fields else PlainExecutionContext,
    )
    inputs.install(built)  # input objects built from a plan made once (see there)
    return built


def sdl(schema: strawberry.Schema) -> str:
    """The schema's SDL as written to ``schema.graphql`` (ends with one newline)."""
    return schema.as_str().rstrip("\n") + "\n"


schema = build_schema()
