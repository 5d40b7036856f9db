"""Per-operation metrics: operations by name and type, errors by name and code."""

from __future__ import annotations

import re
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from vidgen import metrics

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_NAMES = 200  # operation names are chosen by clients: cap the label set
_seen: set[str] = set()


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if not _NAME.match(name):
        return "invalid"
    if name not in _seen:
        if len(_seen) >= MAX_NAMES:
            return "other"
        _seen.add(name)
    return name


class OperationMetrics(SchemaExtension):
    """Counts each operation and each error's ``extensions.code`` once the error is formatted.

    Listed BEFORE ErrorCodes in the schema so that its after-hook runs after ErrorCodes has
    given every error its code.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context
        name = operation_label(context.operation_name)
        try:
            kind = context.operation_type.value
        except Exception:  # noqa: BLE001 - no type when the document did not parse
            kind = "unknown"
        metrics.count(metrics.GRAPHQL_OPERATIONS, name, kind)
        errors = []
        if context.result is not None and context.result.errors:
            errors = context.result.errors
        elif context.pre_execution_errors:
            errors = context.pre_execution_errors
        for error in errors:
            code = (error.extensions or {}).get("code", "INTERNAL")
            metrics.GRAPHQL_ERRORS.labels(operation=name, code=str(code)).inc()
