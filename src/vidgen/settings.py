"""The one reader of the environment.

Every knob is a ``VIDGEN_*`` environment variable. Defaults are the embedded ones: an SQLite
file under the data folder, the in-process event bus, a worker inside the API process and a
local media folder. Build a :class:`Settings` once at the entry point and pass it down.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vidgen import errors
from vidgen.eventloop import EventLoopChoice

PROVIDER_NAMES = (
    "local",
    "runway",
    "replicate",
    "stability",
    "openai",
    "fal",
    "google",
    "luma",
)

# The vendors' API roots (without the version segment). ``openai`` has none: OpenAI shut its
# own Videos API down, so that adapter talks to a gateway whose URL must be given.
DEFAULT_BASE_URLS = {
    "runway": "https://api.dev.runwayml.com",
    "replicate": "https://api.replicate.com",
    "stability": "https://api.stability.ai",
    "fal": "https://queue.fal.run",
    "google": "https://generativelanguage.googleapis.com",
    "luma": "https://api.lumalabs.ai/dream-machine",
}


class Settings(BaseSettings):
    """All configuration, read from ``VIDGEN_*`` variables (and an optional ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix="VIDGEN_",
        env_file=".env",
        extra="ignore",
        frozen=False,
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    media_root: Path | None = None
    secret_key: str | None = None
    db_pool_max: int = 20
    # PostgreSQL: the longest a statement may go unanswered (client side) and a transaction
    # may sit idle (server side) before the connection is given up; 0 turns both off.
    db_command_timeout_seconds: float = 30.0

    # --- HTTP server ---------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    # `vidgen worker` serves GET /metrics, /healthz and /readyz on this port (on `host`);
    # unset: none (its counters, e.g. attempts' durations and rescues, are its own).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    public_url: str | None = None
    log_level: str = "INFO"
    log_json: bool | None = None
    # The asyncio loop of serve and worker: uvloop when installed ("auto"), see eventloop.py.
    event_loop: EventLoopChoice = "auto"
    graphiql: bool = True
    signup_enabled: bool = True
    ws_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    legacy_graphql_ws: bool = False
    ws_reauth_seconds: float = 15.0
    ws_subscription_queue: int = 256
    # permessage-deflate: off by default, it costs ~10x the CPU of a live-status delivery
    # to save ~150 bytes of it (bench/ws_compression_bench.py, docs/live.md).
    ws_compression: bool = False
    redis_namespace: str | None = None
    # Publishing on Redis (docs/live.md): how long a publish that must go out at once waits
    # for a pooled connection, and how many messages are kept for retry during an outage.
    redis_publish_wait_seconds: float = Field(default=5.0, gt=0)
    redis_publish_backlog: int = Field(default=100_000, ge=1)
    max_request_bytes: int = 25 * 1024 * 1024
    max_query_depth: int = 12
    max_query_tokens: int = 2000
    max_query_aliases: int = 30
    page_size_default: int = 20
    page_size_max: int = 100
    token_ttl_days: int | None = None

    # --- job engine -------------------------------------------------------------------
    embedded_worker: bool | None = None
    # Jobs one worker process holds at once (docs/jobs.md, "Capacity"). A remote job waiting
    # at its provider costs a task and a few KB, not a CPU: the default is sized by memory
    # (about 40 KB each), file descriptors (polls share provider_max_connections) and one
    # heartbeat statement, not by cores. VIDGEN_WORKER_CONCURRENCY is its deprecated alias.
    worker_max_in_flight: int = Field(
        default=1000,
        ge=1,
        validation_alias=AliasChoices(
            "VIDGEN_WORKER_MAX_IN_FLIGHT", "VIDGEN_WORKER_CONCURRENCY", "worker_max_in_flight"
        ),
    )
    # CPU-bound work (local renders, probing and thumbnailing outputs) runs on this many
    # threads per process (vidgen.jobs.cpu); unset: the machine's cores.
    cpu_workers: int | None = Field(default=None, ge=1)
    # Probing and thumbnailing outputs run in this many processes of their own, so that the
    # worker's event loop keeps the interpreter's lock (vidgen.jobs.cpu); unset: as many as
    # cpu_workers, 0: on the CPU threads instead.
    media_processes: int | None = Field(default=None, ge=0)
    # The longest one output's probe + thumbnail may run in a media process: past it, the
    # processes are killed and the attempt fails retryably (media_timeout).
    media_timeout_seconds: float = Field(default=120.0, gt=0)
    worker_poll_seconds: float = 5.0
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    shutdown_grace_seconds: float = 20.0
    max_retries: int = 3
    max_rescues: int = 3
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 300.0
    # After a 429 that states no wait (no Retry-After, nothing in the body, no documented
    # lock-out), retry no sooner than this: backoff alone would spend the whole budget inside
    # the provider's lock-out (Stability documents 60 s, Replicate "~30s").
    rate_limit_retry_seconds: float = 60.0
    # A provider (or its file host) that cannot be reached or answers 5xx/429 is an outage,
    # not a fault of the job: for this long from the first such failure in a row, the job
    # is re-queued with backoff without spending its retry budget (0: outages spend it).
    provider_outage_seconds: float = Field(default=6 * 3600.0, ge=0)
    priority_min: int = -100
    priority_max: int = 100
    provider_concurrency: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    enable_test_provider: bool = False
    # The test provider appends every submission here (tests count them across processes).
    test_provider_log: Path | None = None

    # --- per-user limits and throttling (docs/limits.md) -----------------------------
    # Unset: unlimited. setUserLimits overrides both for one user; admins follow them too
    # unless user_limits_exempt_admins.
    user_max_active_jobs: int | None = Field(default=None, ge=0)
    user_daily_video_seconds: float | None = Field(default=None, ge=0)
    user_limits_exempt_admins: bool = False
    # Each user's mutations: a token bucket refilled at this rate (unset: no limit) that
    # holds up to user_mutation_burst (default: one minute's worth).
    user_mutations_per_minute: float | None = Field(default=None, gt=0)
    user_mutation_burst: int | None = Field(default=None, ge=1)
    # Failed logins within a sliding window, per email and per client address, and
    # registrations per client address; past them, RATE_LIMITED.
    login_window_seconds: float = Field(default=900.0, gt=0)
    login_max_failures_per_email: int = Field(default=10, ge=1)
    login_max_failures_per_address: int = Field(default=100, ge=1)
    register_window_seconds: float = Field(default=3600.0, gt=0)
    register_max_per_address: int = Field(default=20, ge=1)
    # Addresses or networks (CIDR) of the reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # a ValueError names the bad entry
        return value

    # --- media storage (docs/storage.md) ------------------------------------------------
    # file:///absolute/path (default: the media root) or s3://BUCKET[/PREFIX]. With S3 the
    # media root is only local scratch space (downloads and renders on their way in).
    storage_url: str | None = None
    s3_endpoint_url: str | None = None  # a non-AWS store (MinIO, R2, ...): path-style
    # The region: VIDGEN_S3_REGION, else the standard AWS_REGION / AWS_DEFAULT_REGION.
    s3_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VIDGEN_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    # The store's address as browsers and providers reach it, for presigned URLs (default:
    # the endpoint itself).
    s3_public_endpoint_url: str | None = None
    # The store's presigned URLs are reachable from the internet: providers fetch uploaded
    # input images from the store instead of getting them inline.
    s3_public: bool = False
    # Media URLs answer with a redirect to the store's presigned URL instead of streaming
    # the bytes through the API (S3 only; the store must be reachable by the clients).
    media_redirect: bool = False

    # --- media ------------------------------------------------------------------------
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_image_side: int = 8192
    max_output_bytes: int = 500 * 1024 * 1024
    signed_url_ttl_seconds: int = 3600
    thumbnail_width: int = 320
    thumbnail_format: str = "jpeg"
    retention_days: float = 30.0
    purge_interval_seconds: float = 3600.0
    local_frame_rate: float = 24.0
    render_workers: int | None = None  # the local renderer's threads; None: cpu_workers

    # --- providers ----------------------------------------------------------------------
    provider_timeout_seconds: float = 30.0
    provider_max_connections: int = 20
    # Output downloads from one provider at once, per process (their own connections, apart
    # from the API's provider_max_connections).
    provider_download_connections: int = Field(default=20, ge=1)
    runway_api_key: str | None = None
    runway_base_url: str = DEFAULT_BASE_URLS["runway"]
    runway_poll_seconds: float = 5.0
    replicate_api_key: str | None = None
    replicate_base_url: str = DEFAULT_BASE_URLS["replicate"]
    replicate_webhook_secret: str | None = None
    replicate_model: str = "minimax/video-01"
    stability_api_key: str | None = None
    stability_base_url: str = DEFAULT_BASE_URLS["stability"]
    openai_api_key: str | None = None
    # An OpenAI-compatible Videos API gateway (LiteLLM, ...); unset: the provider is
    # unavailable. Its models, and each model's sizes and seconds, come from openai_models:
    # {"model": {"sizes": ["1280x720"], "seconds": [4, 8], "image": true}} (docs/providers.md).
    openai_base_url: str | None = None
    openai_models: Annotated[dict[str, dict[str, object]], NoDecode] = Field(default_factory=dict)
    openai_webhook_secret: str | None = None
    fal_api_key: str | None = None
    fal_base_url: str = DEFAULT_BASE_URLS["fal"]
    fal_model: str = "fal-ai/kling-video/v2/master/text-to-video"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    google_api_key: str | None = None
    google_base_url: str = DEFAULT_BASE_URLS["google"]
    luma_api_key: str | None = None
    luma_base_url: str = DEFAULT_BASE_URLS["luma"]
    webhook_tolerance_seconds: int = 300

    # --- outgoing webhooks (docs/webhooks.md) --------------------------------------------
    # Receivers on loopback, private and link-local addresses, and plain http (development,
    # tests). Cloud metadata addresses stay refused.
    webhook_allow_private: bool = False
    # Failed deliveries wait base·2ⁿ seconds (with jitter, at most the cap) and are given up
    # once the event is older than the window.
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_cap_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_window_seconds: float = Field(default=24 * 3600.0, ge=0)
    # One delivery, from resolving the receiver's name to its answer's status line.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1)  # deliveries in flight per worker
    # How often an idle worker looks for due deliveries.
    webhook_poll_seconds: float = Field(default=1.0, gt=0)

    @field_validator("provider_concurrency", mode="before")
    @classmethod
    def _parse_limits(cls, value: object) -> object:
        # Accept "runway=2,fal=4" as well as JSON.
        if isinstance(value, str) and value.lstrip().startswith("{"):
            return json.loads(value)
        if isinstance(value, str) and value:
            limits: dict[str, int] = {}
            for part in value.split(","):
                name, _, number = part.partition("=")
                limits[name.strip()] = int(number)
            return limits
        return value

    @field_validator("openai_models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("ws_allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    # --- derived values -------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite://{(self.data_dir / 'vidgen.sqlite3').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_media_root(self) -> Path:
        return (self.media_root or self.data_dir / "media").resolve()

    @property
    def resolved_storage_url(self) -> str:
        """``VIDGEN_STORAGE_URL``, or the media root as a ``file://`` URL."""
        return self.storage_url or self.resolved_media_root.as_uri()

    @property
    def run_embedded_worker(self) -> bool:
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.is_sqlite

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @cached_property
    def resolved_secret_key(self) -> str:
        """The signing secret.

        In the embedded mode (SQLite) a missing key is generated once and kept in the data
        folder; with any other database a missing key is a configuration error, because
        several processes must agree on it.
        """
        if self.secret_key:
            return self.secret_key
        if not self.is_sqlite:
            raise errors.ConfigurationError(
                "VIDGEN_SECRET_KEY must be set when VIDGEN_DATABASE_URL is not SQLite "
                "(every API and worker process must share the same key)."
            )
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(key)
        tmp.chmod(0o600)
        tmp.replace(path)
        return path.read_text().strip()

    def provider_api_key(self, provider: str) -> str | None:
        return getattr(self, f"{provider}_api_key", None)

    def provider_base_url(self, provider: str) -> str | None:
        return getattr(self, f"{provider}_base_url", None)

    def check(self) -> None:
        """Fail early with a clear message on an unusable configuration."""
        _ = self.resolved_secret_key
        url = self.resolved_database_url
        if url.split("://", 1)[0] not in {"sqlite", "postgres", "asyncpg", "psql"}:
            raise errors.ConfigurationError(
                "VIDGEN_DATABASE_URL must start with sqlite://, postgres:// or asyncpg://"
            )
        from vidgen.media.storage.location import parse_location

        try:
            location = parse_location(self.resolved_storage_url)
        except ValueError as exc:
            raise errors.ConfigurationError(str(exc)) from exc
        if self.media_redirect and location.scheme != "s3":
            raise errors.ConfigurationError(
                "VIDGEN_MEDIA_REDIRECT needs an object store (VIDGEN_STORAGE_URL=s3://...)."
            )


def known_env_vars() -> set[str]:
    """Every ``VIDGEN_*`` name the settings understand (used to check deploy files)."""
    names = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.startswith("VIDGEN_")}
        else:
            names.add(f"VIDGEN_{name.upper()}")
    return names
