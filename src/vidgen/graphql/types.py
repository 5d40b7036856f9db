"""GraphQL types. Resolvers receive ORM rows as ``root``; relations go through the loaders.

Every object type accepts its ORM model as a value (``is_type_of``), so resolvers return
rows directly and Relay's ``Node`` interface still resolves the concrete type.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Set
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry import relay
from strawberry.dataloader import DataLoader
from strawberry.exceptions import WrongNumberOfResultsReturned
from strawberry.file_uploads import Upload
from strawberry.types import Info
from tortoise.queryset import QuerySet

from vidgen import db, errors, models
from vidgen.graphql import dataloaders, execution, pagination
from vidgen.media.signing import signed_url
from vidgen.providers.base import Capabilities, Mode, unavailable_reason

if TYPE_CHECKING:
    from vidgen.graphql.context import Context
    from vidgen.providers.base import Provider


def context_of(info: Info) -> Context:
    return info.context


def _now_or_later(loader: DataLoader[Any, Any], key: Any) -> Any:
    """``loader``'s value for ``key``: the value itself when the loader already holds it
    (see :func:`preload_videos`), else the awaitable ``loader.load(key)``.

    A plain value keeps graphql-core on its synchronous path; an ``async def`` resolver costs
    a coroutine, an awaitable completion and often a task per field per row, which for a
    page of 50 videos with five relations was most of the request's CPU time.
    """
    future = loader.cache_map.get(key) if loader.cache else None
    if future is not None and future.done():
        try:
            return future.result()
        except BaseException:  # noqa: BLE001 - failed or cancelled: load() reports it
            pass
    return loader.load(key)


def _accepts(*classes: type) -> Any:
    @execution.info_free
    def is_type_of(cls: type, obj: Any, _info: Any) -> bool:
        return isinstance(obj, classes) or isinstance(obj, cls)

    return classmethod(is_type_of)


# --- enums --------------------------------------------------------------------------------


@strawberry.enum(name="VideoStatus", description="Where a video is in its lifecycle.")
class VideoStatusEnum(enum.Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @classmethod
    def of(cls, value: Any) -> VideoStatusEnum:
        key = str(getattr(value, "value", value))
        member = cls._value2member_map_.get(key)  # what cls(key) finds first
        return cls(key) if member is None else member  # type: ignore[return-value]


@strawberry.enum(name="OutputFormat", description="Container and codec of the output video.")
class OutputFormatEnum(enum.Enum):
    MP4 = "mp4"
    WEBM = "webm"

    @classmethod
    def of(cls, value: Any) -> OutputFormatEnum:
        return cls(str(getattr(value, "value", value)))


# --- ids ----------------------------------------------------------------------------------


def parse_global_id(value: str) -> relay.GlobalID:
    """``value`` as a global id, only in the one spelling this API writes.

    Strawberry's decoder is lenient (base64 with stray characters, extra or wrong padding,
    a trailing newline: ``VmlkZW86MR==`` and ``Vm lk ZW86MQ==`` both read as ``Video:1``), so
    one row would answer to many ids, which breaks caches keyed by id. The id is decoded,
    then written again: anything but the same text is not a valid id.

    Raises:
        ValueError: not a global id in that spelling.
    """
    gid = relay.GlobalID.from_id(value)
    if relay.to_base64(gid.type_name, gid.node_id) != value:
        raise ValueError("not a global id as this API writes them")
    return gid


def decode_id(value: str | relay.GlobalID, type_name: str, *, field: str = "id") -> int | None:
    """The database id inside a global id of type ``type_name``.

    Returns None for a well-formed id of another type (it names nothing of this kind), and
    0 for one whose number is outside the id columns' range or not written as ids are.

    Raises:
        BadUserInput: with ``field`` when the value is not a global id at all.
    """
    try:
        gid = value if isinstance(value, relay.GlobalID) else parse_global_id(value)
        # 0 for a number no row can have (the database would refuse it as a parameter)
        # or one spelled unlike our ids ("007", " 7"): answered exactly like a missing row.
        node_id = db.row_id_in(gid.node_id)
    except (ValueError, TypeError) as exc:
        raise errors.BadUserInput(f"{field} is not a valid id.", field=field) from exc
    if gid.type_name != type_name:
        return None
    return node_id


def require_id(value: str | None, type_name: str, *, field: str) -> int | None:
    """Like :func:`decode_id` for input fields: another type's id is BAD_USER_INPUT."""
    if value is None:
        return None
    node_id = decode_id(value, type_name, field=field)
    if node_id is None:
        raise errors.BadUserInput(f"No {type_name.lower()} with that id ({field}).", field=field)
    return node_id


