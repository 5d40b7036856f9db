"""Per-user quotas: how many jobs a user may have at once, and how many seconds of video they
may request in a rolling 24 hours (docs/limits.md).

- The limits are settings (``user_max_active_jobs``, ``user_daily_video_seconds``) that an
  admin may override per user (:func:`set_user_limits`: columns of the user's row, read with
  the token on every request). A user is exempt when their override says so, or when they
  are an admin and ``user_limits_exempt_admins`` is on.
- Active jobs are the user's queued and processing videos. The daily seconds are the
  ``requested_seconds`` of the user's videos requested (created, or retried) in the last
  24 hours, except those now failed or canceled: those gave their seconds back.
- The check is race-free and costs no round trip of its own: it is an
  :class:`~vidgen.jobs.lifecycle.Admission` the lifecycle puts into the very statement that
  inserts the video (or into a retry's transaction). On PostgreSQL it calls
  ``vidgen_quota_admits`` (migration 0007), which takes a per-user advisory lock held to the
  end of the inserting transaction and then counts what committed before; SQLite
  serialises writers, so there the same condition is plain SQL.
- Only a refused request pays for :func:`refusal`, which says which limit it hit and, for
  the daily seconds, when enough of them come free (``retryAfter``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidgen import dialect, errors, metrics
from vidgen.jobs import lifecycle
from vidgen.models import User, Video, VideoStatus
from vidgen.services import KEEP, Keep

if TYPE_CHECKING:
    from vidgen.settings import Settings

WINDOW = dt.timedelta(hours=24)
# Float sums of seconds: a request that exactly fills the day is still admitted.
_EPSILON = 1e-9

# Every query below repeats this term word for word: SQLite uses the partial index
# idx_videos_quota (migration 0007) only when a query's WHERE holds its predicate's terms.
_COUNTED = "status IN ('queued', 'processing', 'completed')"
_ACTIVE = "status IN ('queued', 'processing')"


@dataclass(frozen=True, slots=True)
class Limits:
    """A user's effective limits (None: unlimited) and the overrides behind them."""

    max_active_jobs: int | None
    daily_video_seconds: float | None
    exempt: bool
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def enforced(self) -> bool:
        """True when a request must be checked at all."""
        return not self.exempt and (
            self.max_active_jobs is not None or self.daily_video_seconds is not None
        )


def limits_of(user: User, settings: Settings) -> Limits:
    """The limits that apply to ``user``: their overrides, else the settings."""
    overrides = {
        name: getattr(user, name)
        for name in ("max_active_jobs", "daily_video_seconds", "quota_exempt")
        if getattr(user, name, None) is not None
    }
    exempt = overrides.get("quota_exempt")
    if exempt is None:
        exempt = bool(user.is_admin and settings.user_limits_exempt_admins)
    return Limits(
        max_active_jobs=overrides.get("max_active_jobs", settings.user_max_active_jobs),
        daily_video_seconds=overrides.get("daily_video_seconds", settings.user_daily_video_seconds),
        exempt=exempt,
        overrides=overrides,
    )


@dataclass(frozen=True, slots=True)
class Request:
    """One request (a new video, or a retry) of ``seconds`` of video for ``owner_id``'s
    account at ``at``, under ``limits``."""

    owner_id: int
    limits: Limits
    seconds: float
    at: dt.datetime


def request(owner: User, settings: Settings, seconds: float) -> Request:
    """A request of ``seconds`` now, under ``owner``'s limits."""
    return Request(owner.id, limits_of(owner, settings), seconds, lifecycle.now())


