"""Runway (api.dev.runwayml.com): Gen-4.5 / Gen-4 Turbo text- and image-to-video.

Poll only (no webhooks), never faster than every 5 s. See docs/providers.md ("runway").
"""

from __future__ import annotations

import logging
from typing import Any

from vidgen.providers import errors
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    ModelSpec,
    PollResult,
    PromptUnit,
    ProviderError,
    State,
    Submission,
)
from vidgen.providers.http import HttpProvider, data_uri
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

API_VERSION = "2024-11-06"  # X-Runway-Version, required on every request
DEFAULT_MODEL = "gen4.5"
# Runway's "W:H" pixel ratios, offered as our "WxH" presets (image_to_video takes all six).
RATIOS = ("1280x720", "720x1280", "1104x832", "960x960", "832x1104", "1584x672")
DURATIONS = tuple(float(s) for s in range(2, 11))  # gen4.5: 2-10 s (gen4_turbo: unconfirmed)
# What each model's create params list (runwayml/sdk-python image_to_video_create_params /
# text_to_video_create_params); seed and contentModeration are gen4.x only.
INPUTS = ("model", "promptText", "promptImage", "ratio", "duration", "seed")
CATALOG = (
    # text_to_video: gen4.5 only, in 1280:720 or 720:1280.
    ModelSpec(
        name="gen4.5",
        resolutions=RATIOS,
        text_resolutions=("1280x720", "720x1280"),
        min_duration_seconds=DURATIONS[0],
        max_duration_seconds=DURATIONS[-1],
        durations=DURATIONS,
        inputs=INPUTS,
    ),
    ModelSpec(
        name="gen4_turbo",
        resolutions=RATIOS,
        text_to_video=False,
        min_duration_seconds=DURATIONS[0],
        max_duration_seconds=DURATIONS[-1],
        durations=DURATIONS,
        inputs=INPUTS,
    ),
)
MAX_PROMPT = 1000  # UTF-16 code units
# "5 MB as data URI" (16 MB by URL); read as 5,000,000 characters of URI, the stricter guess.
MAX_DATA_URI = 5_000_000

STATES = {
    "PENDING": State.QUEUED,
    "THROTTLED": State.QUEUED,
    "RUNNING": State.RUNNING,
    "SUCCEEDED": State.SUCCEEDED,
    "FAILED": State.FAILED,
    "CANCELLED": State.CANCELED,
}
# failureCode families worth another attempt: INTERNAL (bare, or INTERNAL.BAD_OUTPUT.*: "retry
# allowed but unlikely to help"); INPUT_PREPROCESSING.INTERNAL (retry guidance unconfirmed,
# treated as retryable). A family matches the code itself or any dotted code below it.
RETRYABLE_FAILURES = ("INTERNAL", "INPUT_PREPROCESSING.INTERNAL")
POLICY_FAILURES = ("SAFETY", "INPUT_PREPROCESSING.SAFETY")


def in_family(code: str, families: tuple[str, ...]) -> bool:
    """Whether ``code`` is one of ``families`` or below one ("SAFETY.INPUT.TEXT")."""
    return any(code == family or code.startswith(family + ".") for family in families)


class RunwayProvider(HttpProvider):
    """Runway's task API: ``POST /v1/{text,image}_to_video`` then ``GET /v1/tasks/{id}``.

    Args:
        settings: Uses ``runway_api_key``, ``runway_base_url`` and ``runway_poll_seconds``
            (the polling floor; Runway asks for no more than one poll per 5 s).
        client: An existing client to use instead of building one.
    """

    name = "runway"
    extra_headers = {"X-Runway-Version": API_VERSION}

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.poll_seconds = settings.runway_poll_seconds
        self.capabilities = Capabilities.from_catalog(
            CATALOG,
            default_model=DEFAULT_MODEL,
            output_formats=("mp4",),
            max_prompt_length=MAX_PROMPT,
            prompt_unit=PromptUnit.UTF16,
            default_resolution="1280x720",
            max_inline_image_bytes=MAX_DATA_URI,
            webhooks=False,
            cancellable=True,
            min_poll_interval=self.poll_seconds,
            max_poll_interval=max(30.0, self.poll_seconds),
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        """Start a task; an image goes as a ``data:`` URI, or by its URL when too big for one."""
        spec = self.offered_spec(request)
        model = spec.name
        body: dict[str, Any] = {
            "model": model,
            "promptText": request.prompt,
            "ratio": request.resolution.replace("x", ":"),
            "duration": int(round(request.duration_seconds)),
        }
        if request.seed is not None and spec.takes("seed"):
            body["seed"] = request.seed
        if (image := request.input_image) is not None:
            body["promptImage"] = self.capabilities.image_url(image) or data_uri(image)
            path = "/v1/image_to_video"
        else:
            path = "/v1/text_to_video"
        response = await self._send("POST", self.url(path), "submit", json=body)
        with self.errors.translating("submit"):
            task_id = str(response.json()["id"])
        logger.info(
            "runway task created", extra={"action": "provider.submit", "prediction_id": task_id}
        )
        return Submission(prediction_id=task_id, state=State.QUEUED)

    async def poll(self, prediction_id: str) -> PollResult:
        """Read the task; a 404 means it was deleted (a DELETE cancels a running task and
        deletes it: it cannot be fetched again) or expired (PredictionLost)."""
        response = await self._send(
            "GET", self.url(f"/v1/tasks/{prediction_id}"), "poll", lost_on_404=True
        )
        with self.errors.translating("poll"):
            return self._result(response.json())

    def _result(self, task: dict[str, Any]) -> PollResult:
        state = STATES[task["status"]]
        if state is State.SUCCEEDED:
            outputs = task["output"]
            return PollResult(state=state, progress=1.0, output_url=str(outputs[0]))
        if state is State.FAILED:
            return PollResult(state=state, error=self._failure(task))
        progress = task.get("progress")
        return PollResult(
            state=state,
            progress=float(progress) if progress is not None else None,
            message="throttled" if task["status"] == "THROTTLED" else None,
            poll_after=self.poll_seconds,
        )

    def _failure(self, task: dict[str, Any]) -> ProviderError:
        code = str(task.get("failureCode") or "")
        text = self.errors.scrub(str(task.get("failure") or "The task failed."))
        detail = f"{text} [{code}]" if code else text
        if in_family(code, POLICY_FAILURES):
            return errors.failed(self.name, detail, code="content_policy", provider_code=code)
        # A documented code decides; words in the free text only when there is no code.
        return errors.failed(
            self.name,
            detail,
            retryable=in_family(code, RETRYABLE_FAILURES),
            provider_code=code or None,
        )

    async def cancel(self, prediction_id: str) -> None:
        """DELETE the task (cancels it while pending or running); a gone task is fine."""
        try:
            await self._send("DELETE", self.url(f"/v1/tasks/{prediction_id}"), "cancel")
        except ProviderError as exc:
            if exc.status_code != 404:
                raise