def _signed(context: Context, key: str | None) -> str | None:
    if not key:
        return None
    settings = context.settings
    return signed_url(
        settings.resolved_public_url,
        key,
        ttl=settings.signed_url_ttl_seconds,
        secret=settings.resolved_secret_key,
    )


# --- small types --------------------------------------------------------------------------


@strawberry.type(description="A user account.")
class User(relay.Node):
    id: relay.NodeID[int]
    email: str
    is_admin: bool

    is_type_of = _accepts(models.User)


@strawberry.type(description="A label on videos; names are unique per user, ignoring case.")
class Tag(relay.Node):
    id: relay.NodeID[int]
    name: str

    is_type_of = _accepts(models.Tag)


@strawberry.type(description="A video's theme; names are unique per user, ignoring case.")
class Theme(relay.Node):
    id: relay.NodeID[int]
    name: str

    is_type_of = _accepts(models.Theme)


@strawberry.type(description="One entry of a video's status history.")
class StatusChange:
    at: dt.datetime
    message: str | None

    is_type_of = _accepts(models.VideoStatusEvent)

    @strawberry.field
    @execution.direct(lambda root, _context: VideoStatusEnum.of(root.to_status))
    def status(self, root: strawberry.Parent[Any]) -> VideoStatusEnum:
        return VideoStatusEnum.of(root.to_status)


# --- videos -------------------------------------------------------------------------------


@strawberry.type(description="A generated (or generating) video. The row is also the job.")
class Video(relay.Node):
    id: relay.NodeID[int]
    progress: float = strawberry.field(description="0 to 1.")
    prompt: str
    provider: str
    model: str | None
    caption: str | None
    video_style: str | None
    resolution: str = strawberry.field(description="WIDTHxHEIGHT, e.g. 1280x720.")
    duration_seconds: float | None = strawberry.field(
        description="Requested until the output is probed, then the real duration."
    )
    frame_rate: float | None
    file_size: int | None = strawberry.field(description="Bytes.")
    width: int | None
    height: int | None
    paragraph_index: int | None
    prediction_id: str | None
    error_message: str | None
    retry_count: int
    priority: int
    scheduled_at: dt.datetime | None
    version: int = strawberry.field(description="Bumped on every change: detects gaps.")
    created_at: dt.datetime
    updated_at: dt.datetime
    completed_at: dt.datetime | None
    deleted_at: dt.datetime | None

    is_type_of = _accepts(models.Video)

    # The resolvers below are ``execution.direct``: the executor may call their
    # implementation (the _video_* functions) with (row, context), skipping Info.
    @strawberry.field
    @execution.direct(lambda root, _context: _video_status(root))
    def status(self, root: strawberry.Parent[Any]) -> VideoStatusEnum:
        return _video_status(root)

    @strawberry.field(
        description="What the provider says while the video is processing (queue position, "
        "last log line); null otherwise."
    )
    @execution.direct(lambda root, _context: _video_status_message(root))
    def status_message(self, root: strawberry.Parent[Any]) -> str | None:
        return _video_status_message(root)

    @strawberry.field
    @execution.direct(lambda root, _context: OutputFormatEnum.of(root.output_format))
    def output_format(self, root: strawberry.Parent[Any]) -> OutputFormatEnum:
        return OutputFormatEnum.of(root.output_format)

    @strawberry.field(description="Signed URL of the video file (or the provider's URL).")
    @execution.direct(lambda root, context: _signed(context, root.video_file) or root.video_url)
    def video_url(self, root: strawberry.Parent[Any], info: Info) -> str | None:
        return _signed(context_of(info), root.video_file) or root.video_url

    @strawberry.field(description="Signed URL of the thumbnail.")
    @execution.direct(
        lambda root, context: _signed(context, root.thumbnail_file) or root.thumbnail_url
    )
    def thumbnail_url(self, root: strawberry.Parent[Any], info: Info) -> str | None:
        return _signed(context_of(info), root.thumbnail_file) or root.thumbnail_url

    @strawberry.field(description="Signed URL of the uploaded input image.")
    @execution.direct(lambda root, context: _signed(context, root.input_image))
    def input_image_url(self, root: strawberry.Parent[Any], info: Info) -> str | None:
        return _signed(context_of(info), root.input_image)

    # The relations are sync resolvers returning either the row (already loaded for the
    # whole page by preload_videos) or the loader's awaitable: see _now_or_later.
    @strawberry.field
    @execution.direct(lambda root, context: _video_theme(root, context))
    def theme(self, root: strawberry.Parent[Any], info: Info) -> Theme | None:
        return _video_theme(root, context_of(info))

    @strawberry.field
    @execution.direct(lambda root, context: _video_tags(root, context))
    def tags(self, root: strawberry.Parent[Any], info: Info) -> list[Tag]:
        return _video_tags(root, context_of(info))

    @strawberry.field
    @execution.direct(lambda root, context: _video_project(root, context))
    def project(self, root: strawberry.Parent[Any], info: Info) -> Project | None:
        return _video_project(root, context_of(info))

    @strawberry.field
    @execution.direct(lambda root, context: _video_story(root, context))
    def story(self, root: strawberry.Parent[Any], info: Info) -> Story | None:
        return _video_story(root, context_of(info))

    @strawberry.field(description="Status changes, oldest first.")
    @execution.direct(lambda root, context: _video_status_history(root, context))
    def status_history(self, root: strawberry.Parent[Any], info: Info) -> list[StatusChange]:
        return _video_status_history(root, context_of(info))

    @strawberry.field(
        description="Opaque cursor of the latest change: pass it to videoUpdates(after:)."
    )
    async def event_cursor(self, root: strawberry.Parent[Any], info: Info) -> str | None:
        latest = await context_of(info).loaders.latest_event_id_by_video_id.load(root.id)
        return None if latest is None else str(latest)

    @strawberry.field
    @execution.direct(lambda root, context: _video_owner(root, context))
    def owner(self, root: strawberry.Parent[Any], info: Info) -> User:
        return _video_owner(root, context_of(info))


