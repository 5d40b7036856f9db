"""The provider interface: neutral, frozen dataclasses and one Protocol.

Adapters know nothing of the ORM, GraphQL or storage. The job engine drives every provider
the same way::

    submission = await provider.submit(request)          # store submission.prediction_id at once
    while True:
        result = await provider.poll(prediction_id)      # or woken early by a verified webhook
        if result.state is State.SUCCEEDED: break
        if result.state is State.FAILED: raise result.error
        await sleep(max(result.poll_after or 0, capabilities.min_poll_interval) with backoff)
    await provider.download(result, dest_path, max_bytes=...)   # streamed, size-capped
    # ... then the engine stores, probes and thumbnails the file.

A provider whose output is already in this process (no network: the test provider, a local
renderer) may also offer :class:`BlockingDownload`: the engine then writes the output in the
same worker-thread call that probes, thumbnails and stores it (one thread hop per job).

Errors: every failure leaves an adapter as a :class:`ProviderError` whose ``retryable`` flag
the engine acts on (see :mod:`vidgen.providers.errors`, the one place that classifies).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


class State(enum.StrEnum):
    """A provider's status vocabulary mapped onto ours."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; drives validation and the ``providers`` query."""

    text_to_video: bool
    image_to_video: bool
    resolutions: tuple[str, ...]
    output_formats: tuple[str, ...]  # subset of ("mp4", "webm")
    min_duration_seconds: float
    max_duration_seconds: float
    # Discrete allowed durations, or None when any value in [min, max] is accepted.
    durations: tuple[float, ...] | None = None
    max_prompt_length: int = 1000
    models: tuple[str, ...] = ()
    default_model: str | None = None
    default_resolution: str | None = None
    webhooks: bool = False
    cancellable: bool = True
    # Never poll faster than this (Runway documents 5 s).
    min_poll_interval: float = 1.0
    max_poll_interval: float = 30.0


@dataclass(frozen=True)
class InputImage:
    data: bytes
    content_type: str  # image/png, image/jpeg or image/webp (checked by content upstream)


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, already validated against the provider's capabilities."""

    prompt: str
    resolution: str  # "WxH"
    output_format: str  # "mp4" | "webm"
    duration_seconds: float
    model: str | None = None
    input_image: InputImage | None = None
    video_style: str | None = None
    seed: int | None = None
    frame_rate: float | None = None
    # Where the provider may POST status callbacks for this job (None: poll only).
    webhook_url: str | None = None
    # A stable reference for this job (e.g. "video-42"); adapters may send it upstream.
    reference: str | None = None

    @property
    def width(self) -> int:
        return int(self.resolution.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.resolution.split("x")[1])


@dataclass(frozen=True)
class Submission:
    prediction_id: str
    state: State = State.QUEUED
    progress: float | None = None


@dataclass(frozen=True)
class PollResult:
    state: State
    progress: float | None = None  # 0..1 when the provider tells
    message: str | None = None  # queue position, last log line, ...
    output_url: str | None = None  # where the finished video can be downloaded
    error: ProviderError | None = None  # set when state is FAILED
    poll_after: float | None = None  # provider's hint, seconds
    # Adapter-private details needed by download() (e.g. content type, local path).
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified callback: which prediction it is about and, when the body says, its state."""

    prediction_id: str
    result: PollResult | None = None
    delivery_id: str | None = None


class ProviderError(Exception):
    """A provider failure, classified once.

    ``retryable``: timeouts, connection resets, 429 and 5xx. Permanent: validation (400/422),
    auth (401/403; the message names the setting to fix), content policy, a failed prediction.
    ``retry_after`` is the provider's own hint in seconds (Retry-After), when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str = "provider_error",
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after
        self.status_code = status_code

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, retryable={self.retryable}, code={self.code!r},"
            f" retry_after={self.retry_after})"
        )


class PredictionLost(ProviderError):
    """The provider no longer knows the prediction (expired, or a local render died with its
    process). The engine forgets the prediction id and submits again."""

    def __init__(self, message: str = "The provider no longer knows this prediction.") -> None:
        super().__init__(message, retryable=True, code="prediction_lost")


class WebhookRejected(Exception):
    """A webhook whose signature is missing, wrong or stale (answered with 401)."""


@runtime_checkable
class Provider(Protocol):
    """A video generation backend."""

    name: str
    capabilities: Capabilities

    @property
    def available(self) -> bool:
        """True when configured (has its key); unavailable providers refuse jobs."""
        ...

    async def submit(self, request: GenerationRequest) -> Submission: ...

    async def poll(self, prediction_id: str) -> PollResult: ...

    async def cancel(self, prediction_id: str) -> None:
        """Best effort; a provider without cancellation does nothing."""
        ...

    async def download(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        """Write the finished output to ``dest`` (streamed, at most ``max_bytes``; more is a
        permanent ProviderError) and return its content type."""
        ...

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """Verify the signature (raise WebhookRejected) and say which prediction it is for."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BlockingDownload(Protocol):
    """Optional, beside :class:`Provider`: a download that needs no event loop.

    Same contract as :meth:`Provider.download` (write at most ``max_bytes`` to ``dest``, a
    permanent ProviderError beyond that; return the content type), but blocking: the engine
    calls it from a worker thread, in the same call as the rest of the job's media work.
    Offer it only when the output is already at hand (a local file, bytes in memory).
    """

    def download_blocking(self, result: PollResult, dest: Path, *, max_bytes: int) -> str: ...
