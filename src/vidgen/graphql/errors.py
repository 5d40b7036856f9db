"""Errors as clients see them: every error carries ``extensions.code``, in one place.

=============================================  ===============================================
raised                                         reaches the client as
=============================================  ===============================================
``vidgen.errors.VidgenError`` subclass         its message, ``code``, and ``field`` if any
parse / validation / limit errors (no origin)  their message, ``BAD_USER_INPUT``
anything else (a bug, a driver error...)       "Internal server error." ``INTERNAL``; the
                                               full trace goes to the log with an error id
=============================================  ===============================================

:class:`ErrorCodes` is a schema extension (it rewrites the result of queries, mutations and
every subscription event); :func:`log_errors` is called by the schema's ``process_errors``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from vidgen import errors

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error."
_ID_KEY = "_vidgen_error_id"


def original_of(error: GraphQLError) -> BaseException | None:
    """The innermost exception behind a GraphQL error (None for parse/validation errors)."""
    original: BaseException | None = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    return original


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors raised while executing (they have a path) that are not ours."""
    if isinstance(
        original_of(error),
        errors.VidgenError | CannotGetOperationTypeError | InvalidOperationTypeError,
    ):
        return False
    return bool(error.path) or (
        error.original_error is not None and not isinstance(original_of(error), GraphQLError)
    )


def _error_id(error: GraphQLError) -> str:
    original = original_of(error) or error
    error_id = getattr(original, _ID_KEY, None)
    if error_id is None:
        error_id = uuid.uuid4().hex[:12]
        try:
            setattr(original, _ID_KEY, error_id)
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass
    return error_id


def format_error(error: GraphQLError) -> GraphQLError:
    """The client-facing version of one error (see the module docstring)."""
    original = original_of(error)
    if isinstance(original, errors.VidgenError):
        extensions = {**(error.extensions or {}), **original.extensions, "code": original.code}
        message = original.message
    elif isinstance(original, CannotGetOperationTypeError):
        # No operation of that name in the document (a WebSocket subscribe's operationName).
        extensions = {"code": "BAD_USER_INPUT", "field": "operationName"}
        message = original.as_http_error_reason()
    elif isinstance(original, InvalidOperationTypeError):
        # A query or mutation sent over the legacy graphql-ws protocol, which carries only
        # subscriptions here.
        extensions = {"code": "BAD_USER_INPUT"}
        message = (
            f"A {original.operation_type.value} cannot run over the legacy graphql-ws"
            " protocol; send it over HTTP or graphql-transport-ws."
        )
    elif (error.extensions or {}).get("code") or not is_unexpected(error):
        # Already formatted, or a parse/validation/limit error: the client's to fix.
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", "BAD_USER_INPUT")
        message = error.message
    else:
        extensions = {"code": "INTERNAL", "errorId": _error_id(error)}
        message = INTERNAL_MESSAGE
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


class ErrorCodes(MaskErrors):
    """Give every error a code and hide the internals of unexpected ones.

    Built on :class:`strawberry.extensions.MaskErrors`, which already visits operation
    results, pre-execution (parse/validation) errors and each streamed subscription result.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True, error_message=INTERNAL_MESSAGE)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [format_error(error) for error in errors]


def log_errors(errors_: list[GraphQLError], operation: Callable[[], str | None]) -> None:
    """Log unexpected errors with their full trace; expected ones briefly, at debug level."""
    for error in errors_:
        original = original_of(error) or error
        if is_unexpected(error):
            logger.error(
                "unexpected error in GraphQL %s at %s [%s]: %s",
                operation() or "operation",
                ".".join(str(p) for p in error.path or ()) or "-",
                _error_id(error),
                original,
                exc_info=(type(original), original, original.__traceback__),
                extra={"action": "graphql.error", "error_id": _error_id(error)},
            )
        else:
            logger.debug("GraphQL error: %s", error.message, extra={"action": "graphql.error"})
