"""GET /metrics in the Prometheus text format, and the counting of HTTP requests (done by
``vidgen.web.app.RequestMiddleware``)."""

from __future__ import annotations

import datetime as dt
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope
from tortoise.expressions import Q
from tortoise.functions import Count, Min

from vidgen import metrics
from vidgen.models import AttemptOutcome, Video, VideoAttempt, VideoStatus
from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)


async def refresh_database_gauges() -> None:
    """Read fleet-wide job figures (a handful of grouped queries, whatever the table size)."""
    metrics.JOBS.clear()
    rows = (
        await Video.filter(deleted_at=None)
        .annotate(n=Count("id"))
        .group_by("status", "provider")
        .values("status", "provider", "n")
    )
    for status in VideoStatus:
        metrics.JOBS.labels(status=status.value, provider="local").set(0)
    for row in rows:
        metrics.JOBS.labels(status=str(row["status"]), provider=row["provider"]).set(row["n"])

    now = dt.datetime.now(dt.UTC)
    due = Video.filter(
        Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now),
        status=VideoStatus.QUEUED,
        deleted_at__isnull=True,
    )
    metrics.QUEUE_DEPTH.set(await due.count())
    # The job waiting longest is due since scheduled_at, or since created_at when unscheduled.
    unscheduled = (
        await due.filter(scheduled_at__isnull=True)
        .annotate(first=Min("created_at"))
        .first()
        .values("first")
    )
    scheduled = (
        await due.filter(scheduled_at__isnull=False)
        .annotate(first=Min("scheduled_at"))
        .first()
        .values("first")
    )
    since = [row["first"] for row in (unscheduled, scheduled) if row and row["first"]]
    metrics.QUEUE_OLDEST_AGE.set(max(0.0, (now - min(since)).total_seconds()) if since else 0)

    attempts = await VideoAttempt.annotate(n=Count("id")).group_by("outcome").values("outcome", "n")
    counts = {str(r["outcome"]): r["n"] for r in attempts}
    for outcome in AttemptOutcome:
        metrics.ATTEMPTS.labels(outcome=outcome.value).set(counts.get(outcome.value, 0))


def metrics_routes(runtime: Runtime) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        try:
            await refresh_database_gauges()
        except Exception:  # noqa: BLE001 - still serve in-process metrics when the DB is down
            logger.warning("metrics: database figures unavailable", exc_info=True)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", endpoint, methods=["GET"])]


def count_request(route: str, method: str, status: int) -> None:
    """Count one finished HTTP request by route template (:func:`route_template`, never the
    raw path: ids would explode labels), method and status."""
    metrics.count(metrics.HTTP_REQUESTS, route, method, str(status))


#: How many (path, method) pairs an app remembers the route template of.
STATIC_ROUTES_MAX = 256


def route_template(scope: Scope) -> str:
    """The template of the route ``scope`` matches, ``"unmatched"`` when none does.

    A path that is a route's whole template (no parameters, e.g. ``/graphql``) is
    remembered per app, so it is not matched against every route again on each request.
    """
    app = scope.get("app")
    key = (scope.get("path", ""), scope.get("method", ""))
    known: dict[tuple[str, str], str] | None = getattr(app, "_vidgen_static_routes", None)
    if known is not None:
        found = known.get(key)
        if found is not None:
            return found
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            template = getattr(route, "path", "other")
            if template == key[0] and app is not None:
                if known is None:
                    known = {}
                    app._vidgen_static_routes = known  # type: ignore[attr-defined]
                if len(known) < STATIC_ROUTES_MAX:
                    known[key] = template
            return template
    return "unmatched"
