"""Exact library versions that parts of vidgen were written against, checked at import.

Some modules read what a library does not promise to keep: Tortoise's instance layout
(:mod:`vidgen.db`'s row builders), Strawberry's and graphql-core's internals
(:mod:`vidgen.graphql.compiled`). Each such library is pinned exactly in ``pyproject.toml``
and the module that relies on it calls :func:`check` before using it, so another version
fails at import with a message saying what to do instead of answering differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata


class VersionMismatch(ImportError):
    """An installed library is not the version a module was checked against."""


def check(
    pinned: Mapping[str, str],
    *,
    module: str,
    relies_on: str,
    installed: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`VersionMismatch` unless every library in ``pinned`` (distribution name
    -> version) is installed at that version. ``module`` names the module that relies on
    them (and holds ``pinned``), ``relies_on`` what of theirs it uses; ``installed``
    replaces the installed versions (tests)."""
    wrong = []
    for name, wanted in pinned.items():
        found = installed.get(name) if installed is not None else _version(name)
        if found != wanted:
            wrong.append(f"{name} {found or '(missing)'} (pinned: {wanted})")
    if wrong:
        raise VersionMismatch(
            f"{module} relies on {relies_on}, checked for exact versions; installed: "
            f"{', '.join(wrong)}. Install the pinned versions (pip install -e .), or check "
            f"{module} against the new ones and update its pins and pyproject.toml together."
        )


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