# The Video resolvers' implementations, from the row (and the context): pure reads.


def _video_status(root: Any) -> VideoStatusEnum:
    return VideoStatusEnum.of(root.status)


def _video_status_message(root: Any) -> str | None:
    if root.status != models.VideoStatus.PROCESSING:
        return None
    return root.status_message


def _video_theme(root: Any, context: Context) -> Any:
    if root.theme_id is None:
        return None
    return _now_or_later(context.loaders.theme_by_id, root.theme_id)


def _video_tags(root: Any, context: Context) -> Any:
    return _now_or_later(context.loaders.tags_by_video_id, root.id)


def _video_project(root: Any, context: Context) -> Any:
    if root.project_id is None:
        return None
    return _now_or_later(context.loaders.project_by_id, root.project_id)


def _video_story(root: Any, context: Context) -> Any:
    if root.story_id is None:
        return None
    return _now_or_later(context.loaders.story_by_id, root.story_id)


def _video_status_history(root: Any, context: Context) -> Any:
    # The loader holds the video's whole event log; statusHistory is its status changes.
    found = _now_or_later(context.loaders.status_history_by_video_id, root.id)
    if isinstance(found, list):
        return _status_changes(found)
    # A future, not a coroutine: the direct path may call this twice and drop one result.
    result: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    def done(loaded: asyncio.Future[list[Any]]) -> None:
        if result.done():
            return
        if loaded.cancelled():
            result.cancel()
        elif (error := loaded.exception()) is not None:
            result.set_exception(error)
        else:
            result.set_result(_status_changes(loaded.result()))

    asyncio.ensure_future(found).add_done_callback(done)
    return result


def _status_changes(rows: list[models.VideoStatusEvent]) -> list[models.VideoStatusEvent]:
    if all(row.is_status_change for row in rows):
        return rows
    return [row for row in rows if row.is_status_change]


def _video_owner(root: Any, context: Context) -> Any:
    return _now_or_later(context.loaders.user_by_id, root.owner_id)


# --- connections --------------------------------------------------------------------------


