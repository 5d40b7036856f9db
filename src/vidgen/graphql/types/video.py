"""Videos: the Video type (the row is also the job), its status history, its connections
and the inputs of the video mutations and the ``videos`` filter.

Most Video fields are :func:`~vidgen.graphql.fastpath.field_plans.direct` resolvers: pure
functions of the row and the context, which the inline executor calls without an ``Info``.
The relations return the loaded row itself when the loader already holds it
(:func:`~vidgen.graphql.fastpath.preload.now_or_later`), else the loader's awaitable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay
from strawberry.dataloader import DataLoader
from strawberry.file_uploads import Upload
from strawberry.types import Info

from vidgen import models
from vidgen.graphql import dataloaders, pagination
from vidgen.graphql.context import context_of
from vidgen.graphql.fastpath.field_plans import direct
from vidgen.graphql.fastpath.preload import now_or_later
from vidgen.graphql.types import connections, user, webhooks
from vidgen.graphql.types.enums import (
    OutputFormatEnum,
    TransitionEnum,
    VideoKindEnum,
    VideoStatusEnum,
)
from vidgen.graphql.types.rows import accepts
from vidgen.media.signing import signed_url

if TYPE_CHECKING:
    from vidgen.graphql.context import Context
    from vidgen.graphql.types.catalog import Project, Story, Tag, Theme

# The catalog's types (a video's theme, tags, project, story) are named lazily, resolved when
# the schema is built: the catalog imports this module (Project.videos is a VideoConnection).
_CATALOG = "vidgen.graphql.types.catalog"


@strawberry.type(description="One entry of a video's status history.")
class StatusChange:
    at: dt.datetime
    message: str | None

    is_type_of = accepts(models.VideoStatusEvent)

    @strawberry.field
    @direct
    def status(root: Any, context: Context) -> VideoStatusEnum:
        return VideoStatusEnum.of(root.to_status)


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

    is_type_of = accepts(models.Video)

    @strawberry.field
    @direct
    def status(root: Any, context: Context) -> VideoStatusEnum:
        return VideoStatusEnum.of(root.status)

    @strawberry.field(
        description="What the provider says while the video is processing (queue position, "
        "last log line); null otherwise."
    )
    @direct
    def status_message(root: Any, context: Context) -> str | None:
        if root.status != models.VideoStatus.PROCESSING:
            return None
        return root.status_message

    @strawberry.field(description="CLIP, or FILM: a story's clips stitched (renderStory).")
    @direct
    def kind(root: Any, context: Context) -> VideoKindEnum:
        return VideoKindEnum.of(root.kind)

    @strawberry.field
    @direct
    def output_format(root: Any, context: Context) -> OutputFormatEnum:
        return OutputFormatEnum.of(root.output_format)

    @strawberry.field(description="Signed URL of the video file (or the provider's URL).")
    @direct
    def video_url(root: Any, context: Context) -> str | None:
        return _signed(context, root.video_file) or root.video_url

    @strawberry.field(description="Signed URL of the thumbnail.")
    @direct
    def thumbnail_url(root: Any, context: Context) -> str | None:
        return _signed(context, root.thumbnail_file) or root.thumbnail_url

    @strawberry.field(description="Signed URL of the uploaded input image.")
    @direct
    def input_image_url(root: Any, context: Context) -> str | None:
        return _signed(context, root.input_image)

    # The relations: the row itself when the loader holds it, else the loader's
    # awaitable (see now_or_later).
    @strawberry.field
    @direct
    def theme(root: Any, context: Context) -> Annotated[Theme, strawberry.lazy(_CATALOG)] | None:
        if root.theme_id is None:
            return None
        return now_or_later(context.loaders.theme_by_id, root.theme_id)

    @strawberry.field
    @direct
    def tags(root: Any, context: Context) -> list[Annotated[Tag, strawberry.lazy(_CATALOG)]]:
        return now_or_later(context.loaders.tags_by_video_id, root.id)

    @strawberry.field
    @direct
    def project(
        root: Any, context: Context
    ) -> Annotated[Project, strawberry.lazy(_CATALOG)] | None:
        if root.project_id is None:
            return None
        return now_or_later(context.loaders.project_by_id, root.project_id)

    @strawberry.field
    @direct
    def story(root: Any, context: Context) -> Annotated[Story, strawberry.lazy(_CATALOG)] | None:
        if root.story_id is None:
            return None
        return now_or_later(context.loaders.story_by_id, root.story_id)

    @strawberry.field(description="Status changes, oldest first.")
    @direct
    def status_history(root: Any, context: Context) -> list[StatusChange]:
        return _status_history(root, context)

    @strawberry.field(
        description="Opaque cursor of the latest change: pass it to videoUpdates(after:)."
    )
    async def event_cursor(self, root: strawberry.Parent[Any], info: Info) -> str | None:
        latest = await context_of(info).loaders.latest_event_id_by_video_id.load(root.id)
        return None if latest is None else str(latest)

    @strawberry.field
    @direct
    def owner(root: Any, context: Context) -> user.User:
        return now_or_later(context.loaders.user_by_id, root.owner_id)

    @strawberry.field(
        description="Each status change POSTed to the video's webhookUrl, oldest first; "
        "null unless the viewer owns the video."
    )
    async def webhook_deliveries(
        self, root: strawberry.Parent[Any], info: Info
    ) -> list[webhooks.WebhookDelivery] | None:
        context = context_of(info)
        if context.viewer is None or context.viewer.id != root.owner_id:
            return None
        return await context.loaders.webhook_deliveries_by_video_id.load(root.id)  # type: ignore[return-value]


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


def _status_history(root: Any, context: Context) -> Any:
    # The loader holds the video's whole event log; statusHistory is its status changes.
    found = now_or_later(context.loaders.status_history_by_video_id, root.id)
    if isinstance(found, list):
        return _status_changes(found)
    # A future, not a coroutine: the inline executor may call this twice and drop one result.
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

        return cls(
            edges=connections.edges(page.rows),
            page_info=connections.page_info(page),
            counter=counter,
        )


async def video_connection(
    info: Info, videos: Any, first: int | None, after: str | None
) -> VideoConnection:
    """The root ``videos`` connection (``videos`` is a ``services.videos.VideoList``) when
    Strawberry executes it (see vidgen.graphql.compiled for the documents it does not)."""
    size = connections.page_size(info, first)
    return VideoConnection.of(
        await pagination.fetch_page(videos.queryset(), first=size, after=after)
    )


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
    scope = dataloaders.Scope.of(context_of(info).require_viewer())
    size = connections.page_size(info, first)
    if after:
        pagination.decode_cursor(after)  # a bad cursor fails this field, not the batch
    page = await pages.load(dataloaders.VideoPageKey(parent_id, size, after or None, scope))
    return VideoConnection.of(page, counter=lambda: counts.load((parent_id, scope)))


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
    webhook_url: str | None = strawberry.field(
        default=None,
        description="Every status change is POSTed here, signed with viewer.webhookSecret "
        "(Standard Webhooks). https on a public address.",
    )


@strawberry.input(description="How renderStory makes each clip and joins them (docs/films.md).")
class RenderStoryInput:
    provider: str | None = "local"
    resolution: str | None = strawberry.field(
        default=None, description="The film's and every clip's; default as in generateVideo."
    )
    output_format: OutputFormatEnum | None = OutputFormatEnum.MP4
    duration_seconds_per_paragraph: float | None = strawberry.field(
        default=None, description="Each clip's duration; default the provider's."
    )
    captions: bool | None = strawberry.field(
        default=False, description="Burn each paragraph's text into its clip."
    )
    transition: TransitionEnum | None = TransitionEnum.CUT
    webhook_url: str | None = strawberry.field(
        default=None, description="The film's status changes are POSTed here, as generateVideo's."
    )


@strawberry.input(description="Only the fields given are changed; null clears one.")
class UpdateVideoInput:
    caption: str | None = strawberry.UNSET
    video_style: str | None = strawberry.UNSET
    theme: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
