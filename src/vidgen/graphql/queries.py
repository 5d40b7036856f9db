"""The Query root. Resolvers are thin: decode ids, ask a service, return rows."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from vidgen import db, models
from vidgen.graphql import types
from vidgen.graphql.context import context_of
from vidgen.graphql.permissions import IsAuthenticated
from vidgen.services import catalog, videos

AUTH = [IsAuthenticated]


async def _find_node(viewer: models.User, type_name: str, node_id: int) -> Any:
    if type_name == "Video":
        return await videos.find_video(viewer=viewer, video_id=node_id)
    if type_name == "Project":
        return await catalog.find_project(viewer=viewer, project_id=node_id)
    if type_name == "Story":
        return await catalog.find_story(viewer=viewer, story_id=node_id)
    if type_name == "Tag":
        return await catalog.visible_tags(viewer).get_or_none(id=node_id)
    if type_name == "Theme":
        return await catalog.visible_themes(viewer).get_or_none(id=node_id)
    if type_name == "User":
        if viewer.is_admin or viewer.id == node_id:
            return await models.User.get_or_none(id=node_id)
    return None


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user; null when not signed in.")
    def viewer(self, info: Info) -> types.User | None:
        return context_of(info).viewer

    @strawberry.field(permission_classes=AUTH, description="Any object by its global id.")
    async def node(self, info: Info, id: strawberry.ID) -> relay.Node | None:
        viewer = context_of(info).require_viewer()
        try:
            gid = types.parse_global_id(id)
            node_id = db.row_id_in(gid.node_id)
        except (ValueError, TypeError):
            return None
        if not node_id:
            return None  # no row has it (or the database would refuse the number)
        return await _find_node(viewer, gid.type_name, node_id)

    @strawberry.field(permission_classes=AUTH, description="Null when missing or not yours.")
    async def video(self, info: Info, id: strawberry.ID) -> types.Video | None:
        viewer = context_of(info).require_viewer()
        video_id = types.decode_id(id, "Video")
        if video_id is None:
            return None
        return await videos.find_video(viewer=viewer, video_id=video_id)

    @strawberry.field(permission_classes=AUTH, description="Your videos, newest first.")
    async def videos(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: types.VideoFilter | None = None,
    ) -> types.VideoConnection:
        viewer = context_of(info).require_viewer()
        f = filter or types.VideoFilter()
        listed = videos.video_list(
            viewer=viewer,
            status=[s.value for s in f.status] if f.status else None,
            project_id=types.require_id(f.project_id, "Project", field="projectId"),
            story_id=types.require_id(f.story_id, "Story", field="storyId"),
            tag=f.tag,
            theme=f.theme,
            provider=f.provider,
            search=f.search,
            include_deleted=bool(f.include_deleted),
        )
        return await types.video_connection(info, listed, first, after)

    @strawberry.field(permission_classes=AUTH, description="Your projects, newest first.")
    async def projects(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> types.ProjectConnection:
        viewer = context_of(info).require_viewer()
        page = await types.fetch_page(info, catalog.visible_projects(viewer), first, after)
        return types.ProjectConnection.of(page)

    @strawberry.field(permission_classes=AUTH, description="Null when missing or not yours.")
    async def project(self, info: Info, id: strawberry.ID) -> types.Project | None:
        viewer = context_of(info).require_viewer()
        project_id = types.decode_id(id, "Project")
        return await catalog.find_project(viewer=viewer, project_id=project_id)

    @strawberry.field(permission_classes=AUTH, description="Your stories, newest first.")
    async def stories(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        project_id: strawberry.ID | None = None,
    ) -> types.StoryConnection:
        viewer = context_of(info).require_viewer()
        query = catalog.visible_stories(viewer)
        if project_id is not None:
            query = query.filter(
                project_id=types.require_id(project_id, "Project", field="projectId")
            )
        page = await types.fetch_page(info, query, first, after)
        return types.StoryConnection.of(page)

    @strawberry.field(permission_classes=AUTH, description="Null when missing or not yours.")
    async def story(self, info: Info, id: strawberry.ID) -> types.Story | None:
        viewer = context_of(info).require_viewer()
        story_id = types.decode_id(id, "Story")
        return await catalog.find_story(viewer=viewer, story_id=story_id)

    @strawberry.field(permission_classes=AUTH, description="Your tags, by name.")
    async def tags(self, info: Info) -> list[types.Tag]:
        return await catalog.list_tags(viewer=context_of(info).require_viewer())

    @strawberry.field(permission_classes=AUTH, description="Your themes, by name.")
    async def themes(self, info: Info) -> list[types.Theme]:
        return await catalog.list_themes(viewer=context_of(info).require_viewer())

    @strawberry.field(description="Every provider, its capabilities and whether it is usable.")
    def providers(self, info: Info) -> list[types.ProviderInfo]:
        providers = context_of(info).runtime.providers
        return [types.ProviderInfo.of(name, provider) for name, provider in providers.items()]