class _Edge:
    """An edge of a page (the ``…Edge`` types take any object with ``cursor`` and ``node``):
    its cursor is encoded only when a client selects it."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def cursor(self) -> str:
        return pagination.encode_cursor(self.node)


def _edges(rows: list[Any]) -> list[Any]:
    return [_Edge(row) for row in rows]


def _page_info(page: pagination.Page) -> relay.PageInfo:
    return relay.PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=False,
        start_cursor=pagination.encode_cursor(page.rows[0]) if page.rows else None,
        end_cursor=pagination.encode_cursor(page.rows[-1]) if page.rows else None,
    )


async def fetch(
    info: Info, query: QuerySet[Any], first: int | None, after: str | None
) -> pagination.Page:
    settings = context_of(info).settings
    size = pagination.page_size(
        first, default=settings.page_size_default, maximum=settings.page_size_max
    )
    return await pagination.fetch_page(query, first=size, after=after)


@strawberry.type(name="VideoConnection", description="A page of videos, newest first.")
class VideoConnection(relay.Connection[Video]):
    # Called (only when totalCount is selected) for the count over all pages.
    counter: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="How many videos match, over all pages.")
    async def total_count(self) -> int:
        assert self.counter is not None
        return await self.counter()

    @classmethod
    def of(
        cls, page: pagination.Page, counter: Callable[[], Awaitable[int]] | None = None
    ) -> VideoConnection:
        """The connection of ``page``, counted by ``counter`` or else ``page.count_query``."""
        if counter is None:
            count_query = page.count_query
            assert count_query is not None

            async def counter() -> int:
                return await count_query.count()

        return cls(edges=_edges(page.rows), page_info=_page_info(page), counter=counter)


async def video_connection(
    info: Info, videos: pagination.ListSource, first: int | None, after: str | None
) -> VideoConnection:
    """The root ``videos`` connection (``videos`` is a ``services.videos.VideoList``): the
    only one of its operation, so its page's relations are preloaded at once (nested
    connections go through :func:`nested_video_connection` instead)."""
    settings = context_of(info).settings
    size = pagination.page_size(
        first, default=settings.page_size_default, maximum=settings.page_size_max
    )
    fields = _node_fields(info)
    loaders = context_of(info).loaders
    joins = tuple(
        join
        for name, (loader_name, loader_class, join) in _JOINABLE.items()
        if name in fields and type(getattr(loaders, loader_name)) is loader_class
    )
    page = await pagination.fetch_list_page(videos, first=size, after=after, joins=joins)
    if page.related:
        for loader_name, _, join in _JOINABLE.values():
            found = page.related.get(join.column)
            if found:
                getattr(loaders, loader_name).prime_many(found)
    await preload_videos(info, page.rows, fields)
    return VideoConnection.of(page)


# Video fields whose rows can be read with the page itself (LEFT JOINed on the key; see
# pagination.fetch_list_page): the rows the standard by-id loader would read, primed into
# it. A loader of another class (one that fails, in the tests) is left to load them.
_JOINABLE = {
    "project": (
        "project_by_id",
        dataloaders.ProjectByIdLoader,
        pagination.Join("project_id", models.Project),
    ),
    "story": (
        "story_by_id",
        dataloaders.StoryByIdLoader,
        pagination.Join("story_id", models.Story),
    ),
    "theme": (
        "theme_by_id",
        dataloaders.ThemeByIdLoader,
        pagination.Join("theme_id", models.Theme),
    ),
}


async def nested_video_connection(
    info: Info,
    pages: DataLoader[dataloaders.VideoPageKey, pagination.Page],
    counts: DataLoader[tuple[int, dataloaders.Scope], int],
    parent_id: int,
    first: int | None,
    after: str | None,
) -> VideoConnection:
    """A parent's ``videos`` connection (``projects { … videos }``) through the loaders:
    the pages (and counts) of every parent in the operation are read together, and the
    videos' relations then batch across all the parents."""
    context = context_of(info)
    scope = dataloaders.Scope.of(context.require_viewer())
    settings = context.settings
    size = pagination.page_size(
        first, default=settings.page_size_default, maximum=settings.page_size_max
    )
    if after:
        pagination.decode_cursor(after)  # a bad cursor fails this field, not the batch
    page = await pages.load(dataloaders.VideoPageKey(parent_id, size, after or None, scope))
    return VideoConnection.of(page, counter=lambda: counts.load((parent_id, scope)))


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


