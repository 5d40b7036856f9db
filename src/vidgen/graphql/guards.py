"""Input guards that apply to every operation, before any resolver runs.

NUL characters: PostgreSQL text cannot hold ``\\u0000`` (the driver fails deep inside a
query), and no legitimate name, prompt, email or cursor contains one. Rather than let each
service trip over it, any string argument or variable carrying one is refused up front as
``BAD_USER_INPUT`` naming the offending input, on every backend alike.

Unpaired surrogates (``"\\ud800"`` in a JSON body decodes to a lone surrogate code point):
no UTF-8 text holds one, so PostgreSQL's driver and SQLite's both fail on them; they are
refused the same way.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import ArgumentNode, GraphQLError, ObjectFieldNode, StringValueNode, visit
from graphql.execution import ExecutionResult
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

NUL = "\x00"
MESSAGE = "Text must not contain NUL (\\u0000) characters."
SURROGATE_MESSAGE = "Text must be valid Unicode: no unpaired surrogates (\\ud800-\\udfff)."
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad(text: str) -> bool:
    return NUL in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def _message(text: str) -> str:
    return MESSAGE if NUL in text else SURROGATE_MESSAGE


def _in_value(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        return (path, _message(value)) if _bad(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if found := _in_value(item, f"{path}.{key}" if path else str(key)):
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            if found := _in_value(item, path):
                return found
    return None


class _LiteralFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: tuple[str, str] | None = None

    def enter_string_value(
        self, node: StringValueNode, key: Any, parent: Any, path: Any, ancestors: Any
    ) -> Any:
        if self.found is None and _bad(node.value):
            chain = [*ancestors, parent]  # the parent is not among the ancestors
            named = (a for a in chain if isinstance(a, ArgumentNode | ObjectFieldNode))
            names = [a.name.value for a in named]
            self.found = (".".join(names) or "query", _message(node.value))
            return Visitor.BREAK
        return None


# The literal scan of recent documents: the parser cache hands out the same document object
# for the same query text, so a repeated query is scanned once. Keyed by id(), holding the
# document itself so that its id is not reused while the entry lives.
_SCANNED: OrderedDict[int, tuple[Any, tuple[str, str] | None]] = OrderedDict()
SCANNED_SIZE = 512


def _literal_nul(document: Any) -> tuple[str, str] | None:
    entry = _SCANNED.get(id(document))
    if entry is not None and entry[0] is document:
        _SCANNED.move_to_end(id(document))
        return entry[1]
    finder = _LiteralFinder()
    visit(document, finder)
    _SCANNED[id(document)] = (document, finder.found)
    while len(_SCANNED) > SCANNED_SIZE:
        _SCANNED.popitem(last=False)
    return finder.found


def find_bad_text(document: Any, variables: dict[str, Any] | None) -> tuple[str, str] | None:
    """The first input (argument path or variable path) holding a NUL or an unpaired
    surrogate, and the message for it."""
    if variables and (found := _in_value(variables, "")):
        return found
    if document is not None:
        return _literal_nul(document)
    return None


class RejectNulCharacters(SchemaExtension):
    """Answers BAD_USER_INPUT, without executing, when an input holds a NUL character or an
    unpaired surrogate."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        found = find_bad_text(context.graphql_document, context.variables)
        if found is not None:
            field, message = found
            context.result = ExecutionResult(
                data=None,
                errors=[
                    GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "field": field})
                ],
            )
        yield