def admission(req: Request) -> lifecycle.Admission | None:
    """The condition under which the request fits the owner's limits, for the lifecycle to
    check in the write itself; None when nothing needs checking."""
    limits, owner_id, seconds = req.limits, req.owner_id, req.seconds
    if not limits.enforced:
        return None
    since = req.at - WINDOW
    if dialect.is_postgres():
        return lifecycle.Admission(
            "vidgen_quota_admits({}, {}, {}, {}, {})",
            (owner_id, limits.max_active_jobs, limits.daily_video_seconds, seconds, since),
        )
    terms, params = [], []
    if limits.max_active_jobs is not None:
        terms.append(
            f"(SELECT count(*) FROM videos WHERE owner_id = {{}} AND {_ACTIVE}"
            f" AND {_COUNTED}) < {{}}"
        )
        params += [owner_id, limits.max_active_jobs]
    if limits.daily_video_seconds is not None:
        terms.append(
            f"{{}} + (SELECT coalesce(sum(requested_seconds), 0) FROM videos"
            f" WHERE owner_id = {{}} AND {_COUNTED} AND requested_at > {{}}) <= {{}}"
        )
        params += [seconds, owner_id, since, limits.daily_video_seconds + _EPSILON]
    return lifecycle.Admission(" AND ".join(terms), tuple(params))


async def refusal(req: Request) -> errors.QuotaExceeded | None:
    """Why a request the admission refused does not fit, counted as a refusal, with
    ``retryAfter`` when waiting frees enough of the daily seconds; None when it fits now
    (something ended since, or another guard of the same write refused it)."""
    limits, owner_id, seconds, at = req.limits, req.owner_id, req.seconds, req.at
    conn = User._meta.db
    if limits.max_active_jobs is not None:
        p = dialect.Params()
        rows = await conn.execute_query_dict(
            f"SELECT count(*) AS n FROM videos WHERE owner_id = {p(owner_id)} AND {_ACTIVE}"
            f" AND {_COUNTED}",
            p.values,
        )
        active = int(rows[0]["n"])
        if active >= limits.max_active_jobs:
            metrics.QUOTA_REFUSALS.labels(limit="active_jobs").inc()
            return errors.QuotaExceeded(
                f"You have {active} videos queued or processing, your limit of"
                f" {limits.max_active_jobs} at once; cancel one or wait until one ends.",
                limit="maxActiveJobs",
                max=limits.max_active_jobs,
            )
    allowed = limits.daily_video_seconds
    if allowed is None:
        return None
    charges = await _charges(owner_id, at - WINDOW)
    used = sum(charge for _, charge in charges)
    if used + seconds <= allowed + _EPSILON:
        return None
    metrics.QUOTA_REFUSALS.labels(limit="daily_video_seconds").inc()
    return errors.QuotaExceeded(
        f"This request's {seconds:g} seconds of video would pass your limit of {allowed:g}"
        f" seconds a day ({used:g} requested in the last 24 hours).",
        retry_after=_wait(charges, used=used, seconds=seconds, allowed=allowed, at=at),
        limit="dailyVideoSeconds",
        max=allowed,
    )


def just_freed() -> errors.QuotaExceeded:
    """The answer when a limit refused the request but had room again by the time
    :func:`refusal` looked: the client may try again at once."""
    metrics.QUOTA_REFUSALS.labels(limit="raced").inc()
    return errors.QuotaExceeded(
        "You were at one of your limits a moment ago and no longer are; try again.",
        retry_after=1,
    )


def _wait(
    charges: list[tuple[dt.datetime, float]],
    *,
    used: float,
    seconds: float,
    allowed: float,
    at: dt.datetime,
) -> float | None:
    """Seconds until the oldest requests leave the window and free room for ``seconds``;
    None when no wait helps (the request alone is over the limit)."""
    if seconds > allowed + _EPSILON:
        return None
    excess = used + seconds - allowed
    freed = 0.0
    for when, charge in charges:
        freed += charge
        if freed >= excess - _EPSILON:
            return max(0.0, (when + WINDOW - at).total_seconds())
    return None


async def _charges(owner_id: int, since: dt.datetime) -> list[tuple[dt.datetime, float]]:
    """The owner's counted requests since ``since``, oldest first: (when, seconds)."""
    p = dialect.Params()
    rows = await User._meta.db.execute_query_dict(
        "SELECT requested_at, requested_seconds FROM videos"
        f" WHERE owner_id = {p(owner_id)} AND {_COUNTED} AND requested_at > {p(since)}"
        " AND requested_seconds IS NOT NULL ORDER BY requested_at",
        p.values,
    )
    when = Video._meta.fields_map["requested_at"].to_python_value
    return [(when(row["requested_at"]), float(row["requested_seconds"])) for row in rows]


