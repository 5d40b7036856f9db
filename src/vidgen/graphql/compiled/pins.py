"""The library versions this package was written against, checked when it is imported.

The compiled path reads a few things that are not public API: graphql-core's
``get_variable_values``/``get_argument_values`` (public names, but their error behaviour is
what the fallback relies on), Strawberry's schema attributes (``_schema``, the
definition back-reference on each GraphQL type) and its input conversion
(``convert_arguments`` with ``schema_converter.scalar_registry``, for ``generateVideo``).
A different version may change them without notice, so ``pyproject.toml`` pins both
exactly, and a mismatch fails at import with a message saying what to do, instead of
answers that silently differ. (Tortoise, whose instance layout the row builders the
package uses rely on, is pinned and checked by :mod:`vidgen.db`.)
"""

from __future__ import annotations

from collections.abc import Mapping

from vidgen import pins
from vidgen.pins import VersionMismatch

__all__ = ["PINNED", "VersionMismatch", "check"]

PINNED = {"strawberry-graphql": "0.341.3", "graphql-core": "3.3.2"}


def check(installed: Mapping[str, str] | None = None) -> None:
    """Raise :class:`VersionMismatch` unless every pinned library is installed at its pin."""
    pins.check(
        PINNED,
        module="vidgen.graphql.compiled (vidgen/graphql/compiled/pins.py)",
        relies_on="Strawberry's and graphql-core's internals (docs/graphql-execution.md)",
        installed=installed,
    )
