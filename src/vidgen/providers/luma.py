"""Luma Dream Machine API (api.lumalabs.ai/dream-machine): Ray 2 text- and image-to-video.

``POST /v1/generations/video`` answers a Generation whose ``state`` goes ``queued`` →
``dreaming`` → ``completed`` (``assets.video``) | ``failed`` (``failure_reason``). An input
image is a keyframe (``frame0``) given by URL only: no data URI, so image-to-video needs this
server's public https address. ``callback_url`` callbacks carry the Generation but are not
signed, so a callback is only a hint: the generation it names is fetched with the API key,
and only a generation of ours, in the state the API reports, counts. ``DELETE`` removes a
generation. See docs/providers.md ("luma").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
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
from vidgen.providers.http import HttpProvider
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

GENERATIONS = "/v1/generations"
DEFAULT_MODEL = "ray-2"
# Our presets as Luma's aspect_ratio and resolution (nominal pixel sizes: the stored video
# records the real ones).
PRESETS = {
    "960x540": ("16:9", "540p"),
    "540x960": ("9:16", "540p"),
    "1280x720": ("16:9", "720p"),
    "720x1280": ("9:16", "720p"),
    "1920x1080": ("16:9", "1080p"),
    "1080x1920": ("9:16", "1080p"),
}
DURATIONS = (5.0, 9.0)  # "5s" | "9s"
# lumaai-python types/generation_create_params.py (callback_url is sent when we have one).
INPUTS = (
    "prompt",
    "model",
    "aspect_ratio",
    "resolution",
    "duration",
    "loop",
    "keyframes",
    "callback_url",
)
CATALOG = tuple(
    ModelSpec(
        name=name,
        resolutions=tuple(PRESETS),
        min_duration_seconds=DURATIONS[0],
        max_duration_seconds=DURATIONS[-1],
        durations=DURATIONS,
        inputs=INPUTS,
    )
    for name in (DEFAULT_MODEL, "ray-flash-2")
)
STATES = {
    "queued": State.QUEUED,
    "dreaming": State.RUNNING,
    "completed": State.SUCCEEDED,
    "failed": State.FAILED,
}


class LumaProvider(HttpProvider):
    """Luma's generations: create, get, delete; unsigned callbacks confirmed by a GET.

    Args:
        settings: Uses ``luma_api_key`` and ``luma_base_url`` (the API root, without
            ``/v1``).
        client: An existing client to use instead of building one.
    """

    name = "luma"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.capabilities = Capabilities.from_catalog(
            CATALOG,
            default_model=DEFAULT_MODEL,
            output_formats=("mp4",),
            max_prompt_length=5000,  # unconfirmed: Luma documents no limit
            default_resolution="1280x720",
            # Keyframe images go by URL only.
            max_inline_image_bytes=0,
            webhooks=True,
            cancellable=True,
            min_poll_interval=2.0,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        """Create a generation; an input image goes as keyframe ``frame0`` by its URL."""
        model = self.offered_spec(request).name
        aspect, resolution = PRESETS.get(request.resolution, ("16:9", "720p"))
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "model": model,
            "aspect_ratio": aspect,
            "resolution": resolution,
            "duration": f"{int(round(request.duration_seconds))}s",
        }
        if (image := request.input_image) is not None:
            if not image.url:
                raise ProviderError(
                    "luma takes input images by URL only: set VIDGEN_PUBLIC_URL to this"
                    " server's public https:// address.",
                    retryable=False,
                    code="bad_request",
                )
            body["keyframes"] = {"frame0": {"type": "image", "url": image.url}}
        if request.webhook_url:
            body["callback_url"] = request.webhook_url
        response = await self._send("POST", self.url(f"{GENERATIONS}/video"), "submit", json=body)
        with self.errors.translating("submit"):
            generation = response.json()
            generation_id = str(generation["id"])
            state = STATES.get(str(generation.get("state")), State.QUEUED)
        logger.info(
            "luma generation created",
            extra={"action": "provider.submit", "prediction_id": generation_id},
        )
        return Submission(prediction_id=generation_id, state=state)

    async def poll(self, prediction_id: str) -> PollResult:
        """GET the generation; 404 means it was deleted (PredictionLost)."""
        response = await self._send(
            "GET", self.url(f"{GENERATIONS}/{prediction_id}"), "poll", lost_on_404=True
        )
        with self.errors.translating("poll"):
            return self._result(response.json())

    def _result(self, generation: Mapping[str, Any]) -> PollResult:
        state = STATES[str(generation["state"])]
        if state is State.SUCCEEDED:
            video = (generation.get("assets") or {}).get("video")
            if not video:
                raise KeyError("assets.video")
            return PollResult(state=state, progress=1.0, output_url=str(video))
        if state is State.FAILED:
            reason = self.errors.scrub(
                str(generation.get("failure_reason") or "The generation failed.")
            )
            # Luma documents no failure codes: its words decide (moderation → policy).
            return PollResult(state=state, error=errors.failed(self.name, reason))
        return PollResult(state=state, message=str(generation["state"]))

    async def cancel(self, prediction_id: str) -> None:
        """DELETE the generation (the only way to stop one); already gone is fine."""
        try:
            await self._send("DELETE", self.url(f"{GENERATIONS}/{prediction_id}"), "cancel")
        except ProviderError as exc:
            if exc.status_code != 404:
                raise

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """Take the callback's generation id as a hint and ask Luma for the truth.

        Luma signs nothing, so the body decides nothing: the id it names is fetched with our
        key, and a generation Luma does not show us (unknown, another account's, or Luma
        not answering) is refused. The delivery id is the generation's id and its state as
        fetched, so a repeated callback for the same state is recognised as one.
        """
        try:
            claimed = json.loads(body)
            generation_id = str(claimed["id"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise WebhookRejected("The callback body is not a generation.") from exc
        if not generation_id or "/" in generation_id or len(generation_id) > 128:
            raise WebhookRejected("The callback names no generation id.")
        try:
            response = await self._send(
                "GET", self.url(f"{GENERATIONS}/{generation_id}"), "callback check"
            )
            with self.errors.translating("callback check"):
                generation = response.json()
                result = self._result(generation)
                state = str(generation["state"])
        except ProviderError as exc:
            raise WebhookRejected(
                f"luma did not confirm generation {generation_id!r}: {exc.message}"
            ) from exc
        return WebhookEvent(
            prediction_id=generation_id, result=result, delivery_id=f"{generation_id}:{state}"
        )
