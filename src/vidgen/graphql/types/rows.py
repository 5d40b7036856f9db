"""Object types whose values are ORM rows.

Every object type accepts its model's rows as values (``is_type_of``), so resolvers return
rows directly and Relay's ``Node`` interface still resolves the concrete type.
"""

from __future__ import annotations

from typing import Any

from vidgen.graphql.fastpath.field_plans import info_free


def accepts(*models: type) -> Any:
    """The ``is_type_of`` of a type whose values are instances of itself or of ``models``."""

    @info_free
    def is_type_of(cls: type, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models) or isinstance(obj, cls)

    return classmethod(is_type_of)
