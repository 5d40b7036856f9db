"""A user's limits and usage (``User.limits``, ``User.usage``) and ``setUserLimits``'s input.

Read by the user themself or an admin (:func:`readable`); the figures come from
:mod:`vidgen.services.quotas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry

from vidgen import errors, models
from vidgen.services import quotas

if TYPE_CHECKING:
    from vidgen.graphql.context import Context


def readable(context: Context, user: models.User) -> None:
    """Only the user themself and admins see a user's limits and usage."""
    viewer = context.require_viewer()
    if not (viewer.is_admin or viewer.id == user.id):
        raise errors.Forbidden("Only an admin can see another user's limits and usage.")


@strawberry.type(description="What an admin set for this user; null follows the server.")
class UserLimitsOverride:
    max_active_jobs: int | None
    daily_video_seconds: float | None
    exempt: bool | None


@strawberry.type(description="The limits that apply to a user now; null: unlimited.")
class UserLimits:
    max_active_jobs: int | None = strawberry.field(
        description="Queued + processing videos at once (VIDGEN_USER_MAX_ACTIVE_JOBS)."
    )
    daily_video_seconds: float | None = strawberry.field(
        description="Seconds of video requested per rolling 24 hours"
        " (VIDGEN_USER_DAILY_VIDEO_SECONDS); failed and canceled videos give theirs back."
    )
    exempt: bool = strawberry.field(description="No quota applies to this user.")
    mutations_per_minute: float | None = strawberry.field(
        description="Mutations a minute, on average (VIDGEN_USER_MUTATIONS_PER_MINUTE)."
    )
    override: UserLimitsOverride

    @classmethod
    def of(cls, user: models.User, context: Context) -> UserLimits:
        settings = context.settings
        limits = quotas.limits_of(user, settings)
        return cls(
            max_active_jobs=None if limits.exempt else limits.max_active_jobs,
            daily_video_seconds=None if limits.exempt else limits.daily_video_seconds,
            exempt=limits.exempt,
            mutations_per_minute=settings.user_mutations_per_minute,
            override=UserLimitsOverride(
                max_active_jobs=user.max_active_jobs,
                daily_video_seconds=user.daily_video_seconds,
                exempt=user.quota_exempt,
            ),
        )


@strawberry.type(description="One provider's share of a user's usage.")
class ProviderUsage:
    provider: str
    active_jobs: int
    queued_jobs: int
    processing_jobs: int
    videos_today: int = strawberry.field(description="Requested in the last 24 hours.")
    video_seconds_today: float


@strawberry.type(description="What counts against a user's limits now.")
class UserUsage:
    active_jobs: int = strawberry.field(description="Queued + processing videos.")
    queued_jobs: int
    processing_jobs: int
    videos_today: int = strawberry.field(
        description="Videos requested (created or retried) in the last 24 hours, failed and"
        " canceled ones left out."
    )
    video_seconds_today: float = strawberry.field(
        description="Their requested seconds: what the daily limit counts."
    )
    video_seconds_left_today: float | None = strawberry.field(
        description="What the daily limit leaves now; null: unlimited."
    )
    by_provider: list[ProviderUsage]

    @classmethod
    async def of(cls, user: models.User, context: Context) -> UserUsage:
        usage = await quotas.usage_of(user_id=user.id)
        limits = quotas.limits_of(user, context.settings)
        left = None
        if limits.daily_video_seconds is not None and not limits.exempt:
            left = max(0.0, limits.daily_video_seconds - usage.video_seconds_today)
        return cls(
            active_jobs=usage.active_jobs,
            queued_jobs=usage.queued_jobs,
            processing_jobs=usage.processing_jobs,
            videos_today=usage.videos_today,
            video_seconds_today=usage.video_seconds_today,
            video_seconds_left_today=left,
            by_provider=[
                ProviderUsage(
                    provider=p.provider,
                    active_jobs=p.active_jobs,
                    queued_jobs=p.queued_jobs,
                    processing_jobs=p.processing_jobs,
                    videos_today=p.videos_today,
                    video_seconds_today=p.video_seconds_today,
                )
                for p in usage.by_provider
            ],
        )


@strawberry.input(description="Omitted: unchanged; null: back to the server's setting.")
class UserLimitsInput:
    max_active_jobs: int | None = strawberry.UNSET
    daily_video_seconds: float | None = strawberry.UNSET
    exempt: bool | None = strawberry.UNSET