async def preload_videos(info: Info, rows: list[Any], fields: Set[str]) -> None:
    """Load the selected relations of a page of videos at once: one batched query per
    relation (the same statements the loaders would send), so that the field resolvers
    find every value ready and stay synchronous.

    A failed load is left in the loader's cache: the fields that need it raise it, as
    they did before, so one broken relation still fails only its own fields."""
    loaders = context_of(info).loaders
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


# --- projects and stories -----------------------------------------------------------------


@strawberry.type(description="A group of videos (and stories).")
class Project(relay.Node):
    id: relay.NodeID[int]
    name: str
    description: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    is_type_of = _accepts(models.Project)

    @strawberry.field(description="The project's videos, newest first (deleted ones left out).")
    async def videos(
        self,
        root: strawberry.Parent[Any],
        info: Info,
        first: int | None = None,
        after: str | None = None,
    ) -> VideoConnection:
        loaders = context_of(info).loaders
        return await nested_video_connection(
            info,
            loaders.video_page_by_project_id,
            loaders.video_count_by_project_id,
            root.id,
            first,
            after,
        )


@strawberry.type(description="A text in paragraphs; each paragraph can become a clip.")
class Story(relay.Node):
    id: relay.NodeID[int]
    title: str
    paragraphs: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime

    is_type_of = _accepts(models.Story)

    @strawberry.field
    async def project(self, root: strawberry.Parent[Any], info: Info) -> Project | None:
        if root.project_id is None:
            return None
        return await context_of(info).loaders.project_by_id.load(root.project_id)

    @strawberry.field(description="The story's videos, newest first (deleted ones left out).")
    async def videos(
        self,
        root: strawberry.Parent[Any],
        info: Info,
        first: int | None = None,
        after: str | None = None,
    ) -> VideoConnection:
        loaders = context_of(info).loaders
        return await nested_video_connection(
            info,
            loaders.video_page_by_story_id,
            loaders.video_count_by_story_id,
            root.id,
            first,
            after,
        )


@strawberry.type(name="ProjectConnection", description="A page of projects, newest first.")
class ProjectConnection(relay.Connection[Project]):
    count_query: strawberry.Private[Any] = None

    @strawberry.field(description="How many projects there are, over all pages.")
    async def total_count(self) -> int:
        return await self.count_query.count()

    @classmethod
    def of(cls, page: pagination.Page) -> ProjectConnection:
        return cls(
            edges=_edges(page.rows), page_info=_page_info(page), count_query=page.count_query
        )


@strawberry.type(name="StoryConnection", description="A page of stories, newest first.")
class StoryConnection(relay.Connection[Story]):
    count_query: strawberry.Private[Any] = None

    @strawberry.field(description="How many stories match, over all pages.")
    async def total_count(self) -> int:
        return await self.count_query.count()

    @classmethod
    def of(cls, page: pagination.Page) -> StoryConnection:
        return cls(
            edges=_edges(page.rows), page_info=_page_info(page), count_query=page.count_query
        )


# --- providers and accounts ----------------------------------------------------------------


@strawberry.type(description="One model of a provider and what it takes.")
class ProviderModel:
    name: str
    text_to_video: bool
    image_to_video: bool
    resolutions: list[str] = strawberry.field(description="Every preset, in either mode.")
    text_to_video_resolutions: list[str]
    image_to_video_resolutions: list[str]
    min_duration_seconds: float
    max_duration_seconds: float
    durations: list[float] | None = strawberry.field(
        description="The only durations accepted, when the model has a fixed set."
    )
    longest_only_resolutions: list[str] = strawberry.field(
        description="Presets made at the longest of durations only (e.g. Veo's 1080p)."
    )

    @classmethod
    def of(cls, caps: Capabilities, name: str) -> ProviderModel:
        spec = caps.spec(name)
        text = list(caps.resolutions_for(Mode.TEXT, name))
        image = list(caps.resolutions_for(Mode.IMAGE, name))
        low, high = caps.duration_range_for(name)
        durations = caps.durations_for(name)
        return cls(
            name=name,
            text_to_video=caps.offers(Mode.TEXT, name),
            image_to_video=caps.offers(Mode.IMAGE, name),
            resolutions=[r for r in caps.resolutions if r in text or r in image],
            text_to_video_resolutions=text,
            image_to_video_resolutions=image,
            min_duration_seconds=low,
            max_duration_seconds=high,
            durations=list(durations) if durations else None,
            longest_only_resolutions=list(spec.long_resolutions) if spec else [],
        )


