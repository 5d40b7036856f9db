"""Replicate simulator: predictions (create, get, cancel) and signed webhooks.

It serves the models of :data:`MODELS` only, each with one version id and its input schema:
an unknown model path is 404, an unknown ``version`` 422, a value outside an input's enum
422, and a ``webhook`` that is not an https URL 422. Inputs a model's schema does not list
are dropped silently, as Replicate does, and recorded in ``sim.dropped``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Job, Scenario, Simulator, dumps, new_whsec
from tests.simulators.common import standard_webhook_headers as sign

MAX_DATA_URL = 256_000  # "data URLs only for <=256 KB"
# Each model's input schema (replicate.com/<model>/api): field -> enum, type, or None.
MODELS: dict[str, dict[str, Any]] = {
    "minimax/video-01": {
        "prompt": str,
        "first_frame_image": str,
        "subject_reference": str,
        "prompt_optimizer": bool,
    },
    "google/veo-2": {
        "prompt": str,
        "image": str,
        "aspect_ratio": ("16:9", "9:16"),
        "duration": (5, 6, 7, 8),
        "seed": int,
    },
}
IMAGE_INPUTS = ("first_frame_image", "subject_reference", "image")


def version_of(model: str) -> str:
    """The one version id this simulator serves for ``model`` (64 hex digits)."""
    return hashlib.sha256(model.encode()).hexdigest()


VERSIONS = {version_of(model): model for model in MODELS}


def image_problem(image: str) -> str | None:
    """What Replicate says about a file input (None: acceptable)."""
    if image.startswith("data:image/"):
        if len(image) > MAX_DATA_URL:
            return f"data URLs are only for files up to 256 KB ({len(image)} characters)"
        return None
    if image.startswith(("https://", "http://")):
        return None
    return "must be a URL or data URL"


class ReplicateSimulator(Simulator):
    """Replicate's predictions API; ``webhook_secret`` signs deliveries."""

    def __init__(self, *, webhook_secret: str | None = None, **kwargs: Any) -> None:
        self.webhook_secret = webhook_secret or new_whsec()
        self._base = ""
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models/{owner}/{name}/predictions", self.create, methods=["POST"]),
            Route("/v1/predictions", self.create, methods=["POST"]),
            Route("/v1/predictions/{id}", self.get, methods=["GET"]),
            Route("/v1/predictions/{id}/cancel", self.cancel, methods=["POST"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"detail": message, "status": status}, status_code=status)

    def _model(self, request: Request, body: dict[str, Any]) -> tuple[str | None, Response | None]:
        """The model a create names, or the error Replicate answers."""
        if "owner" in request.path_params:
            model = f"{request.path_params['owner']}/{request.path_params['name']}"
            if model not in MODELS:
                return None, self.error(404, "The requested resource could not be found.")
            return model, None
        version = str(body.get("version") or "")
        name, _, hex_id = version.rpartition(":") if ":" in version else ("", "", version)
        if name == "" and version in MODELS:  # an official model by name
            return version, None
        model = VERSIONS.get(hex_id)
        if model is None or (name and name != model):
            return None, self.error(422, "Invalid version or not permitted.")
        return model, None

    async def create(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        body: dict[str, Any] = await request.json()
        values = body.get("input")
        if not isinstance(values, dict) or not values.get("prompt"):
            return self.error(422, "input.prompt: field required")
        prompt = str(values["prompt"])
        if (fault := await self.fault("submit", prompt)) is not None:
            return fault
        model, refused = self._model(request, body)
        if refused is not None or model is None:
            return refused or self.error(422, "Invalid version or not permitted.")
        problems, dropped = self.schema_check(values, MODELS[model])
        for name in IMAGE_INPUTS:
            image = values.get(name)
            if name in MODELS[model] and image is not None:
                if (problem := image_problem(str(image))) is not None:
                    problems.append(f"{name}: {problem}")
        webhook = body.get("webhook")
        if webhook is not None and not str(webhook).startswith("https://"):
            problems.append("webhook: must be a valid HTTPS URL")
        if problems:
            return self.error(422, "input: " + "; ".join(problems))
        self.received.append(body)
        self.dropped.append(dropped)
        job = self.new_job(prompt, body={**body, "model": model}, webhook_url=webhook)
        self._base = self.url_for(request, "")
        return JSONResponse(self.prediction(job, count=False), status_code=201)

    def prediction(self, job: Job, *, count: bool = True) -> dict[str, Any]:
        phase, progress = job.phase(self.scenario)
        status = {
            "queued": "starting",
            "running": "processing",
            "succeeded": "succeeded",
            "failed": "failed",
            "policy": "failed",
            "canceled": "canceled",
        }[phase]
        body: dict[str, Any] = {
            "id": job.id,
            "model": job.body.get("model"),
            "version": "hidden",
            "input": job.body.get("input"),
            "status": status,
            "output": None,
            "error": None,
            "logs": "",
            "created_at": "2026-01-01T00:00:00Z",
            "urls": {
                "get": f"{self._base}/v1/predictions/{job.id}",
                "cancel": f"{self._base}/v1/predictions/{job.id}/cancel",
            },
        }
        if phase == "running":
            body["logs"] = f"loading\n{int(progress * 100)}%|####      | step"
        elif phase == "succeeded":
            body["output"] = f"{self._base}/files/{job.id}.mp4"
        elif phase == "failed":
            body["error"] = "CUDA error: the model crashed"
        elif phase == "policy":
            body["error"] = "The input or output was flagged as sensitive (E005)"
        return body

    async def get(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        job = self.polled(request.path_params["id"])
        if job is None:
            return self.error(404, "Not found.")
        self._base = self.url_for(request, "")
        return JSONResponse(self.prediction(job))

    async def cancel(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("cancel")) is not None:
            return fault
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return self.error(404, "Not found.")
        if job.phase(self.scenario)[0] in ("queued", "running"):
            job.canceled = True
        return JSONResponse(self.prediction(job))

    def webhook_payload(
        self, job: Job, *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        body = dumps(self.prediction(job))
        stamp = int(time.time()) if timestamp is None else timestamp
        return sign(secret or self.webhook_secret, body, timestamp=stamp), body


__all__ = ["MODELS", "ReplicateSimulator", "Scenario", "version_of"]
