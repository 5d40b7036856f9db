"""Gemini API (Veo) simulator: ``models/{model}:predictLongRunning``, operations, files.

The key goes in ``x-goog-api-key``: a wrong one is 400 INVALID_ARGUMENT with the ErrorInfo
reason ``API_KEY_INVALID`` (Google does not answer 401), a missing one 403. Errors are
google.rpc.Status bodies; a 429 states its wait in a RetryInfo ``retryDelay`` (from
``scenario.retry_after``), not in a Retry-After header. Each model of
:data:`MODELS` takes its own parameters, aspect ratios, resolutions and durations (1080p only
at 8 s). A done operation holds the sample's ``video.uri`` (on the API host, key required),
an ``error`` (outcome "fail": code 3, or ``sim.error_code``), or, for outcome "policy", no
sample but ``raiMediaFilteredCount`` and its reasons. No cancel, no webhooks.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Job, Simulator
from tests.simulators.media import image_info, sample_mp4

STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
VEO3_PARAMETERS = ("aspectRatio", "durationSeconds", "resolution", "negativePrompt")
# model -> (parameters it takes, resolutions by aspect ratio, durations)
MODELS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]], tuple[int, ...]]] = {
    "veo-3.1-generate-preview": (
        VEO3_PARAMETERS,
        {"16:9": ("720p", "1080p"), "9:16": ("720p", "1080p")},
        (4, 6, 8),
    ),
    "veo-3.1-fast-generate-preview": (
        VEO3_PARAMETERS,
        {"16:9": ("720p", "1080p"), "9:16": ("720p", "1080p")},
        (4, 6, 8),
    ),
    "veo-3.0-generate-001": (
        VEO3_PARAMETERS,
        {"16:9": ("720p", "1080p"), "9:16": ("720p",)},
        (4, 6, 8),
    ),
    "veo-3.0-fast-generate-001": (
        VEO3_PARAMETERS,
        {"16:9": ("720p", "1080p"), "9:16": ("720p",)},
        (4, 6, 8),
    ),
    "veo-2.0-generate-001": (
        ("aspectRatio", "durationSeconds", "negativePrompt"),
        {"16:9": ("720p",), "9:16": ("720p",)},
        (5, 6, 7, 8),
    ),
}
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class GoogleSimulator(Simulator):
    """Veo's long-running operations on the Gemini API."""

    def __init__(self, **kwargs: Any) -> None:
        self.error_code = 3  # google.rpc.Code of a failed operation (3 INVALID_ARGUMENT)
        self.error_message = "The model could not generate a video for this request."
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/v1beta/models/{model}:predictLongRunning", self.create, methods=["POST"]),
            Route("/v1beta/models/{model}/operations/{id}", self.operation, methods=["GET"]),
            Route("/v1beta/files/{id}:download", self.download, methods=["GET"]),
        ]

    def error(self, status: int, message: str, reason: str | None = None) -> Response:
        body: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": STATUS.get(status, "UNKNOWN"),
        }
        details: list[dict[str, Any]] = []
        if reason:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "googleapis.com",
                }
            )
        if status == 429 and self.scenario.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{self.scenario.retry_after}s",
                }
            )
        if details:
            body["details"] = details
        return JSONResponse({"error": body}, status_code=status)

    async def fault(self, route: str, prompt: str | None = None) -> Response | None:
        response = await super().fault(route, prompt)
        if response is not None and response.status_code == 429:
            del response.headers["retry-after"]  # Google states the wait in RetryInfo only
        return response

    def authorized(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key")
        if key == self.api_key:
            return None
        if not key:
            return self.error(
                403,
                "Method doesn't allow unregistered callers (callers without established"
                " identity). Please use API Key or other form of API consumer identity.",
            )
        return self.error(
            400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
        )

    async def create(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        model = request.path_params["model"]
        body: dict[str, Any] = await request.json()
        instances = body.get("instances")
        instance = instances[0] if isinstance(instances, list) and instances else {}
        prompt = str(instance.get("prompt") or "") if isinstance(instance, dict) else ""
        if (fault := await self.fault("submit", prompt)) is not None:
            return fault
        if model not in MODELS:
            return self.error(404, f"models/{model} is not found for API version v1beta.")
        if not prompt:
            return self.error(400, "instances[0].prompt is required.")
        problems = self._problems(model, instance, body.get("parameters") or {})
        if problems:
            return self.error(400, "; ".join(problems))
        self.received.append({**body, "model": model})
        # Jobs are known by the operation's name, the adapter's prediction id.
        name = f"models/{model}/operations/{uuid.uuid4().hex[:12]}"
        job = self.new_job(prompt, job_id=name, body={**body, "model": model})
        return JSONResponse({"name": job.id})

    def _problems(
        self, model: str, instance: dict[str, Any], parameters: dict[str, Any]
    ) -> list[str]:
        takes, resolutions, durations = MODELS[model]
        problems = [
            f"{name} isn't supported by this model." for name in parameters if name not in takes
        ]
        aspect = parameters.get("aspectRatio", "16:9")
        if aspect not in resolutions:
            problems.append(f"aspectRatio {aspect!r} is not supported.")
        resolution = parameters.get("resolution", "720p")
        if "resolution" in parameters and resolution not in resolutions.get(aspect, ()):
            problems.append(f"resolution {resolution!r} is not supported with {aspect}.")
        seconds = parameters.get("durationSeconds", durations[-1])
        if not isinstance(seconds, int) or seconds not in durations:
            problems.append(f"durationSeconds must be one of {durations}.")
        elif resolution != "720p" and seconds != durations[-1]:
            problems.append(f"{resolution} supports only {durations[-1]}s duration.")
        image = instance.get("image")
        if image is not None:
            try:
                found = image_info(
                    base64.b64decode(image.get("bytesBase64Encoded", ""), validate=True)
                )
            except (binascii.Error, ValueError, AttributeError):
                found = None
            if found is None or IMAGE_TYPES.get(found[0]) != image.get("mimeType"):
                problems.append("image: bytesBase64Encoded must hold an image of mimeType.")
        return problems

    def operation_body(self, job: Job, request: Request) -> dict[str, Any]:
        phase, _ = job.phase(self.scenario)
        name = job.id
        if phase in ("queued", "running"):
            return {"name": name, "metadata": {"@type": "GenerateVideoMetadata"}}
        done: dict[str, Any] = {"name": name, "done": True}
        if phase == "failed":
            done["error"] = {"code": self.error_code, "message": self.error_message}
            return done
        generated: dict[str, Any] = {}
        if phase == "succeeded":
            file_id = job.id.rsplit("/", 1)[-1]
            uri = self.url_for(request, f"/v1beta/files/{file_id}:download?alt=media")
            generated["generatedSamples"] = [{"video": {"uri": uri}}]
        else:  # policy: every sample withheld by the safety filters
            generated["raiMediaFilteredCount"] = 1
            generated["raiMediaFilteredReasons"] = [
                "Your prompt could not be submitted: it may violate our policies."
            ]
        done["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta"
            ".PredictLongRunningResponse",
            "generateVideoResponse": generated,
        }
        return done

    async def operation(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        name = f"models/{request.path_params['model']}/operations/{request.path_params['id']}"
        job = self.polled(name)
        if job is None:
            return self.error(404, "Operation not found.")
        return JSONResponse(self.operation_body(job, request))

    async def download(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("download")) is not None:
            return fault
        file_id = request.path_params["id"]
        job = next((j for j in self.jobs.values() if j.id.endswith(f"/{file_id}")), None)
        if job is None or request.query_params.get("alt") != "media":
            return self.error(404, "File not found.")
        return Response(sample_mp4(), media_type="video/mp4")


__all__ = ["MODELS", "GoogleSimulator"]
