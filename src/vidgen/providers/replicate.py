"""Replicate predictions API (api.replicate.com): any video model, by default minimax/video-01.

Webhooks are per prediction and signed the Standard Webhooks way. See providers.md section 2.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from vidgen.providers import errors
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    PollResult,
    PredictionLost,
    ProviderError,
    State,
    Submission,
    WebhookEvent,
    WebhookRejected,
)
from vidgen.providers.http import HttpProvider, data_uri, verify_standard_webhook
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

STATES = {
    "starting": State.QUEUED,
    "processing": State.RUNNING,
    "succeeded": State.SUCCEEDED,
    "failed": State.FAILED,
    "canceled": State.CANCELED,
    "aborted": State.CANCELED,  # deadline hit before start: nothing ran, nothing billed
}
# Model input names (model-specific; these are minimax/video-01's).
PROMPT_FIELD = "prompt"
IMAGE_FIELD = "first_frame_image"
WEBHOOK_EVENTS = ("start", "completed")
# "data URLs only for <=256 KB": read as 256,000 characters of URL, the stricter guess.
MAX_DATA_URI = 256_000
# Where output files live; Replicate's docs say fetching them may need the key.
FILE_HOSTS = ("replicate.delivery",)
# A 64-hex version id, alone or after "owner/name:".
_VERSION = re.compile(r"^(?:[\w.-]+/[\w.-]+:)?[0-9a-f]{64}$")
# Progress in a log line, e.g. tqdm's " 45%|████".
_PERCENT = re.compile(r"(\d{1,3})%")


class ReplicateProvider(HttpProvider):
    """Replicate predictions: create, poll, cancel, signed webhooks.

    Args:
        settings: Uses ``replicate_api_key``, ``replicate_base_url``, ``replicate_model``
            (``owner/name`` for an official model, or ``owner/name:<version>``) and
            ``replicate_webhook_secret`` (``whsec_...``).
        client: An existing client to use instead of building one.
    """

    name = "replicate"
    auth_hosts = FILE_HOSTS

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.webhook_secret = settings.replicate_webhook_secret
        super().__init__(settings, **kwargs)
        self.model = settings.replicate_model
        # minimax/video-01: 6 s at 720p, text or first-frame image.
        self.capabilities = Capabilities(
            text_to_video=True,
            image_to_video=True,
            resolutions=("1280x720",),
            output_formats=("mp4",),
            min_duration_seconds=6.0,
            max_duration_seconds=6.0,
            durations=(6.0,),
            max_prompt_length=2000,
            models=(self.model,),
            default_model=self.model,
            default_resolution="1280x720",
            max_inline_image_bytes=MAX_DATA_URI,
            webhooks=True,
            cancellable=True,
            min_poll_interval=2.0,
        )

    def _secrets(self) -> Iterable[str | None]:
        return (self.api_key, self.webhook_secret)

    async def submit(self, request: GenerationRequest) -> Submission:
        """Create a prediction (with a webhook when the request carries a URL)."""
        model = request.model or self.model
        payload: dict[str, Any] = {"input": self._input(request)}
        if _VERSION.match(model):
            payload["version"] = model
            path = "/v1/predictions"
        else:
            path = f"/v1/models/{model}/predictions"
        if request.webhook_url:
            payload["webhook"] = request.webhook_url
            payload["webhook_events_filter"] = list(WEBHOOK_EVENTS)
        response = await self._send("POST", self.url(path), "submit", json=payload)
        with self.errors.translating("submit"):
            prediction = response.json()
            prediction_id = str(prediction["id"])
            state = STATES.get(prediction.get("status", "starting"), State.QUEUED)
        logger.info(
            "replicate prediction created",
            extra={"action": "provider.submit", "prediction_id": prediction_id},
        )
        return Submission(prediction_id=prediction_id, state=state)

    def _input(self, request: GenerationRequest) -> dict[str, Any]:
        """The model's input; an image goes as a data URL, or by its URL when too big."""
        values: dict[str, Any] = {PROMPT_FIELD: request.prompt}
        if (image := request.input_image) is not None:
            values[IMAGE_FIELD] = self.capabilities.image_url(image) or data_uri(image)
        if request.seed is not None:
            values["seed"] = request.seed
        return values

    async def poll(self, prediction_id: str) -> PollResult:
        """GET the prediction; 404 means Replicate forgot it (PredictionLost)."""
        response = await self._send(
            "GET", self.url(f"/v1/predictions/{prediction_id}"), "poll", lost_on_404=True
        )
        with self.errors.translating("poll"):
            return self._result(response.json())

    def _result(self, prediction: Mapping[str, Any]) -> PollResult:
        state = STATES[prediction["status"]]
        logs = str(prediction.get("logs") or "").strip()
        last_line = logs.splitlines()[-1].strip() if logs else None
        if state is State.SUCCEEDED:
            return PollResult(state=state, progress=1.0, output_url=_first_url(prediction))
        if state is State.FAILED:
            message = self.errors.scrub(str(prediction.get("error") or "The prediction failed."))
            return PollResult(state=state, error=errors.failed(self.name, message))
        progress = None
        if last_line and (found := _PERCENT.findall(last_line)):
            progress = min(100, int(found[-1])) / 100.0
        return PollResult(state=state, progress=progress, message=last_line)

    async def cancel(self, prediction_id: str) -> None:
        """POST .../cancel; an already finished or unknown prediction is fine."""
        try:
            await self._send("POST", self.url(f"/v1/predictions/{prediction_id}/cancel"), "cancel")
        except ProviderError as exc:
            if exc.status_code not in (404, 409):
                raise

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """Verify the Standard Webhooks signature; the body is the prediction itself."""
        delivery = verify_standard_webhook(
            headers,
            body,
            secret=self.webhook_secret,
            now=now,
            tolerance=self.settings.webhook_tolerance_seconds,
            provider=self.name,
        )
        try:
            prediction = json.loads(body)
            prediction_id = str(prediction["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("The webhook body is not a prediction.") from exc
        try:
            result = self._result(prediction)
        except (KeyError, TypeError, ValueError, ProviderError):
            result = None  # signed but unexpected: let the engine poll for the truth
        return WebhookEvent(prediction_id=prediction_id, result=result, delivery_id=delivery)


def _first_url(prediction: Mapping[str, Any]) -> str:
    """Video models return a URL, a list of URLs, or an object holding one."""
    output = prediction["output"]
    if output is None and prediction.get("data_removed"):
        raise PredictionLost("replicate removed this prediction's output (kept for 1 h).")
    while not isinstance(output, str):
        if isinstance(output, list):
            output = output[0]
        elif isinstance(output, dict):
            output = output.get("video") or output.get("url") or next(iter(output.values()))
        else:
            raise TypeError("output holds no URL")
    return output
