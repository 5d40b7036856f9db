"""Prometheus metrics of this process (one registry; the /metrics route renders it).

Counters and histograms are observed where things happen (requests, GraphQL errors, jobs run
by a worker in this process, bus reconnects). Fleet-wide figures (jobs by status, queue depth,
oldest due job, attempts by outcome) are read from the database at scrape time, so every API
process reports the same truth whichever process did the work.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "vidgen_http_requests_total",
    "HTTP requests by route and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
GRAPHQL_OPERATIONS = Counter(
    "vidgen_graphql_operations_total",
    "GraphQL operations by operation name and type.",
    ["operation", "type"],
    registry=REGISTRY,
)
GRAPHQL_ERRORS = Counter(
    "vidgen_graphql_errors_total",
    "GraphQL errors by operation name and extensions.code.",
    ["operation", "code"],
    registry=REGISTRY,
)
JOBS = Gauge(
    "vidgen_jobs",
    "Videos (jobs) by status and provider, soft-deleted excluded.",
    ["status", "provider"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "vidgen_queue_depth", "Jobs due now (queued, not scheduled later).", registry=REGISTRY
)
QUEUE_OLDEST_AGE = Gauge(
    "vidgen_queue_oldest_due_age_seconds",
    "Age of the oldest due job (0 when the queue is empty).",
    registry=REGISTRY,
)
ATTEMPTS = Gauge(
    "vidgen_job_attempts",
    "Job attempts by outcome (retry = retryable failure, rescued = lease expired).",
    ["outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "vidgen_job_duration_seconds",
    "Wall time of job attempts run in this process, by provider and outcome.",
    ["provider", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
JOB_RETRIES = Counter(
    "vidgen_job_retries_total",
    "Retryable failures re-queued by this process.",
    ["provider"],
    registry=REGISTRY,
)
JOB_RESCUES = Counter(
    "vidgen_job_rescues_total",
    "Expired leases rescued by this process's sweeper.",
    registry=REGISTRY,
)
ACTIVE_SUBSCRIPTIONS = Gauge(
    "vidgen_active_subscriptions",
    "GraphQL subscriptions open in this process.",
    ["field"],
    registry=REGISTRY,
)
BUS_RECONNECTS = Counter(
    "vidgen_bus_reconnects_total", "Event bus reconnections after an outage.", registry=REGISTRY
)
BUS_DROPPED_SUBSCRIBERS = Counter(
    "vidgen_bus_dropped_subscribers_total",
    "Local subscribers dropped because they could not keep up.",
    registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "vidgen_quota_refusals_total",
    "generateVideo and retryVideo requests refused QUOTA_EXCEEDED, by the limit they hit.",
    ["limit"],
    registry=REGISTRY,
)
THROTTLED = Counter(
    "vidgen_throttled_total",
    "Requests refused RATE_LIMITED: logins (by email or address), registrations, mutations.",
    ["kind"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "vidgen_webhook_deliveries_total",
    "Outgoing webhook events accepted (2xx) by their receivers, sent by this process.",
    registry=REGISTRY,
)
WEBHOOK_RETRIES = Counter(
    "vidgen_webhook_retries_total",
    "Failed outgoing webhook attempts that this process scheduled to be tried again.",
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "vidgen_webhook_failures_total",
    "Outgoing webhook events this process gave up: refused (a 3xx or 4xx answer other than"
    " 429, or a receiver the settings do not allow) or expired (still failing at the end of"
    " the retry window).",
    ["reason"],
    registry=REGISTRY,
)


# (counter, label values) -> the counter's child, for the counters bumped on every request.
_children: dict[tuple[Counter, tuple[str, ...]], Any] = {}
_CHILDREN_MAX = 4096


def count(counter: Counter, *values: str) -> None:
    """``counter.labels(*values).inc()``, with the child looked up once per label values
    (``labels`` validates and locks on every call; a request bumps two counters). The
    children of a counter live as long as it does (these are never cleared)."""
    key = (counter, values)
    child = _children.get(key)
    if child is None:
        child = counter.labels(*values)
        if len(_children) < _CHILDREN_MAX:
            _children[key] = child
    child.inc()