# --- usage ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderUsage:
    provider: str
    queued_jobs: int = 0
    processing_jobs: int = 0
    videos_today: int = 0
    video_seconds_today: float = 0.0

    @property
    def active_jobs(self) -> int:
        return self.queued_jobs + self.processing_jobs


@dataclass(frozen=True, slots=True)
class Usage:
    """What counts against a user's limits now: active jobs and the last 24 hours, in all
    and by provider."""

    by_provider: list[ProviderUsage]

    @property
    def queued_jobs(self) -> int:
        return sum(p.queued_jobs for p in self.by_provider)

    @property
    def processing_jobs(self) -> int:
        return sum(p.processing_jobs for p in self.by_provider)

    @property
    def active_jobs(self) -> int:
        return self.queued_jobs + self.processing_jobs

    @property
    def videos_today(self) -> int:
        return sum(p.videos_today for p in self.by_provider)

    @property
    def video_seconds_today(self) -> float:
        return sum(p.video_seconds_today for p in self.by_provider)


async def usage_of(*, user_id: int, at: dt.datetime | None = None) -> Usage:
    """A user's usage (one statement; the caller checks the viewer may see it)."""
    since = (at or lifecycle.now()) - WINDOW
    p = dialect.Params()
    rows = await User._meta.db.execute_query_dict(
        "SELECT provider, status, count(*) AS n, 0 AS seconds FROM videos"
        f" WHERE owner_id = {p(user_id)} AND {_ACTIVE} AND {_COUNTED} GROUP BY provider, status"
        " UNION ALL SELECT provider, 'today' AS status, count(*) AS n,"
        " coalesce(sum(requested_seconds), 0) AS seconds FROM videos"
        f" WHERE owner_id = {p(user_id)} AND {_COUNTED} AND requested_at > {p(since)}"
        " GROUP BY provider",
        p.values,
    )
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = found.setdefault(row["provider"], {})
        if row["status"] == "today":
            entry["videos_today"] = int(row["n"])
            entry["video_seconds_today"] = float(row["seconds"])
        elif row["status"] == VideoStatus.QUEUED.value:
            entry["queued_jobs"] = int(row["n"])
        else:
            entry["processing_jobs"] = int(row["n"])
    return Usage([ProviderUsage(name, **found[name]) for name in sorted(found)])


# --- overrides --------------------------------------------------------------------------


async def set_user_limits(
    *,
    viewer: User,
    user_id: int,
    max_active_jobs: int | None | Keep = KEEP,
    daily_video_seconds: float | None | Keep = KEEP,
    exempt: bool | None | Keep = KEEP,
) -> User:
    """Override a user's limits (admins only). None goes back to the settings; KEEP leaves
    a value as it is. They apply from that user's next request.

    Raises:
        Forbidden: the viewer is not an admin.
        NotFound: no such user.
        BadUserInput: a negative (or not finite) limit, naming the field.
    """
    if not viewer.is_admin:
        raise errors.Forbidden("Only an admin can set a user's limits.")
    changes: dict[str, Any] = {}
    if max_active_jobs is not KEEP:
        if max_active_jobs is not None and not 0 <= max_active_jobs <= 2**31 - 1:
            raise errors.BadUserInput(
                "maxActiveJobs must be 0 or more (null: the server's setting).",
                field="maxActiveJobs",
            )
        changes["max_active_jobs"] = max_active_jobs
    if daily_video_seconds is not KEEP:
        if daily_video_seconds is not None and not 0 <= daily_video_seconds < float("inf"):
            raise errors.BadUserInput(
                "dailyVideoSeconds must be 0 or more (null: the server's setting).",
                field="dailyVideoSeconds",
            )
        changes["daily_video_seconds"] = daily_video_seconds
    if exempt is not KEEP:
        changes["quota_exempt"] = exempt
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise errors.NotFound("user")
    if changes:
        await User.filter(id=user_id).update(**changes)
        for name, value in changes.items():
            setattr(user, name, value)
    return user
