"""OpenAI-compatible Videos API (``/v1/videos``) as served by gateways (a LiteLLM proxy, an
Open WebUI connection, ...) for many vendors' models.

OpenAI shut its own Videos API down on 2026-09-24, so there is no default host: the provider
is unavailable until ``VIDGEN_OPENAI_BASE_URL`` names a gateway and ``VIDGEN_OPENAI_MODELS``
the models it routes, each with the sizes and seconds it takes (a gateway's model list gives
ids only). Webhooks, where a gateway relays them, are configured per project, not per
request, and signed the Standard Webhooks way. See docs/providers.md ("openai").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from vidgen.providers import errors
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    ModelSpec,
    PollResult,
    ProviderError,
    State,
    Submission,
    WebhookEvent,
    WebhookRejected,
)
from vidgen.providers.http import HttpProvider, fit_image, verify_standard_webhook
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

VIDEOS_PATH = "/v1/videos"
# The create fields of the Videos API (openai-python types/video_create_params.py).
INPUTS = ("prompt", "model", "seconds", "size", "input_reference")
# input_reference: "image/jpeg, image/png, image/webp", at exactly the requested size.
REFERENCE_TYPES = ("image/jpeg", "image/png", "image/webp")
POLL_AFTER_HEADER = "openai-poll-after-ms"
STATES = {
    "queued": State.QUEUED,
    "in_progress": State.RUNNING,
    "completed": State.SUCCEEDED,
    "failed": State.FAILED,
}
POLICY_CODES = ("moderation_blocked", "content_policy_violation", "content_filter")
# Whether DELETE stops a queued/running job is unconfirmed; we send it as a best effort.
CANCEL_WITH_DELETE = True


class OpenAIProvider(HttpProvider):
    """The Videos API: multipart ``POST /v1/videos``, ``GET /v1/videos/{id}``, ``/content``.

    Args:
        settings: Uses ``openai_api_key``, ``openai_base_url`` (a gateway's root, without
            ``/v1``) and ``openai_webhook_secret`` (``whsec_...``).
        client: An existing client to use instead of building one.
    """

    name = "openai"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.webhook_secret = settings.openai_webhook_secret
        super().__init__(settings, **kwargs)
        # Accept a base URL given with the API version ("https://gateway.example/v1").
        self.base_url = self.base_url.removesuffix("/v1")
        common: dict[str, Any] = {
            "output_formats": ("mp4",),
            "max_prompt_length": 4000,
            "webhooks": bool(self.webhook_secret),
            "cancellable": CANCEL_WITH_DELETE,
            "min_poll_interval": 2.0,
        }
        self.catalog_problem: str | None = None
        try:
            catalog = model_catalog(settings.openai_models)
        except (TypeError, ValueError) as exc:
            catalog, self.catalog_problem = (), f"VIDGEN_OPENAI_MODELS is invalid: {exc}"
        if catalog:
            self.capabilities = Capabilities.from_catalog(catalog, **common)
        else:
            self.catalog_problem = self.catalog_problem or (
                "VIDGEN_OPENAI_MODELS lists no models: name the gateway's video models and"
                " the sizes and seconds each takes (docs/providers.md)."
            )
            self.capabilities = Capabilities(
                text_to_video=False,
                image_to_video=False,
                resolutions=(),
                min_duration_seconds=0.0,
                max_duration_seconds=0.0,
                **common,
            )

    @property
    def unavailable_reason(self) -> str | None:
        if not self.base_url:
            return (
                "VIDGEN_OPENAI_BASE_URL is not set: OpenAI shut its own Videos API down on"
                " 2026-09-24, so this provider needs an OpenAI-compatible gateway's URL."
            )
        return super().unavailable_reason or self.catalog_problem

    def _secrets(self) -> Iterable[str | None]:
        return (self.api_key, self.webhook_secret)

    async def submit(self, request: GenerationRequest) -> Submission:
        """Create a video; an input image goes as the ``input_reference`` file part, fitted to
        the requested size (the API demands they match)."""
        model = self.offered_spec(request).name
        fields = {
            "prompt": request.prompt,
            "model": model,
            "seconds": str(int(round(request.duration_seconds))),
            "size": request.resolution,
        }
        files = None
        if request.input_image is not None:
            image = await asyncio.to_thread(
                fit_image,
                request.input_image,
                request.width,
                request.height,
                keep_types=REFERENCE_TYPES,
            )
            extension = image.content_type.split("/")[-1]
            files = {"input_reference": (f"reference.{extension}", image.data, image.content_type)}
        else:
            # Force multipart/form-data even without a file, as the API documents.
            files = {key: (None, value) for key, value in fields.items()}
            fields = {}
        response = await self._send(
            "POST", self.url(VIDEOS_PATH), "submit", data=fields, files=files
        )
        with self.errors.translating("submit"):
            video = response.json()
            video_id = str(video["id"])
            state = STATES.get(video.get("status", "queued"), State.QUEUED)
        logger.info(
            "openai video created", extra={"action": "provider.submit", "prediction_id": video_id}
        )
        return Submission(prediction_id=video_id, state=state)

    async def poll(self, prediction_id: str) -> PollResult:
        """GET the video; progress is 0-100 and becomes 0..1."""
        response = await self._send(
            "GET", self.url(f"{VIDEOS_PATH}/{prediction_id}"), "poll", lost_on_404=True
        )
        with self.errors.translating("poll"):
            result = self._result(response.json())
        raw_ms = response.headers.get(POLL_AFTER_HEADER)
        if raw_ms and raw_ms.isdigit():
            result = PollResult(
                state=result.state,
                progress=result.progress,
                message=result.message,
                output_url=result.output_url,
                error=result.error,
                poll_after=int(raw_ms) / 1000.0,
            )
        return result

    def _content_url(self, video_id: str) -> str:
        return self.url(f"{VIDEOS_PATH}/{video_id}/content")

    def _result(self, video: Mapping[str, Any]) -> PollResult:
        state = STATES[video["status"]]
        if state is State.SUCCEEDED:
            return PollResult(state=state, progress=1.0, output_url=self._content_url(video["id"]))
        if state is State.FAILED:
            return PollResult(state=state, error=self._failure(video.get("error") or {}))
        progress = video.get("progress")
        return PollResult(
            state=state, progress=None if progress is None else min(100.0, float(progress)) / 100
        )

    def _failure(self, error: Mapping[str, Any]) -> ProviderError:
        code = str(error.get("code") or "")
        message = self.errors.scrub(str(error.get("message") or "The video failed."))
        policy = code in POLICY_CODES
        return errors.failed(
            self.name,
            f"{message} [{code}]" if code else message,
            code="content_policy" if policy else code or None,
        )

    async def cancel(self, prediction_id: str) -> None:
        """Best effort: DELETE the video (its effect on a running job is unconfirmed)."""
        if not CANCEL_WITH_DELETE:
            return
        try:
            await self._send("DELETE", self.url(f"{VIDEOS_PATH}/{prediction_id}"), "cancel")
        except ProviderError as exc:
            if exc.retryable or exc.code == "auth":
                raise
            logger.info(
                "openai cancel not accepted",
                extra={"action": "provider.cancel", "prediction_id": prediction_id},
            )

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """Verify the project webhook; ``video.completed`` / ``video.failed`` carry the id."""
        delivery = verify_standard_webhook(
            headers,
            body,
            secret=self.webhook_secret,
            now=now,
            tolerance=self.settings.webhook_tolerance_seconds,
            provider=self.name,
        )
        try:
            event = json.loads(body)
            kind = str(event["type"])
            video_id = str(event["data"]["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("The webhook body is not a video event.") from exc
        result = None
        if kind == "video.completed":
            result = PollResult(
                state=State.SUCCEEDED, progress=1.0, output_url=self._content_url(video_id)
            )
        # video.failed carries no reason: leave result None so the engine polls for it.
        return WebhookEvent(prediction_id=video_id, result=result, delivery_id=delivery)


def model_catalog(configured: Mapping[str, Any]) -> tuple[ModelSpec, ...]:
    """The gateway's models from ``VIDGEN_OPENAI_MODELS``.

    Each entry: ``{"sizes": ["WxH", ...], "seconds": [4, 8, ...], "text": true,
    "image": true}`` (``text`` and ``image`` default to true). Sora's documented values,
    for a gateway that routes it, are the example in docs/providers.md.

    Raises:
        ValueError / TypeError: an entry without sizes or seconds, or with malformed ones.
    """
    catalog = []
    for name, entry in configured.items():
        if not isinstance(entry, Mapping):
            raise TypeError(f"{name}: expected an object with sizes and seconds")
        sizes = tuple(str(size).strip().lower() for size in entry.get("sizes") or ())
        seconds = tuple(sorted(float(value) for value in entry.get("seconds") or ()))
        if not sizes or not seconds:
            raise ValueError(f"{name}: sizes and seconds must both be given")
        for size in sizes:
            width, _, height = size.partition("x")
            if not (width.isdigit() and height.isdigit()):
                raise ValueError(f"{name}: size {size!r} is not WxH")
        catalog.append(
            ModelSpec(
                name=str(name),
                resolutions=sizes,
                min_duration_seconds=seconds[0],
                max_duration_seconds=seconds[-1],
                durations=seconds,
                text_to_video=bool(entry.get("text", True)),
                image_to_video=bool(entry.get("image", True)),
                inputs=INPUTS,
            )
        )
    return tuple(catalog)
