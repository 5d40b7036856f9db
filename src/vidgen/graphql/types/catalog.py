"""The catalog: projects, stories, tags and themes (what videos are grouped and labelled by).

``Project.videos`` and ``Story.videos`` are video connections: see :mod:`.video`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from vidgen import models
from vidgen.graphql import pagination
from vidgen.graphql.context import context_of
from vidgen.graphql.types import connections, video
from vidgen.graphql.types.rows import accepts


@strawberry.type(description="A label on videos; names are unique per user, ignoring case.")
class Tag(relay.Node):
    id: relay.NodeID[int]
    name: str

    is_type_of = accepts(models.Tag)


@strawberry.type(description="A video's theme; names are unique per user, ignoring case.")
class Theme(relay.Node):
    id: relay.NodeID[int]
    name: str

    is_type_of = accepts(models.Theme)


@strawberry.type(description="A group of videos (and stories).")
class Project(relay.Node):
    id: relay.NodeID[int]
    name: str
    description: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    is_type_of = accepts(models.Project)

    @strawberry.field(description="The project's videos, newest first (deleted ones left out).")
    async def videos(
        self,
        root: strawberry.Parent[Any],
        info: Info,
        first: int | None = None,
        after: str | None = None,
    ) -> video.VideoConnection:
        loaders = context_of(info).loaders
        return await video.nested_video_connection(
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

    is_type_of = accepts(models.Story)

    @strawberry.field
    async def project(self, root: strawberry.Parent[Any], info: Info) -> Project | None:
        if root.project_id is None:
            return None
        return await context_of(info).loaders.project_by_id.load(root.project_id)

    @strawberry.field(description="The story's latest completed film (renderStory).")
    async def film(self, root: strawberry.Parent[Any], info: Info) -> video.Video | None:
        loader = context_of(info).loaders.film_by_story
        return await loader.load((root.id, root.owner_id))  # type: ignore[return-value]

    @strawberry.field(
        description="The latest clip of each paragraph, in paragraph order (none: left out)."
    )
    async def clips(self, root: strawberry.Parent[Any], info: Info) -> list[video.Video]:
        loader = context_of(info).loaders.clips_by_story
        key = (root.id, root.owner_id, len(root.paragraphs or []))
        return await loader.load(key)  # type: ignore[return-value]

    @strawberry.field(description="The story's videos, newest first (deleted ones left out).")
    async def videos(
        self,
        root: strawberry.Parent[Any],
        info: Info,
        first: int | None = None,
        after: str | None = None,
    ) -> video.VideoConnection:
        loaders = context_of(info).loaders
        return await video.nested_video_connection(
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
            edges=connections.edges(page.rows),
            page_info=connections.page_info(page),
            count_query=page.count_query,
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
            edges=connections.edges(page.rows),
            page_info=connections.page_info(page),
            count_query=page.count_query,
        )


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
