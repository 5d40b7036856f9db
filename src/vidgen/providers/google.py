"""Google Veo through the Gemini API (generativelanguage.googleapis.com).

``POST /v1beta/models/{model}:predictLongRunning`` with the API key in ``x-goog-api-key``
answers a long-running operation; its ``name`` is the prediction id, polled with
``GET /v1beta/{name}`` until ``done``. Then either ``error`` (a google.rpc.Status) or
``response.generateVideoResponse`` with the generated samples, each a ``video.uri`` on the
API host fetched with the same key. Safety filtering is not an HTTP error: a done operation
whose samples were all withheld counts them in ``raiMediaFilteredCount`` and says why in
``raiMediaFilteredReasons``. No cancel; no webhooks used (polling). See docs/providers.md
("google").
"""

from __future__ import annotations

import base64
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
)
from vidgen.providers.http import HttpProvider
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

API = "/v1beta"
DEFAULT_MODEL = "veo-3.1-generate-preview"
# Our presets as Veo's aspectRatio and resolution.
PRESETS = {
    "1280x720": ("16:9", "720p"),
    "720x1280": ("9:16", "720p"),
    "1920x1080": ("16:9", "1080p"),
    "1080x1920": ("9:16", "1080p"),
}
# What each model takes (python-genai _GenerateVideosConfig_to_mldev: in the Gemini API mode
# seed, generateAudio, fps and the other Vertex-only fields raise; Veo 2 has no resolution).
VEO3_INPUTS = (
    "prompt",
    "image",
    "negativePrompt",
    "aspectRatio",
    "durationSeconds",
    "resolution",
)
VEO2_INPUTS = ("prompt", "image", "negativePrompt", "aspectRatio", "durationSeconds")


def _veo3(name: str, resolutions: tuple[str, ...], long: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(
        name=name,
        resolutions=resolutions,
        min_duration_seconds=4.0,
        max_duration_seconds=8.0,
        durations=(4.0, 6.0, 8.0),
        long_resolutions=long,
        inputs=VEO3_INPUTS,
    )


CATALOG = (
    # Veo 3.1: 16:9 and 9:16 at 720p or 1080p; 4, 6 or 8 s, and 1080p only at 8 s.
    _veo3(DEFAULT_MODEL, tuple(PRESETS), ("1920x1080", "1080x1920")),
    _veo3("veo-3.1-fast-generate-preview", tuple(PRESETS), ("1920x1080", "1080x1920")),
    # Veo 3.0: 1080p in 16:9 only.
    _veo3("veo-3.0-generate-001", ("1280x720", "720x1280", "1920x1080"), ("1920x1080",)),
    _veo3("veo-3.0-fast-generate-001", ("1280x720", "720x1280", "1920x1080"), ("1920x1080",)),
    # Veo 2: 720p, 5 to 8 s, no resolution parameter.
    ModelSpec(
        name="veo-2.0-generate-001",
        resolutions=("1280x720", "720x1280"),
        min_duration_seconds=5.0,
        max_duration_seconds=8.0,
        durations=(5.0, 6.0, 7.0, 8.0),
        inputs=VEO2_INPUTS,
    ),
)
# google.rpc.Code values of an operation's error that another attempt may cure:
# DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE.
RETRYABLE_CODES = frozenset({4, 8, 10, 13, 14})
POLICY_WORDS = ("usage guidelines", "responsible ai", "rai ")


class GoogleProvider(HttpProvider):
    """Veo on the Gemini API: predictLongRunning, then the operation, then the sample.

    Args:
        settings: Uses ``google_api_key`` (sent as ``x-goog-api-key``, to the API host only)
            and ``google_base_url``.
        client: An existing client to use instead of building one.
    """

    name = "google"
    auth_header = "x-goog-api-key"
    auth_scheme = ""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.capabilities = Capabilities.from_catalog(
            CATALOG,
            default_model=DEFAULT_MODEL,
            output_formats=("mp4",),
            max_prompt_length=1024,  # tokens upstream; characters here (the stricter count)
            default_resolution="1280x720",
            webhooks=False,
            cancellable=False,
            # The SDK's examples poll every 10 s; generations take minutes.
            min_poll_interval=5.0,
            max_poll_interval=30.0,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        """Start the operation; an input image goes inline (base64) as the first frame."""
        spec = self.offered_spec(request)
        model = spec.name
        aspect, resolution = PRESETS.get(request.resolution, ("16:9", "720p"))
        instance: dict[str, Any] = {"prompt": request.prompt}
        if (image := request.input_image) is not None:
            instance["image"] = {
                "bytesBase64Encoded": base64.b64encode(image.data).decode("ascii"),
                "mimeType": image.content_type,
            }
        parameters: dict[str, Any] = {
            "aspectRatio": aspect,
            "durationSeconds": int(round(request.duration_seconds)),
        }
        if spec.takes("resolution"):
            parameters["resolution"] = resolution
        response = await self._send(
            "POST",
            self.url(f"{API}/models/{model}:predictLongRunning"),
            "submit",
            json={"instances": [instance], "parameters": parameters},
        )
        with self.errors.translating("submit"):
            operation = response.json()
            name = str(operation["name"])
        logger.info(
            "google operation started", extra={"action": "provider.submit", "prediction_id": name}
        )
        if operation.get("done"):
            return Submission(prediction_id=name, state=State.RUNNING)
        return Submission(prediction_id=name, state=State.QUEUED)

    async def poll(self, prediction_id: str) -> PollResult:
        """Read the operation; a 404 means Google no longer knows it (PredictionLost)."""
        response = await self._send(
            "GET", self.url(f"{API}/{prediction_id}"), "poll", lost_on_404=True
        )
        with self.errors.translating("poll"):
            return self._result(response.json())

    def _result(self, operation: Mapping[str, Any]) -> PollResult:
        if not operation.get("done"):
            # No progress is documented: the operation's metadata carries times only.
            return PollResult(state=State.RUNNING)
        if (error := operation.get("error")) is not None:
            return PollResult(state=State.FAILED, error=self._failure(error))
        generated = operation["response"]["generateVideoResponse"]
        samples = generated.get("generatedSamples") or []
        uris = [s["video"]["uri"] for s in samples if (s.get("video") or {}).get("uri")]
        if uris:
            return PollResult(state=State.SUCCEEDED, progress=1.0, output_url=str(uris[0]))
        filtered = int(generated.get("raiMediaFilteredCount") or 0)
        reasons = "; ".join(str(r) for r in generated.get("raiMediaFilteredReasons") or [])
        if filtered:
            text = self.errors.scrub(reasons or f"{filtered} video(s) withheld by safety filters")
            return PollResult(
                state=State.FAILED,
                error=errors.failed(self.name, text, code="content_policy"),
            )
        raise TypeError("a done operation with neither samples nor a reason")

    def _failure(self, error: Mapping[str, Any]) -> ProviderError:
        code = error.get("code")
        message = self.errors.scrub(str(error.get("message") or "The operation failed."))
        numeric = code if isinstance(code, int) else None
        said = f"{message} [code {numeric}]" if numeric is not None else message
        if numeric in RETRYABLE_CODES:
            # A documented transient code wins over words in the text.
            return errors.failed(self.name, said, retryable=True, provider_code=str(numeric))
        policy = any(word in message.lower() for word in POLICY_WORDS)
        return errors.failed(self.name, said, code="content_policy" if policy else None)

    async def cancel(self, prediction_id: str) -> None:
        """The Gemini API documents no cancel for video operations: nothing to do."""
        return None
