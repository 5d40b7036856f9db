"""The root ``videos`` page with its selected relations loaded before its fields resolve.

graphql-core resolves a page's relation fields row by row. When the loaders already hold
every value (loaded for the whole page at once here), the Video relation resolvers return
the value itself (:func:`now_or_later`) and stay on graphql-core's (and the inline
executor's) synchronous path; an ``async def`` resolver costs a coroutine, an awaitable
completion and often a task per field per row, which for a page of 50 videos with five
relations was most of the request's CPU time.

:func:`video_list_page` reads the page (``page_sql.fetch_list_page``) with its to-one
relations LEFT JOINed when the standard loaders would read them (``_JOINABLE``), primes
the loaders with them, and fills the loaders of the other selected relations with one
batched query each (:func:`_fill`: the loader's own batch function, as ``load_many`` would
call it).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Set
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.exceptions import WrongNumberOfResultsReturned
from strawberry.types import Info

from vidgen import models
from vidgen.graphql import dataloaders, pagination
from vidgen.graphql.fastpath import page_sql


def now_or_later(loader: DataLoader[Any, Any], key: Any) -> Any:
    """``loader``'s value for ``key``: the value itself when the loader already holds it
    (see :func:`video_list_page`), else the awaitable ``loader.load(key)``.

    A plain value keeps graphql-core on its synchronous path (see the module docstring).
    """
    future = loader.cache_map.get(key) if loader.cache else None
    if future is not None and future.done():
        try:
            return future.result()
        except BaseException:  # noqa: BLE001 - failed or cancelled: load() reports it
            pass
    return loader.load(key)


async def video_list_page(
    info: Info, videos: page_sql.ListSource, *, first: int, after: str | None
) -> pagination.Page:
    """The page of the root ``videos`` connection (the only one of its operation), with
    the relations its nodes select loaded into the operation's loaders at once.

    ``first`` is the checked page size. Nested connections (``projects { … videos }``)
    batch through their own loaders instead.
    """
    fields = _node_fields(info)
    loaders = info.context.loaders
    joins = tuple(
        join
        for name, (loader_name, loader_class, join) in _JOINABLE.items()
        if name in fields and type(getattr(loaders, loader_name)) is loader_class
    )
    page = await page_sql.fetch_list_page(videos, first=first, after=after, joins=joins)
    if page.related:
        for loader_name, _, join in _JOINABLE.values():
            found = page.related.get(join.column)
            if found:
                getattr(loaders, loader_name).prime_many(found)
    await _preload_videos(info, page.rows, fields)
    return page


# Video fields whose rows can be read with the page itself (LEFT JOINed on the key; see
# page_sql.fetch_list_page): the rows the standard by-id loader would read, primed into
# it. A loader of another class (one that fails, in the tests) is left to load them.
_JOINABLE = {
    "project": (
        "project_by_id",
        dataloaders.ProjectByIdLoader,
        page_sql.Join("project_id", models.Project),
    ),
    "story": (
        "story_by_id",
        dataloaders.StoryByIdLoader,
        page_sql.Join("story_id", models.Story),
    ),
    "theme": (
        "theme_by_id",
        dataloaders.ThemeByIdLoader,
        page_sql.Join("theme_id", models.Theme),
    ),
}


def _node_fields(info: Info) -> frozenset[str]:
    """The field names selected on ``edges { node { … } }`` of this connection field
    (fragments included; directives are ignored, so a skipped field may be preloaded).

    They depend on the document alone (its field nodes and fragments): the parser cache
    hands out the same document for the same query text, so they are kept per field
    nodes (held, so that their ids are not reused while kept; a node belongs to one
    document, hence to one set of fragments)."""
    nodes = tuple(info._raw_info.field_nodes)
    key = tuple(id(node) for node in nodes)
    entry = _NODE_FIELDS.get(key)
    if entry is not None and all(a is b for a, b in zip(entry[0], nodes, strict=True)):
        _NODE_FIELDS.move_to_end(key)
        return entry[1]
    found = frozenset(_selected_node_fields(info))
    _NODE_FIELDS[key] = (nodes, found)
    while len(_NODE_FIELDS) > NODE_FIELDS_SIZE:
        _NODE_FIELDS.popitem(last=False)
    return found


# field nodes' ids -> (the nodes, the names); see _node_fields.
_NODE_FIELDS: OrderedDict[tuple[int, ...], tuple[Any, frozenset[str]]] = OrderedDict()
NODE_FIELDS_SIZE = 512


def _selected_node_fields(info: Info) -> set[str]:
    from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

    def names(selections: Iterable[Any], path: tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for selection in selections:
            if isinstance(selection, (FragmentSpread, InlineFragment)):
                found |= names(selection.selections, path)
            elif isinstance(selection, SelectedField):
                if not path:
                    found.add(selection.name)
                elif selection.name == path[0]:
                    found |= names(selection.selections, path[1:])
        return found

    return names((s for field in info.selected_fields for s in field.selections), ("edges", "node"))


# A Video field name -> (the loader attribute, the row attribute holding its key).
_RELATIONS = {
    "owner": ("user_by_id", "owner_id"),
    "project": ("project_by_id", "project_id"),
    "story": ("story_by_id", "story_id"),
    "theme": ("theme_by_id", "theme_id"),
    "tags": ("tags_by_video_id", "id"),
    "statusHistory": ("status_history_by_video_id", "id"),
}


async def _preload_videos(info: Info, rows: list[Any], fields: Set[str]) -> None:
    """Load the selected relations of a page of videos at once: one batched query per
    relation (the same statements the loaders would send), so that the field resolvers
    find every value ready and stay synchronous.

    A failed load is left in the loader's cache: the fields that need it raise it, as
    they did before, so one broken relation still fails only its own fields."""
    loaders = info.context.loaders
    pending = []
    for name, (loader_name, attr) in _RELATIONS.items():
        if name not in fields:
            continue
        keys = {getattr(row, attr) for row in rows} - {None}
        if keys:
            pending.append(_fill(getattr(loaders, loader_name), keys))
    if pending:
        await asyncio.gather(*pending)


async def _fill(loader: DataLoader[Any, Any], keys: Iterable[Any]) -> None:
    """``loader.load_many(keys)`` without waiting for values: one call of the loader's
    batch function for the keys it does not hold, its values (or its error, for every key,
    as the loader would) stored in its cache. Cheaper than a load per key: no per-key
    task, no gathering."""
    if not loader.cache:
        return  # nothing to keep: the fields load for themselves
    cache = loader.cache_map
    missing = [key for key in keys if cache.get(key) is None]
    if not missing:
        return
    try:
        values = list(await loader.load_fn(missing))
        if len(values) != len(missing):
            raise WrongNumberOfResultsReturned(expected=len(missing), received=len(values))
    except Exception as exc:  # noqa: BLE001 - kept for the fields, as the loader does
        values = [exc] * len(missing)
    loop = asyncio.get_running_loop()
    for key, value in zip(missing, values, strict=True):
        if cache.get(key) is not None:
            continue  # loaded meanwhile by a field
        future = loop.create_future()
        if isinstance(value, BaseException):
            future.set_exception(value)
            future.exception()  # retrieved: the fields that need it raise it
        else:
            future.set_result(value)
        cache.set(key, future)
