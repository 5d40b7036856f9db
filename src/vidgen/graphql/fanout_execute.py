"""One event of a fan-out record executed by graphql-core, for the rare event its compiled
plan cannot build (:mod:`.live_fanout`): the subscription's selection run with the video
as the root value, as Strawberry runs each event of a subscription, with the record's own
loaders primed from the shared state; errors formatted and logged as every result's are."""

from __future__ import annotations

import inspect
from typing import Any

from graphql import ExecutionResult, execute, parse

from vidgen.graphql.errors import format_error, log_errors
from vidgen.graphql.subscriptions import prime


async def execute_event(schema: Any, record: Any, state: Any, video: Any) -> dict[str, Any]:
    """The ``payload`` of the record's ``next`` message for ``video``."""
    context = record.conn.context
    prime(context.fresh_loaders(), state, video)
    result: Any = execute(
        schema._schema,
        parse(record.query),
        root_value=video,
        context_value=context,
        variable_values=record.variables,
        operation_name=record.operation_name,
        execution_context_class=schema.execution_context_class,
    )
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        log_errors(list(result.errors), lambda: record.operation_name)
        payload["errors"] = [format_error(error).formatted for error in result.errors]
    return payload
