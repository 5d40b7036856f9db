"""Relation values already in a loader, returned as values.

graphql-core resolves a page's relation fields row by row. When a loader already holds a
value (the viewer, primed at sign-in, as its own videos' ``owner``; a row loaded by an
earlier field of the same operation), the Video relation resolvers return the value itself
(:func:`now_or_later`) and stay on graphql-core's (and the inline executor's) synchronous
path; an awaitable costs a coroutine, an awaitable completion and often a task per field
per row. The root ``videos`` list is served by ``vidgen.graphql.compiled`` when its
document allows; this serves the documents that fall back.
"""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader


def now_or_later(loader: DataLoader[Any, Any], key: Any) -> Any:
    """``loader``'s value for ``key``: the value itself when the loader already holds it,
    else the awaitable ``loader.load(key)``.

    A plain value keeps graphql-core on its synchronous path (see the module docstring).
    """
    future = loader.cache_map.get(key) if loader.cache else None
    if future is not None and future.done():
        try:
            return future.result()
        except BaseException:  # noqa: BLE001 - failed or cancelled: load() reports it
            pass
    return loader.load(key)
