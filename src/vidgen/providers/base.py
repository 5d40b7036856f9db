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
import math
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


class Mode(enum.StrEnum):
    """How a generation starts: from the prompt alone, or from an input image too."""

    TEXT = "text"
    IMAGE = "image"

    @property
    def label(self) -> str:
        return "text-to-video" if self is Mode.TEXT else "image-to-video"


class PromptUnit(enum.StrEnum):
    """What a provider's prompt limit counts."""

    CHARACTERS = "characters"  # Unicode code points, Python's len()
    UTF16 = "UTF-16 code units"  # JavaScript's length: a character beyond U+FFFF counts 2


@dataclass(frozen=True)
class Restriction:
    """Where one mode and/or one model accepts less than the provider as a whole.

    ``mode`` / ``model`` left None match every mode / model. ``offered=False`` withdraws what
    matches (a model that has no text-to-video); ``resolutions`` narrows the presets to those
    of them that are also in :attr:`Capabilities.resolutions`.
    """

    mode: Mode | None = None
    model: str | None = None
    offered: bool = True
    resolutions: tuple[str, ...] | None = None

    def matches(self, mode: Mode, model: str | None) -> bool:
        return self.mode in (None, mode) and self.model in (None, model)


def data_uri_length(size: int, content_type: str) -> int:
    """Length of ``data:<content_type>;base64,<payload>`` for ``size`` bytes of payload."""
    return len(f"data:{content_type};base64,") + 4 * math.ceil(size / 3)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; drives validation and the ``providers`` query.

    The top-level fields are the union over modes and models; ``restrictions`` say where a
    mode or a model accepts less (ask :meth:`models_for` and :meth:`resolutions_for`).
    """

    text_to_video: bool
    image_to_video: bool
    resolutions: tuple[str, ...]
    output_formats: tuple[str, ...]  # subset of ("mp4", "webm")
    min_duration_seconds: float
    max_duration_seconds: float
    # Discrete allowed durations, or None when any value in [min, max] is accepted.
    durations: tuple[float, ...] | None = None
    max_prompt_length: int = 1000
    prompt_unit: PromptUnit = PromptUnit.CHARACTERS
    models: tuple[str, ...] = ()
    default_model: str | None = None
    default_resolution: str | None = None
    restrictions: tuple[Restriction, ...] = ()
    # The longest data: URI (prefix included) the provider takes for an input image; a bigger
    # image must go by URL (InputImage.url). None: no documented limit.
    max_inline_image_bytes: int | None = None
    webhooks: bool = False
    cancellable: bool = True
    # Never poll faster than this (Runway documents 5 s).
    min_poll_interval: float = 1.0
    max_poll_interval: float = 30.0

    def supports(self, mode: Mode) -> bool:
        return self.text_to_video if mode is Mode.TEXT else self.image_to_video

    def offers(self, mode: Mode, model: str | None) -> bool:
        """Whether ``model`` (None: the provider's default) does ``mode`` at all."""
        return self.supports(mode) and all(
            r.offered for r in self.restrictions if r.matches(mode, model)
        )

    def models_for(self, mode: Mode) -> tuple[str, ...]:
        """The models that do ``mode``."""
        return tuple(m for m in self.models if self.offers(mode, m))

    def resolutions_for(self, mode: Mode, model: str | None) -> tuple[str, ...]:
        """The presets ``model`` accepts in ``mode`` (empty when it does not do ``mode``)."""
        if not self.offers(mode, model):
            return ()
        narrowing = [
            set(r.resolutions)
            for r in self.restrictions
            if r.resolutions is not None and r.matches(mode, model)
        ]
        return tuple(res for res in self.resolutions if all(res in n for n in narrowing))

    def prompt_length(self, text: str) -> int:
        """``text``'s length in this provider's :attr:`prompt_unit`."""
        if self.prompt_unit is PromptUnit.UTF16:
            return len(text.encode("utf-16-le")) // 2
        return len(text)

    def inlines(self, size: int, content_type: str) -> bool:
        """Whether an image of ``size`` bytes fits the provider's data: URI limit."""
        limit = self.max_inline_image_bytes
        return limit is None or data_uri_length(size, content_type) <= limit

    def image_url(self, image: InputImage) -> str | None:
        """``image.url`` when the image is too big to inline (send that instead of a data:
        URI); None when it fits inline, or has no URL (inline it and let the provider say)."""
        if self.inlines(len(image.data), image.content_type):
            return None
        return image.url


@dataclass(frozen=True)
class InputImage:
    data: bytes
    content_type: str  # image/png, image/jpeg or image/webp (checked by content upstream)
    # A URL the provider can fetch the same image from (a signed https media URL), for
    # images too big to send inline; None: inline only.
    url: str | None = None


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
        unsent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after
        self.status_code = status_code
        # True when the request surely never reached the provider (no connection was made):
        # a submission that failed so cannot have been accepted, nor paid for.
        self.unsent = unsent

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
