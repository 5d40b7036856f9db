"""Domain services: the rules of vidgen, reached by the GraphQL layer and the CLI.

Services are async functions with keyword-only arguments; the outermost call owns the
transaction. Every read and write is scoped to the acting user (``viewer``): another user's
object is :class:`~vidgen.errors.NotFound`, admins see everything.
"""

from __future__ import annotations

import enum


class _Keep(enum.Enum):
    KEEP = "KEEP"

    def __repr__(self) -> str:
        return "KEEP"


#: Default of optional update arguments: "leave this column as it is" (None clears it).
KEEP = _Keep.KEEP
Keep = _Keep
