"""OpenAI-compatible Videos API (``/v1/videos``): OpenAI's own (shut down 2026-09-24) or a
gateway that serves the same shape (LiteLLM, Open WebUI connections), chosen by base URL.

Webhooks are configured per project, not per request, and signed the Standard Webhooks way.
See providers.md section 4.
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
    PollResult,
    ProviderError,
    Restriction,
    State,
    Submission,
    WebhookEvent,
    WebhookRejected,
)
from vidgen.providers.http import HttpProvider, fit_image, verify_standard_webhook
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

VIDEOS_PATH = "/v1/videos"
MODELS = ("sora-2", "sora-2-pro")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")  # all four: sora-2-pro
# "sora-2 only the first two" (either mode).
SORA_2_SIZES = SIZES[:2]
RESTRICTIONS = (Restriction(model="sora-2", resolutions=SORA_2_SIZES),)
SECONDS = (4.0, 8.0, 12.0)  # 16 and 20 are in newer guide text only (unconfirmed)
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
        # Accept a base URL given with the API version ("https://api.openai.com/v1").
        self.base_url = self.base_url.removesuffix("/v1")
        self.capabilities = Capabilities(
            text_to_video=True,
            image_to_video=True,
            resolutions=SIZES,
            output_formats=("mp4",),
            min_duration_seconds=SECONDS[0],
            max_duration_seconds=SECONDS[-1],
            durations=SECONDS,
            max_prompt_length=4000,
            models=MODELS,
            default_model=MODELS[0],
            default_resolution=SIZES[0],
            restrictions=RESTRICTIONS,
            webhooks=bool(self.webhook_secret),
            cancellable=CANCEL_WITH_DELETE,
            min_poll_interval=2.0,
        )

    def _secrets(self) -> Iterable[str | None]:
        return (self.api_key, self.webhook_secret)

    async def submit(self, request: GenerationRequest) -> Submission:
        """Create a video; an input image goes as the ``input_reference`` file part, fitted to
        the requested size (the API demands they match)."""
        fields = {
            "prompt": request.prompt,
            "model": request.model or MODELS[0],
            "seconds": str(int(round(request.duration_seconds))),
            "size": request.resolution,
        }
        files = None
        if request.input_image is not None:
            image = await asyncio.to_thread(
                fit_image, request.input_image, request.width, request.height
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
