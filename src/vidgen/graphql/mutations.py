"""The Mutation root. Resolvers are thin: decode ids and inputs, call one service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types import Info

from vidgen import errors
from vidgen.graphql import types
from vidgen.graphql.context import Context, context_of
from vidgen.graphql.permissions import IsAdmin, IsAuthenticated
from vidgen.services import KEEP, catalog, films, quotas, users, videos
from vidgen.web.client_address import client_address

AUTH = [IsAuthenticated]
ADMIN = [IsAuthenticated, IsAdmin]


def _given(value: Any) -> Any:
    """An UNSET input field becomes KEEP (leave as is); null stays None (clear)."""
    return KEEP if value is strawberry.UNSET else value


def _target(id: strawberry.ID, type_name: str) -> int:
    """The database id of a mutation's target; another type's id is simply not found."""
    node_id = types.decode_id(id, type_name)
    if node_id is None:
        raise errors.NotFound(type_name.lower())
    return node_id


async def _on_video(info: Info, id: strawberry.ID, action: Callable[..., Awaitable[Any]]) -> Any:
    """``action`` (a service function) on the video ``id`` names, as the viewer."""
    context = context_of(info)
    return await action(
        runtime=context.runtime, viewer=context.require_viewer(), video_id=_target(id, "Video")
    )


async def _read_upload(upload: Any, *, limit: int) -> bytes | None:
    if upload is None:
        return None
    if not hasattr(upload, "read"):
        raise errors.BadUserInput("inputImage must be a file upload.", field="inputImage")
    # One file may be mapped to several variables (multipart ``map``): each use reads it
    # from the start.
    if hasattr(upload, "seek"):
        await upload.seek(0)
    # Read one byte past the limit: enough to know it is too large, never the whole file.
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise errors.BadUserInput(
            f"The input image is larger than the limit of {limit} bytes.", field="inputImage"
        )
    return data


async def run_generate_video(context: Context, input: types.GenerateVideoInput) -> Any:
    """``generateVideo``'s work, for its resolver and for the compiled path
    (vidgen.graphql.compiled.mutation): the same checks, errors and writes either way."""
    viewer = context.require_viewer()
    project_id = types.require_id(input.project_id, "Project", field="projectId")
    story_id = types.require_id(input.story_id, "Story", field="storyId")
    image = await _read_upload(input.input_image, limit=context.settings.max_upload_bytes)
    return await videos.generate_video(
        runtime=context.runtime,
        viewer=viewer,
        prompt=input.prompt,
        provider=input.provider,
        model=input.model,
        project_id=project_id,
        story_id=story_id,
        paragraph_index=input.paragraph_index,
        input_image=image,
        resolution=input.resolution,
        output_format=input.output_format.value if input.output_format else None,
        duration_seconds=input.duration_seconds,
        caption=input.caption,
        video_style=input.video_style,
        theme=input.theme,
        tags=input.tags,
        priority=input.priority,
        scheduled_at=input.scheduled_at,
        idempotency_key=input.idempotency_key,
        webhook_url=input.webhook_url,
    )


@strawberry.type
class Mutation:
    # --- accounts ------------------------------------------------------------------------

    @strawberry.mutation(description="Create an account; returns a bearer token.")
    async def register(self, info: Info, input: types.RegisterInput) -> types.AuthPayload:
        context = context_of(info)
        settings = context.settings
        token, user = await users.register(
            email=input.email,
            password=input.password,
            signup_enabled=settings.signup_enabled,
            ttl_days=settings.token_ttl_days,
            throttle=context.runtime.throttle,
            client=client_address(context.request, settings.trusted_proxies),
        )
        return types.AuthPayload(token=token, user=user)  # type: ignore[arg-type]

    @strawberry.mutation(description="Sign in; returns a new bearer token.")
    async def login(self, info: Info, input: types.LoginInput) -> types.AuthPayload:
        context = context_of(info)
        settings = context.settings
        token, user = await users.login(
            email=input.email,
            password=input.password,
            ttl_days=settings.token_ttl_days,
            throttle=context.runtime.throttle,
            client=client_address(context.request, settings.trusted_proxies),
        )
        return types.AuthPayload(token=token, user=user)  # type: ignore[arg-type]

    @strawberry.mutation(permission_classes=AUTH, description="Revoke the token of this request.")
    async def logout(self, info: Info) -> bool:
        context = context_of(info)
        return await users.revoke_token(token=context.token or "")

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Admins: override a user's limits (null: back to the server's setting).",
    )
    async def set_user_limits(
        self, info: Info, user_id: strawberry.ID, input: types.UserLimitsInput
    ) -> types.User:
        return await quotas.set_user_limits(
            viewer=context_of(info).require_viewer(),
            user_id=_target(user_id, "User"),
            max_active_jobs=_given(input.max_active_jobs),
            daily_video_seconds=_given(input.daily_video_seconds),
            exempt=_given(input.exempt),
        )

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Replace your webhook signing secret; returns the new one. It signs every "
        "attempt from now on, retries of earlier events included.",
    )
    async def rotate_webhook_secret(self, info: Info) -> str:
        return await users.rotate_webhook_secret(viewer=context_of(info).require_viewer())

    # --- projects ------------------------------------------------------------------------

    @strawberry.mutation(permission_classes=AUTH)
    async def create_project(self, info: Info, input: types.CreateProjectInput) -> types.Project:
        return await catalog.create_project(
            viewer=context_of(info).require_viewer(),
            name=input.name,
            description=input.description,
        )

    @strawberry.mutation(permission_classes=AUTH)
    async def update_project(
        self, info: Info, id: strawberry.ID, input: types.UpdateProjectInput
    ) -> types.Project:
        return await catalog.update_project(
            viewer=context_of(info).require_viewer(),
            project_id=_target(id, "Project"),
            name=_given(input.name),
            description=_given(input.description),
        )

    @strawberry.mutation(
        permission_classes=AUTH, description="Delete a project; its videos and stories stay."
    )
    async def delete_project(self, info: Info, id: strawberry.ID) -> bool:
        return await catalog.delete_project(
            viewer=context_of(info).require_viewer(), project_id=_target(id, "Project")
        )

    # --- stories -------------------------------------------------------------------------

    @strawberry.mutation(permission_classes=AUTH)
    async def create_story(self, info: Info, input: types.CreateStoryInput) -> types.Story:
        return await catalog.create_story(
            viewer=context_of(info).require_viewer(),
            title=input.title,
            project_id=types.require_id(input.project_id, "Project", field="projectId"),
            paragraphs=input.paragraphs,
        )

    @strawberry.mutation(permission_classes=AUTH)
    async def update_story(
        self, info: Info, id: strawberry.ID, input: types.UpdateStoryInput
    ) -> types.Story:
        project_id = _given(input.project_id)
        if project_id is not KEEP and project_id is not None:
            project_id = types.require_id(project_id, "Project", field="projectId")
        return await catalog.update_story(
            viewer=context_of(info).require_viewer(),
            story_id=_target(id, "Story"),
            title=_given(input.title),
            project_id=project_id,
            paragraphs=_given(input.paragraphs),
        )

    @strawberry.mutation(permission_classes=AUTH, description="Delete a story; its videos stay.")
    async def delete_story(self, info: Info, id: strawberry.ID) -> bool:
        return await catalog.delete_story(
            viewer=context_of(info).require_viewer(), story_id=_target(id, "Story")
        )

    # --- videos --------------------------------------------------------------------------

    @strawberry.mutation(permission_classes=AUTH, description="Queue a new video.")
    async def generate_video(self, info: Info, input: types.GenerateVideoInput) -> types.Video:
        context = context_of(info)
        answered = context.answered
        if answered is not None:  # the compiled path already ran it (see Context.answered)
            context.answered = None
            video, error = answered
            if error is not None:
                raise error
            return video  # type: ignore[no-any-return]
        return await run_generate_video(context, input)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Queue one film of the whole story: a clip per paragraph (completed ones "
        "reused), stitched in order once all are done.",
    )
    async def render_story(
        self, info: Info, story_id: strawberry.ID, input: types.RenderStoryInput | None = None
    ) -> types.Video:
        context = context_of(info)
        options = input or types.RenderStoryInput()
        return await films.render_story(
            runtime=context.runtime,
            viewer=context.require_viewer(),
            story_id=_target(story_id, "Story"),
            provider=options.provider,
            resolution=options.resolution,
            output_format=options.output_format.value if options.output_format else None,
            duration_seconds_per_paragraph=options.duration_seconds_per_paragraph,
            captions=bool(options.captions),
            transition=options.transition.value if options.transition else None,
            webhook_url=options.webhook_url,
        )

    @strawberry.mutation(permission_classes=AUTH, description="Change caption, style, theme, tags.")
    async def update_video(
        self, info: Info, id: strawberry.ID, input: types.UpdateVideoInput
    ) -> types.Video:
        context = context_of(info)
        return await videos.update_video(
            runtime=context.runtime,
            viewer=context.require_viewer(),
            video_id=_target(id, "Video"),
            caption=_given(input.caption),
            video_style=_given(input.video_style),
            theme=_given(input.theme),
            tags=_given(input.tags),
        )

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Cancel a queued video, or ask the worker of a processing one to stop.",
    )
    async def cancel_video(self, info: Info, id: strawberry.ID) -> types.Video:
        return await _on_video(info, id, videos.cancel_video)

    @strawberry.mutation(permission_classes=AUTH, description="Queue a failed or canceled video.")
    async def retry_video(self, info: Info, id: strawberry.ID) -> types.Video:
        return await _on_video(info, id, videos.retry_video)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Soft-delete (sets deletedAt); a queued or processing job is canceled.",
    )
    async def delete_video(self, info: Info, id: strawberry.ID) -> types.Video:
        return await _on_video(info, id, videos.delete_video)

    @strawberry.mutation(permission_classes=AUTH, description="Undo deleteVideo.")
    async def restore_video(self, info: Info, id: strawberry.ID) -> types.Video:
        return await _on_video(info, id, videos.restore_video)


class FreshLoaders(FieldExtension):
    """Each root mutation field starts with empty data loaders.

    Root mutation fields run one after another, each reading what the ones before it wrote;
    with the request's loaders they read what an earlier field had loaded instead (the
    second of two ``updateVideo`` showed the first one's tags and event cursor, a third
    ``generateVideo`` counted one video in its project). Loaders are bound to the
    operation's task (``Context.fresh_loaders``), and the fields run in that task, so the
    new ones serve this field and everything selected under it.
    """

    def resolve(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        context_of(info).fresh_loaders()
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        context_of(info).fresh_loaders()
        return await next_(source, info, **kwargs)


for _field in Mutation.__strawberry_definition__.fields:
    _field.extensions.append(FreshLoaders())
