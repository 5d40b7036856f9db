"""Stability AI Stable Video Diffusion (api.stability.ai): image-to-video only.

Start with a multipart upload, then poll the result URL: 202 while running, 200 with the video
when done. No cancel, no webhooks, no progress. See providers.md section 3.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vidgen.providers import errors
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    PollResult,
    ProviderError,
    State,
    Submission,
)
from vidgen.providers.http import HttpProvider, fit_image
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

START_PATH = "/v2beta/image-to-video"
RESULT_PATH = "/v2beta/image-to-video/result/{id}"
# The input image must have exactly one of these sizes; it sets the output size.
RESOLUTIONS = ("1024x576", "576x1024", "768x768")
# Clip length is not a parameter; SVD-XT renders 25 frames (about 4 s). Unconfirmed.
DURATIONS = (4.0,)
MODEL = "stable-video-diffusion"
FINISH_OK = "SUCCESS"
FINISH_HEADER = "finish-reason"  # unconfirmed: finish reason as a header on video/* results
# A 5xx on the result: the generation failed, or Stability is down (it answers both so).
GENERATION_ERROR = "generation_error"


class StabilityProvider(HttpProvider):
    """Stability's image-to-video: ``POST /v2beta/image-to-video``, poll the result URL.

    The input image is scaled and centre-cropped to the requested preset, because the API
    accepts only those exact sizes. The prompt is not sent (the API takes none).

    Args:
        settings: Uses ``stability_api_key`` and ``stability_base_url``.
        client: An existing client to use instead of building one.
    """

    name = "stability"
    forbidden_is_policy = True  # Stability's 403 means "flagged by content moderation"
    rate_limit_seconds = 60.0  # "exceeding gives 429 and a 60 s lock-out" (no Retry-After)

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.capabilities = Capabilities(
            text_to_video=False,
            image_to_video=True,
            resolutions=RESOLUTIONS,
            output_formats=("mp4",),
            min_duration_seconds=DURATIONS[0],
            max_duration_seconds=DURATIONS[-1],
            durations=DURATIONS,
            max_prompt_length=1000,
            models=(MODEL,),
            default_model=MODEL,
            default_resolution="1024x576",
            webhooks=False,
            cancellable=False,
            min_poll_interval=2.0,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        """Upload the (fitted) image and start the generation."""
        if request.input_image is None:
            raise ProviderError(
                "stability only does image-to-video: send an input image.",
                retryable=False,
                code="bad_request",
            )
        image = await asyncio.to_thread(
            fit_image, request.input_image, request.width, request.height
        )
        extension = image.content_type.split("/")[-1]
        data: dict[str, str] = {}
        if request.seed is not None:
            data["seed"] = str(request.seed)
        response = await self._send(
            "POST",
            self.url(START_PATH),
            "submit",
            files={"image": (f"image.{extension}", image.data, image.content_type)},
            data=data,
            headers={"Accept": "application/json"},
        )
        with self.errors.translating("submit"):
            generation_id = str(response.json()["id"])
        logger.info(
            "stability generation started",
            extra={"action": "provider.submit", "prediction_id": generation_id},
        )
        return Submission(prediction_id=generation_id, state=State.RUNNING)

    async def poll(self, prediction_id: str) -> PollResult:
        """Ask for the result as video; 202 is running, 200 is done (body left unread)."""
        url = self.url(RESULT_PATH.format(id=prediction_id))
        try:
            async with self._stream("GET", url, "poll", headers={"Accept": "video/*"}) as response:
                content_type = response.headers.get("content-type", "")
                if response.status_code == 202 or content_type.startswith("application/json"):
                    await response.aread()
                    with self.errors.translating("poll"):
                        body = response.json()
                    if response.status_code == 202:
                        return PollResult(state=State.RUNNING, message=body.get("status"))
                    finish = str(body.get("finish_reason") or FINISH_OK)
                else:
                    finish = response.headers.get(FINISH_HEADER, FINISH_OK)
        except ProviderError as exc:
            if exc.code != "server_error":
                raise
            # Stability reports a failed generation as a 5xx on its result (providers.md):
            # retried like any 5xx, but within the retry budget, not as an outage that may
            # last hours (see vidgen.jobs.retry).
            raise ProviderError(
                f"{exc.message} (a failed generation or an outage: Stability answers both so)",
                retryable=True,
                code=GENERATION_ERROR,
                retry_after=exc.retry_after,
                status_code=exc.status_code,
            ) from exc
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
            state=State.SUCCEEDED,
            progress=1.0,
            output_url=url,
            extra={"download_headers": {"Accept": "video/*"}},
        )

    async def cancel(self, prediction_id: str) -> None:
        """Stability has no cancel endpoint: nothing to do."""
        return None
