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
renderer, bytes that came with the poll) may also offer ``download_blocking(result, dest, *,
max_bytes) -> content type``, the same contract as :meth:`Provider.download` without an event
loop: the engine then writes the output in the same worker-thread call that probes,
thumbnails and stores it (one thread hop per job).

Errors: every failure leaves an adapter as a :class:`ProviderError` whose ``retryable`` flag
the engine acts on (see :mod:`vidgen.providers.errors`, the one place that classifies).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


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
class ModelSpec:
    """What one model accepts: one row of a provider's model catalog.

    ``resolutions`` are the presets in image-to-video, and in text-to-video too unless
    ``text_resolutions`` narrows them (Runway's text-to-video takes two ratios of six).
    ``durations`` is the discrete set, or None when any value in [min, max] is accepted;
    ``long_resolutions`` are presets that take only the longest of ``durations`` (Veo's
    1080p). ``inputs`` are the request fields the vendor's schema lists for this model: an
    adapter sends no other (a field a model does not list is dropped or refused upstream).
    """

    name: str
    resolutions: tuple[str, ...]
    min_duration_seconds: float
    max_duration_seconds: float
    durations: tuple[float, ...] | None = None
    text_to_video: bool = True
    image_to_video: bool = True
    text_resolutions: tuple[str, ...] | None = None
    long_resolutions: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    def offers(self, mode: Mode) -> bool:
        return self.text_to_video if mode is Mode.TEXT else self.image_to_video

    def resolutions_for(self, mode: Mode) -> tuple[str, ...]:
        """The presets this model takes in ``mode`` (empty when it does not do ``mode``)."""
        if not self.offers(mode):
            return ()
        if mode is Mode.TEXT and self.text_resolutions is not None:
            return self.text_resolutions
        return self.resolutions

    def durations_for(self, resolution: str | None = None) -> tuple[float, ...] | None:
        """The discrete durations at ``resolution`` (None: any value in [min, max])."""
        if self.durations and resolution in self.long_resolutions:
            return (max(self.durations),)
        return self.durations

    def accepts_duration(self, seconds: float, resolution: str | None = None) -> bool:
        allowed = self.durations_for(resolution)
        if allowed:
            return any(abs(seconds - d) < 1e-6 for d in allowed)
        return self.min_duration_seconds <= seconds <= self.max_duration_seconds

    def takes(self, field_name: str) -> bool:
        """Whether the model's schema lists ``field_name`` (an empty list: not described)."""
        return not self.inputs or field_name in self.inputs


def data_uri_length(size: int, content_type: str) -> int:
    """Length of ``data:<content_type>;base64,<payload>`` for ``size`` bytes of payload."""
    return len(f"data:{content_type};base64,") + 4 * math.ceil(size / 3)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; drives validation and the ``providers`` query.

    The top-level fields are the union over modes and models. A provider with a model
    catalog (``catalog``, one :class:`ModelSpec` per model; build it with
    :meth:`from_catalog`) says per model what it accepts: ask :meth:`spec`,
    :meth:`models_for`, :meth:`resolutions_for` and :meth:`durations_for`.
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
    catalog: tuple[ModelSpec, ...] = ()
    # The longest data: URI (prefix included) the provider takes for an input image; a bigger
    # image must go by URL (InputImage.url); 0: images go by URL only. None: no documented
    # limit.
    max_inline_image_bytes: int | None = None
    webhooks: bool = False
    cancellable: bool = True
    # Never poll faster than this (Runway documents 5 s).
    min_poll_interval: float = 1.0
    max_poll_interval: float = 30.0

    @classmethod
    def from_catalog(
        cls, catalog: tuple[ModelSpec, ...], *, default_model: str | None = None, **rest: Any
    ) -> Capabilities:
        """Capabilities whose top-level fields are the union of ``catalog``'s models.

        Args:
            catalog: One entry per model, in listing order (the first is the default unless
                ``default_model`` says otherwise).
            default_model: The model used when a request names none.
            rest: The fields that do not come from the models (output_formats, limits,
                webhooks, poll intervals, default_resolution, ...).
        """
        if not catalog:
            raise ValueError("a model catalog needs at least one model")
        resolutions: dict[str, None] = {}
        for spec in catalog:
            resolutions.update(dict.fromkeys(spec.resolutions))
            resolutions.update(dict.fromkeys(spec.text_resolutions or ()))
        discrete = all(spec.durations for spec in catalog)
        durations = (
            tuple(sorted({d for spec in catalog for d in spec.durations or ()}))
            if discrete
            else None
        )
        return cls(
            text_to_video=any(spec.text_to_video for spec in catalog),
            image_to_video=any(spec.image_to_video for spec in catalog),
            resolutions=tuple(resolutions),
            min_duration_seconds=min(spec.min_duration_seconds for spec in catalog),
            max_duration_seconds=max(spec.max_duration_seconds for spec in catalog),
            durations=durations,
            models=tuple(spec.name for spec in catalog),
            default_model=default_model or catalog[0].name,
            catalog=catalog,
            **rest,
        )

    def supports(self, mode: Mode) -> bool:
        return self.text_to_video if mode is Mode.TEXT else self.image_to_video

    def spec(self, model: str | None) -> ModelSpec | None:
        """The catalog entry of ``model`` (None: the default model); None when unknown or
        when the provider keeps no catalog."""
        name = model or self.default_model
        return next((spec for spec in self.catalog if spec.name == name), None)

    def offers(self, mode: Mode, model: str | None) -> bool:
        """Whether ``model`` (None: the provider's default) does ``mode`` at all."""
        if not self.supports(mode):
            return False
        if not self.catalog:
            return True
        spec = self.spec(model)
        return spec is not None and spec.offers(mode)

    def models_for(self, mode: Mode) -> tuple[str, ...]:
        """The models that do ``mode``."""
        return tuple(m for m in self.models if self.offers(mode, m))

    def resolutions_for(self, mode: Mode, model: str | None) -> tuple[str, ...]:
        """The presets ``model`` accepts in ``mode`` (empty when it does not do ``mode``)."""
        if not self.offers(mode, model):
            return ()
        spec = self.spec(model)
        if spec is None:
            return self.resolutions
        taken = set(spec.resolutions_for(mode))
        return tuple(res for res in self.resolutions if res in taken)

    def durations_for(
        self, model: str | None, resolution: str | None = None
    ) -> tuple[float, ...] | None:
        """The discrete durations ``model`` takes (at ``resolution``), None: a range."""
        spec = self.spec(model)
        return self.durations if spec is None else spec.durations_for(resolution)

    def duration_range_for(self, model: str | None) -> tuple[float, float]:
        spec = self.spec(model)
        if spec is None:
            return self.min_duration_seconds, self.max_duration_seconds
        return spec.min_duration_seconds, spec.max_duration_seconds

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
        """True when usable (configured, and the vendor still serves it); unavailable
        providers refuse jobs. An adapter may also say why in ``unavailable_reason``."""
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


def unavailable_reason(provider: Provider) -> str | None:
    """Why ``provider`` refuses jobs (None when it is available).

    Adapters that can say more (a missing base URL, a discontinued API) expose
    ``unavailable_reason``; for the others the reason is generic.
    """
    if provider.available:
        return None
    said = getattr(provider, "unavailable_reason", None)
    return said if isinstance(said, str) and said else f"{provider.name} is not configured."
