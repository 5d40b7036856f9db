"""The library versions this package was written against, checked when it is imported.

The compiled path reads a few things that are not public API: graphql-core's
``get_variable_values``/``get_argument_values`` (public names, but their error behaviour is
what the fallback relies on), Strawberry's schema attributes (``_schema``, the
definition back-reference on each GraphQL type) and its input conversion
(``convert_arguments`` with ``schema_converter.scalar_registry``, for ``generateVideo``).
A different version may change them without notice, so ``pyproject.toml`` pins both
exactly, and a mismatch fails at import with a message saying what to do, instead of
answers that silently differ.
"""

from __future__ import annotations

from importlib import metadata

PINNED = {"strawberry-graphql": "0.341.3", "graphql-core": "3.3.2"}


class VersionMismatch(ImportError):
    """An installed library is not the version the compiled path was checked against."""


def check(installed: dict[str, str] | None = None) -> None:
    """Raise :class:`VersionMismatch` unless every pinned library is installed at its pin."""
    wrong = []
    for name, wanted in PINNED.items():
        found = (installed or {}).get(name) if installed is not None else _version(name)
        if found != wanted:
            wrong.append(f"{name} {found or '(missing)'} (pinned: {wanted})")
    if wrong:
        raise VersionMismatch(
            "vidgen.graphql.compiled relies on library internals checked for exact versions; "
            f"installed: {', '.join(wrong)}. Install the pinned versions (pip install -e .), "
            "or check the package against the new ones (docs/graphql-execution.md) and "
            "update PINNED in vidgen/graphql/compiled/pins.py and pyproject.toml together."
        )


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