@strawberry.type(description="A generation backend and what it can do.")
class ProviderInfo:
    name: str
    available: bool = strawberry.field(
        description="Usable: configured, and its vendor serves it (see unavailableReason)."
    )
    unavailable_reason: str | None = strawberry.field(
        description="Why jobs are refused (a setting to set, an API withdrawn); null when "
        "available."
    )
    text_to_video: bool
    image_to_video: bool
    resolutions: list[str]
    output_formats: list[OutputFormatEnum]
    min_duration_seconds: float
    max_duration_seconds: float
    durations: list[float] | None = strawberry.field(
        description="The only durations accepted, when the provider has a fixed set."
    )
    max_prompt_length: int
    models: list[ProviderModel] = strawberry.field(
        description="Each model and what it takes; generateVideo(model:) is checked against it."
    )
    default_model: str | None
    default_resolution: str | None

    @classmethod
    def of(cls, name: str, provider: Provider) -> ProviderInfo:
        caps = provider.capabilities
        return cls(
            name=name,
            available=bool(provider.available),
            unavailable_reason=unavailable_reason(provider),
            text_to_video=caps.text_to_video,
            image_to_video=caps.image_to_video,
            resolutions=list(caps.resolutions),
            output_formats=[OutputFormatEnum.of(f) for f in caps.output_formats],
            min_duration_seconds=caps.min_duration_seconds,
            max_duration_seconds=caps.max_duration_seconds,
            durations=list(caps.durations) if caps.durations else None,
            max_prompt_length=caps.max_prompt_length,
            models=[ProviderModel.of(caps, model) for model in caps.models],
            default_model=caps.default_model,
            default_resolution=caps.default_resolution,
        )


@strawberry.type(description="A new bearer token and its user.")
class AuthPayload:
    token: str = strawberry.field(description="Send as 'Authorization: Bearer <token>'.")
    user: User


# --- inputs -------------------------------------------------------------------------------


@strawberry.input
class VideoFilter:
    status: list[VideoStatusEnum] | None = None
    project_id: strawberry.ID | None = None
    story_id: strawberry.ID | None = None
    tag: str | None = None
    theme: str | None = None
    provider: str | None = None
    search: str | None = strawberry.field(
        default=None, description="Text in the prompt or caption, ignoring case."
    )
    include_deleted: bool | None = False


@strawberry.input
class RegisterInput:
    email: str
    password: str


@strawberry.input
class LoginInput:
    email: str
    password: str


@strawberry.input
class CreateProjectInput:
    name: str
    description: str | None = None


@strawberry.input(description="Only the fields given are changed.")
class UpdateProjectInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class CreateStoryInput:
    title: str
    project_id: strawberry.ID | None = None
    paragraphs: list[str] | None = None


@strawberry.input(description="Only the fields given are changed; null clears projectId.")
class UpdateStoryInput:
    title: str | None = strawberry.UNSET
    project_id: strawberry.ID | None = strawberry.UNSET
    paragraphs: list[str] | None = strawberry.UNSET


@strawberry.input
class GenerateVideoInput:
    prompt: str
    provider: str | None = "local"
    model: str | None = strawberry.field(default=None, description="Default: the provider's.")
    project_id: strawberry.ID | None = None
    story_id: strawberry.ID | None = None
    paragraph_index: int | None = strawberry.field(default=None, description="Needs storyId.")
    input_image: Upload | None = strawberry.field(
        default=None, description="PNG, JPEG or WebP (multipart request)."
    )
    resolution: str | None = strawberry.field(
        default=None,
        description="One of the provider's presets; default 1024x1024 (or its first preset).",
    )
    output_format: OutputFormatEnum | None = OutputFormatEnum.MP4
    duration_seconds: float | None = None
    caption: str | None = None
    video_style: str | None = None
    theme: str | None = None
    tags: list[str] | None = None
    priority: int | None = strawberry.field(default=None, description="Higher runs first.")
    scheduled_at: dt.datetime | None = strawberry.field(
        default=None, description="Do not start before this time."
    )
    idempotency_key: str | None = strawberry.field(
        default=None, description="Repeating a key returns the first video, creating nothing."
    )


@strawberry.input(description="Only the fields given are changed; null clears one.")
class UpdateVideoInput:
    caption: str | None = strawberry.UNSET
    video_style: str | None = strawberry.UNSET
    theme: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
