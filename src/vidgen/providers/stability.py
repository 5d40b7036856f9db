"""Stability AI Stable Video Diffusion (api.stability.ai): image-to-video only.

Start with a multipart upload, then poll the result URL: 202 while running, 200 when done.
The result is asked for as JSON, the one form whose body documents the finish reason
(``CONTENT_FILTERED``); it carries the video as base64, so the poll that sees the end also
holds the output. No cancel, no webhooks, no progress. See docs/providers.md ("stability"),
also for whether Stability still serves this API: a 404 on the start route marks the
provider unavailable, with that reason, instead of failing every job.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from pathlib import Path
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
)
from vidgen.providers.http import JPEG_OR_PNG, HttpProvider, fit_image, too_large
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

START_PATH = "/v2beta/image-to-video"
RESULT_PATH = "/v2beta/image-to-video/result/{id}"
MODEL = "stable-video-diffusion"
CATALOG = (
    # The input image must have exactly one of these sizes; it sets the output size. Clip
    # length is not a parameter: SVD-XT renders 25 frames (about 4 s; unconfirmed).
    ModelSpec(
        name=MODEL,
        resolutions=("1024x576", "576x1024", "768x768"),
        text_to_video=False,
        min_duration_seconds=4.0,
        max_duration_seconds=4.0,
        durations=(4.0,),
        inputs=("image", "seed", "cfg_scale", "motion_bucket_id"),
    ),
)
FINISH_OK = "SUCCESS"
# A 5xx on the result: the generation failed, or Stability is down (it answers both so).
GENERATION_ERROR = "generation_error"
GONE = "provider_gone"
VIDEO_TYPE = "video/mp4"


class StabilityProvider(HttpProvider):
    """Stability's image-to-video: ``POST /v2beta/image-to-video``, poll the result URL.

    The input image is scaled and centre-cropped to the requested preset (and re-encoded as
    PNG unless it is a JPEG or PNG already), because the API accepts only those exact sizes
    and types. The prompt is not sent (the API takes none).

    Args:
        settings: Uses ``stability_api_key`` and ``stability_base_url``.
        client: An existing client to use instead of building one.
    """

    name = "stability"
    forbidden_is_policy = True  # Stability's 403 means "flagged by content moderation"
    rate_limit_seconds = 60.0  # "exceeding gives 429 and a 60 s lock-out" (no Retry-After)

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        # Set when the start route answers 404: Stability no longer serves this API here.
        self.gone: str | None = None
        self.capabilities = Capabilities.from_catalog(
            CATALOG,
            output_formats=("mp4",),
            max_prompt_length=1000,
            default_resolution="1024x576",
            webhooks=False,
            cancellable=False,
            min_poll_interval=2.0,
        )

    @property
    def unavailable_reason(self) -> str | None:
        return self.gone or super().unavailable_reason

    async def submit(self, request: GenerationRequest) -> Submission:
        """Upload the (fitted) image and start the generation."""
        if request.input_image is None:
            raise ProviderError(
                "stability only does image-to-video: send an input image.",
                retryable=False,
                code="bad_request",
            )
        image = await asyncio.to_thread(
            fit_image, request.input_image, request.width, request.height, keep_types=JPEG_OR_PNG
        )
        extension = image.content_type.split("/")[-1]
        data: dict[str, str] = {}
        if request.seed is not None:
            data["seed"] = str(request.seed)
        try:
            response = await self._send(
                "POST",
                self.url(START_PATH),
                "submit",
                files={"image": (f"image.{extension}", image.data, image.content_type)},
                data=data,
                headers={"Accept": "application/json"},
            )
        except ProviderError as exc:
            if exc.status_code == 404:
                raise self._withdrawn(exc) from exc
            raise
        with self.errors.translating("submit"):
            generation_id = str(response.json()["id"])
        logger.info(
            "stability generation started",
            extra={"action": "provider.submit", "prediction_id": generation_id},
        )
        return Submission(prediction_id=generation_id, state=State.RUNNING)

    def _withdrawn(self, exc: ProviderError) -> ProviderError:
        """The start route itself is not found: the API is gone (or the base URL wrong)."""
        self.gone = (
            f"Stability answered 404 for POST {START_PATH} at {self.base_url}: its hosted"
            " image-to-video API is not served there (reported discontinued; see"
            " docs/providers.md). Check VIDGEN_STABILITY_BASE_URL, then restart."
        )
        logger.warning(
            "stability image-to-video is not served; provider marked unavailable",
            extra={"action": "provider.gone", "provider": self.name, "error": exc.message},
        )
        return ProviderError(
            f"stability is unavailable: {self.gone}",
            retryable=False,
            code=GONE,
            status_code=404,
        )

    async def poll(self, prediction_id: str) -> PollResult:
        """Ask for the result as JSON: 202 is running; 200 carries the finish reason and,
        on success, the video itself (base64)."""
        url = self.url(RESULT_PATH.format(id=prediction_id))
        try:
            response = await self._send(
                "GET", url, "poll", lost_on_404=True, headers={"Accept": "application/json"}
            )
        except ProviderError as exc:
            if exc.code != "server_error":
                raise
            # Stability reports a failed generation as a 5xx on its result
            # (docs/providers.md): retried like any 5xx, but within the retry budget, not as
            # an outage that may last hours (see vidgen.jobs.retry).
            raise ProviderError(
                f"{exc.message} (a failed generation or an outage: Stability answers both so)",
                retryable=True,
                code=GENERATION_ERROR,
                retry_after=exc.retry_after,
                status_code=exc.status_code,
            ) from exc
        with self.errors.translating("poll"):
            body = response.json()
            if response.status_code == 202:
                return PollResult(state=State.RUNNING, message=body.get("status"))
            finish = str(body["finish_reason"])
            video = body.get("video") if finish == FINISH_OK else None
            if finish == FINISH_OK and not isinstance(video, str):
                raise TypeError("a finished result without its video")
        if finish != FINISH_OK:
            return PollResult(
                state=State.FAILED,
                error=errors.failed(
                    self.name,
                    f"finish reason {finish}",
                    code="content_policy" if "FILTER" in finish else None,
                ),
            )
        return PollResult(
            state=State.SUCCEEDED, progress=1.0, output_url=url, extra={"video_base64": video}
        )

    def download_blocking(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        """Write the video the finished poll carried (base64) to ``dest``; no network."""
        encoded = result.extra.get("video_base64")
        if not isinstance(encoded, str):
            raise ProviderError(
                "stability: the finished result carried no video; polling again.",
                retryable=True,
                code="empty_output",
            )
        # base64: 3 bytes per 4 characters; refuse before decoding what cannot fit.
        if len(encoded) // 4 * 3 - encoded[-2:].count("=") > max_bytes:
            raise too_large(self.name, max_bytes)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProviderError(
                "stability sent a malformed video (not base64).",
                retryable=True,
                code="malformed_response",
            ) from exc
        if not data:
            raise ProviderError(
                "stability returned an empty file.", retryable=True, code="empty_output"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            dest.write_bytes(data)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return VIDEO_TYPE

    async def download(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        return await asyncio.to_thread(self.download_blocking, result, dest, max_bytes=max_bytes)

    async def cancel(self, prediction_id: str) -> None:
        """Stability has no cancel endpoint: nothing to do."""
        return None
