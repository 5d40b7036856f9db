"""Replicate predictions API (api.replicate.com): the video models of :data:`CATALOG`.

Each model has its own input schema; the adapter sends only the inputs a model lists (an
input it does not list is silently dropped by Replicate). Webhooks are per prediction, https
only, and signed the Standard Webhooks way. See docs/providers.md ("replicate").
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
    ModelSpec,
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
# Each model's input schema (replicate.com/<model>/api), as the fields we may send.
CATALOG = (
    # 6 s at 720p; with a first frame the clip takes that image's aspect ratio.
    ModelSpec(
        name="minimax/video-01",
        resolutions=("1280x720",),
        min_duration_seconds=6.0,
        max_duration_seconds=6.0,
        durations=(6.0,),
        inputs=("prompt", "first_frame_image", "subject_reference", "prompt_optimizer"),
    ),
    ModelSpec(
        name="google/veo-2",
        resolutions=("1280x720", "720x1280"),
        min_duration_seconds=5.0,
        max_duration_seconds=8.0,
        durations=(5.0, 6.0, 7.0, 8.0),
        inputs=("prompt", "image", "aspect_ratio", "duration", "seed"),
    ),
)
# The input that carries the starting image, by model.
IMAGE_FIELDS = {"minimax/video-01": "first_frame_image", "google/veo-2": "image"}
ASPECT_RATIOS = {"1280x720": "16:9", "720x1280": "9:16"}
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
        # "owner/name", or "owner/name:<version>" to pin the default model's version.
        self.model, _, version = settings.replicate_model.partition(":")
        self.pinned = {self.model: settings.replicate_model} if version else {}
        known = any(spec.name == self.model for spec in CATALOG)
        self.capabilities = Capabilities.from_catalog(
            CATALOG,
            default_model=self.model if known else None,
            output_formats=("mp4",),
            max_prompt_length=2000,
            default_resolution="1280x720",
            max_inline_image_bytes=MAX_DATA_URI,
            webhooks=True,
            cancellable=True,
            min_poll_interval=2.0,
        )

    def _secrets(self) -> Iterable[str | None]:
        return (self.api_key, self.webhook_secret)

    @property
    def unavailable_reason(self) -> str | None:
        if self.capabilities.spec(self.model) is None:
            known = ", ".join(spec.name for spec in CATALOG)
            return (
                f"VIDGEN_REPLICATE_MODEL names {self.model!r}, whose inputs vidgen does not "
                f"know; choose one of {known}."
            )
        return super().unavailable_reason

    async def submit(self, request: GenerationRequest) -> Submission:
        """Create a prediction (with a webhook when the request carries an https URL)."""
        spec = self.offered_spec(request)
        model = spec.name
        payload: dict[str, Any] = {"input": self._input(request, spec)}
        if (pinned := self.pinned.get(model)) is not None and _VERSION.match(pinned):
            payload["version"] = pinned
            path = "/v1/predictions"
        else:
            path = f"/v1/models/{model}/predictions"
        if request.webhook_url and request.webhook_url.startswith("https://"):
            payload["webhook"] = request.webhook_url
            payload["webhook_events_filter"] = list(WEBHOOK_EVENTS)
        elif request.webhook_url:
            # Replicate takes https webhooks only: a plain-http public URL would be refused.
            logger.info(
                "replicate webhook not sent: Replicate delivers to https URLs only "
                "(VIDGEN_PUBLIC_URL is http); the job polls instead",
                extra={"action": "provider.webhook_skipped", "provider": self.name},
            )
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

    def _input(self, request: GenerationRequest, spec: ModelSpec) -> dict[str, Any]:
        """The inputs ``spec``'s schema lists; an image goes as a data URL, or by its URL
        when too big for one."""
        values: dict[str, Any] = {"prompt": request.prompt}
        if (image := request.input_image) is not None:
            values[IMAGE_FIELDS[spec.name]] = self.capabilities.image_url(image) or data_uri(image)
        if spec.takes("aspect_ratio"):
            values["aspect_ratio"] = ASPECT_RATIOS.get(request.resolution, "16:9")
        if spec.takes("duration"):
            values["duration"] = int(round(request.duration_seconds))
        if request.seed is not None and spec.takes("seed"):
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
