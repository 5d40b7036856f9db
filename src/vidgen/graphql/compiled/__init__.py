"""Compiled GraphQL execution: hot documents answered from plans, everything else by
Strawberry, with identical results (docs/graphql-execution.md).

For a document and operation, :meth:`CompiledPlans.plan` parses and validates the text
(with the schema's own limits), then compiles a :class:`~.plan.Plan` once, kept in a
bounded cache keyed by (database dialect, document text, operation name). A plan turns
database rows straight into the response: fields read from a statement's columns by index,
ids, enums, dates and cursors encoded by functions chosen at compile time (:mod:`.values`,
:mod:`.objects`), relations from batched statements, the response serialised once with
orjson. Its SQL (:mod:`.statements`) is one statement per list, selecting only the columns
the document asks for, with the to-one relations joined and the viewer's authorization
inside; one statement per to-many relation batch; one ``COUNT(*)`` when ``totalCount`` is
selected. So the statements per request do not grow with the page size.

One mutation has a plan too: ``generateVideo`` with a selection of the new video's own
fields (:mod:`.mutation`). It calls the function the resolver calls, with the input
coerced and converted as Strawberry does, and encodes the video with the same field
encoders as subscription events. When the mutation raises, or the video cannot be encoded,
its outcome is kept on the request's context and Strawberry answers with it (its resolver
does not run the mutation again), so errors stay Strawberry's own and nothing is written
twice. ``tests/api/test_compiled_mutation.py`` compares both ways, bad input of each kind
included, on both databases.

What falls back to Strawberry, for the whole request:

- documents (or operations) a plan does not cover, decided once per document
  (:class:`~.selection.Unsupported`): mutations other than a lone ``generateVideo`` (and
  every mutation when the per-user mutation limit is on: a Strawberry extension spends
  it), subscriptions, any directive
  (``@skip``, ``@include``, ``@defer``...), root fields other than ``viewer``, ``videos``
  and ``__typename``, and fields resolved by code that needs ``info`` or arguments
  (``limits``, ``usage``, ``webhookDeliveries``, the nested ``videos`` connections, a
  story's ``project``, ``film`` and ``clips``; under ``generateVideo``, any field that
  needs a statement: relations, ``eventCursor``); documents that do not parse or validate;
- requests whose answer would hold an error, decided per request (:class:`~.values.Fallback`):
  not signed in, bad variables or arguments, a bad cursor or page size, a value a scalar
  cannot represent, text with NUL characters, a database error; for ``generateVideo`` also
  an input image (a file upload) and any error the mutation raises.

Query plans never write, so a fallback just runs the request through Strawberry, which
answers exactly as it would have; a mutation plan hands over its outcome instead.
``tests/api/test_compiled_differential.py`` runs generated documents both ways, as four
viewers, on both databases, and compares the JSON.

The shortcuts that served the root ``videos`` list in Strawberry's path are gone: its
statement kept per filter shape (``fastpath/page_sql``, with the services' statement keys)
and the page's relation preloads (``types``' ``_fill``, re-implementing ``load_many``).
What remains outside this package, and why:

- ``graphql/fastpath/`` (inline field execution in graphql-core's executor, input plans,
  ``now_or_later``), the loaders' ``KeyedQuery`` and ``db.RowBuilder``: they serve every
  document that falls back (the other mutations, nested connections,
  documents with directives, WebSocket operations, subscription events), each pinned by
  its own test. ``webhooks_out/outbox.py`` also builds its rows with ``db.row_builder``;
- the transaction entry repaired in ``db.py``: it fixes Tortoise for every writer, not
  for GraphQL;
- the view's own guards (CSRF, body limit, the operation-name check, the outage answer):
  they run before either path. (A JSON body of a declared length within the limit, which
  neither guard refuses, reaches the plans straight from ``web/app.py``'s
  ``RequestMiddleware``.)

Library internals this package relies on (Strawberry's field definitions on the GraphQL
schema, its ``convert_arguments`` and scalar registry, graphql-core's value coercion) are
pinned in ``pyproject.toml`` and checked at
import (:mod:`.pins`).
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from typing import Any

from vidgen.graphql.compiled import pins

pins.check()

import orjson  # noqa: E402 - after the version check
from graphql import (  # noqa: E402
    GraphQLError,
    GraphQLSchema,
    OperationType,
    parse,
    specified_rules,
    validate,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter  # noqa: E402

from vidgen import dialect, metrics  # noqa: E402
from vidgen.graphql import guards  # noqa: E402
from vidgen.graphql.compiled.mutation import MutationPlan, compile_mutation  # noqa: E402
from vidgen.graphql.compiled.plan import (  # noqa: E402
    EventPlan,
    Plan,
    Request,
    _operation,
    compile_event,
    compile_plan,
)
from vidgen.graphql.compiled.selection import Unsupported  # noqa: E402
from vidgen.graphql.compiled.values import Fallback  # noqa: E402
from vidgen.graphql.context import Context  # noqa: E402
from vidgen.graphql.mutations import run_generate_video  # noqa: E402
from vidgen.graphql.observability import operation_label  # noqa: E402
from vidgen.graphql.rate_limit import MutationRateLimit  # noqa: E402
from vidgen.models import User  # noqa: E402
from vidgen.settings import Settings  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["CompiledPlans", "Fallback", "Unsupported", "plans_for"]

CACHE_SIZE = 512
_NONE: Any = object()  # a document known to have no plan


class CompiledPlans:
    """The plans of one schema under one set of settings (see the module docstring)."""

    def __init__(self, schema: Any, settings: Settings) -> None:
        self.schema: GraphQLSchema = getattr(schema, "_schema", schema)
        self.strawberry = schema
        # generateVideo has a plan unless a Strawberry extension spends the mutation limit.
        self.mutations = hasattr(schema, "schema_converter") and not any(
            extension is MutationRateLimit for extension in getattr(schema, "extensions", ())
        )
        self.settings = settings
        self._plans: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._rules = [
            *specified_rules,
            *QueryDepthLimiter(
                max_depth=settings.max_query_depth,
                should_ignore=lambda context: context.field_name.startswith("__"),
            ).validation_rules,
            *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
        ]
        self.compiled = 0  # requests answered from a plan (tests and benchmarks read it)
        self.events = 0  # subscription events answered from a plan

    def plan(self, query: str, operation_name: str | None) -> Plan | MutationPlan | None:
        """The plan of the document's operation, or None when it has none."""
        key = (dialect.name(), query, operation_name)
        found = self._plans.get(key)
        if found is None:
            found = self._compile(query, operation_name)
            self._plans[key] = found
            if len(self._plans) > CACHE_SIZE:
                self._plans.popitem(last=False)
        return None if found is _NONE else found

    def _compile(self, query: str, operation_name: str | None, event: bool = False) -> Any:
        try:
            document = parse(query, max_tokens=self.settings.max_query_tokens)
        except GraphQLError:
            return _NONE
        if validate(self.schema, document, self._rules):
            return _NONE
        if guards.find_bad_text(document, None) is not None:
            return _NONE
        try:
            if event:
                return compile_event(self.schema, document, operation_name)
            operation = _operation(document, operation_name)
            if operation.operation == OperationType.MUTATION:
                if not self.mutations:
                    return _NONE
                return compile_mutation(self.schema, document, operation)
            return compile_plan(self.schema, document, operation_name)
        except Unsupported:
            return _NONE

    def event_plan(self, query: str, operation_name: str | None) -> EventPlan | None:
        """The event plan of a subscription document, or None (Strawberry executes it)."""
        key = ("event", dialect.name(), query, operation_name)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._compile(query, operation_name, event=True)
            if len(self._plans) > CACHE_SIZE:
                self._plans.popitem(last=False)
        return None if found is _NONE else found  # type: ignore[no-any-return]

    def event_result(
        self,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        viewer: User | None,
        video: Any,
    ) -> dict[str, Any] | None:
        """A subscription event's ``data`` for ``video`` (a ``models.Video`` row at the
        event's version, already checked visible to ``viewer``), or None: Strawberry must
        execute it. Covers the selections of Video fields that need no statement."""
        plan = self.event_plan(query, operation_name)
        if plan is None:
            return None
        if variables and guards.find_bad_text(None, variables) is not None:
            return None
        try:
            data = {plan.key: plan.build(video, Request(viewer, self.settings))}
        except Fallback:
            return None
        except Exception:  # noqa: BLE001 - not the row the plan expects: Strawberry runs it
            logger.debug("compiled event plan failed; Strawberry answers", exc_info=True)
            return None
        self.events += 1
        return data

    async def data(
        self,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        viewer: User | None,
    ) -> dict[str, Any] | None:
        """The response's ``data`` from the plan, or None: Strawberry must answer."""
        plan = self.plan(query, operation_name)
        if plan is None or isinstance(plan, MutationPlan):
            return None
        if variables and guards.find_bad_text(None, variables) is not None:
            return None
        try:
            return await plan.data(self.schema, variables, Request(viewer, self.settings))
        except Fallback:
            return None
        except Exception:  # noqa: BLE001 - a database failure, say: Strawberry reports it
            logger.debug("compiled plan failed; Strawberry answers", exc_info=True)
            return None

    async def response(
        self,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        viewer: User | None,
        context: Context | None = None,
    ) -> bytes | None:
        """The whole HTTP response body, or None: Strawberry must answer (with ``context``,
        the request's, when the plan is a mutation's: see :mod:`.mutation`)."""
        plan = self.plan(query, operation_name)
        if isinstance(plan, MutationPlan):
            if context is None:
                return None
            data = await self._mutation(plan, variables, context)
            kind = "mutation"
        else:
            data = await self.data(query, operation_name, variables, viewer)
            kind = "query"
        if data is None:
            return None
        self.compiled += 1
        name = plan.operation.name.value if plan and plan.operation.name else operation_name
        metrics.count(metrics.GRAPHQL_OPERATIONS, operation_label(name), kind)
        return orjson.dumps({"data": data})

    async def _mutation(
        self, plan: MutationPlan, variables: dict[str, Any] | None, context: Context
    ) -> dict[str, Any] | None:
        """``data`` of a generateVideo request, or None: Strawberry answers, with the
        mutation's outcome in ``context.answered`` once it ran (see :mod:`.mutation`)."""
        viewer = context.viewer
        if viewer is None:
            return None
        if variables and guards.find_bad_text(None, variables) is not None:
            return None
        try:
            given = plan.arguments(self.schema, self.strawberry, variables)
        except Fallback:
            return None
        context.fresh_loaders()  # as the FreshLoaders field extension does
        try:
            video = await run_generate_video(context, given)
        except Exception as exc:  # noqa: BLE001 - Strawberry's resolver raises it again
            context.answered = (None, exc)
            return None
        try:
            return {plan.key: plan.build(video, Request(viewer, self.settings))}
        except Exception:  # noqa: BLE001 - Fallback or not: Strawberry encodes the video
            logger.debug("compiled mutation plan could not encode; Strawberry answers")
            context.answered = (video, None)
            return None


_by_schema: weakref.WeakKeyDictionary[Any, dict[int, CompiledPlans]] = weakref.WeakKeyDictionary()


def plans_for(schema: Any, settings: Settings) -> CompiledPlans:
    """The :class:`CompiledPlans` of ``schema`` (a Strawberry schema) and ``settings``,
    made once per pair."""
    per_schema = _by_schema.setdefault(schema, {})
    found = per_schema.get(id(settings))
    if found is None or found.settings is not settings:
        found = per_schema[id(settings)] = CompiledPlans(schema, settings)
    return found
