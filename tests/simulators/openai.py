"""OpenAI-compatible Videos API simulator: ``/v1/videos`` (+ ``/content``) and webhooks.

A gateway serving this API for the models in ``sim.models`` (by default Sora's documented
sizes and seconds, :data:`SORA`). An ``input_reference`` must be a JPEG, PNG or WebP image
(by its bytes, matching its part's content type) of exactly the requested size.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Job, Simulator, dumps, new_whsec
from tests.simulators.common import standard_webhook_headers as sign
from tests.simulators.media import image_info, sample_mp4

# Sora's documented values ("sora-2 only the first two" sizes; sora-2-pro all four), as a
# gateway that routes Sora would take them: model -> (sizes, seconds).
SORA_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SORA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sora-2": (SORA_SIZES[:2], ("4", "8", "12")),
    "sora-2-pro": (SORA_SIZES, ("4", "8", "12")),
}
REFERENCE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class OpenAISimulator(Simulator):
    """The Videos API; ``webhook_secret`` signs project-level ``video.*`` events."""

    def __init__(self, *, webhook_secret: str | None = None, **kwargs: Any) -> None:
        self.webhook_secret = webhook_secret or new_whsec()
        self.poll_after_ms: int | None = None
        self.models = dict(SORA)
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos/{id}", self.get, methods=["GET"]),
            Route("/v1/videos/{id}", self.delete, methods=["DELETE"]),
            Route("/v1/videos/{id}/content", self.content, methods=["GET"]),
        ]

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(
            {"error": {"message": message, "type": kind, "param": None, "code": code}},
            status_code=status,
        )

    async def create(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return self.error(400, "Expected multipart/form-data")
        form = await request.form()
        prompt = str(form.get("prompt") or "")
        fields = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
        reference = form.get("input_reference")
        image = None
        if isinstance(reference, UploadFile):
            data = await reference.read()
            fields["input_reference_type"] = reference.content_type or ""
            fields["input_reference_size"] = str(len(data))
            image = image_info(data)
        await form.close()
        if not prompt:
            return self.error(400, "Missing required parameter: 'prompt'.", "missing_parameter")
        if (fault := await self.fault("submit", prompt)) is not None:
            return fault
        model = fields.get("model", "sora-2")
        if model not in self.models:
            return self.error(400, "Invalid model", "invalid_value")
        sizes, seconds = self.models[model]
        size = fields.get("size", sizes[0])
        if size not in sizes:
            return self.error(400, f"Invalid size {size} for {model}", "invalid_value")
        if fields.get("seconds", seconds[0]) not in seconds:
            return self.error(400, "Invalid seconds", "invalid_value")
        if "input_reference_type" in fields:
            declared = fields["input_reference_type"]
            if image is None or REFERENCE_FORMATS.get(image[0]) != declared:
                return self.error(
                    400, "input_reference must be a JPEG, PNG or WebP image", "invalid_value"
                )
            if f"{image[1][0]}x{image[1][1]}" != size:
                return self.error(
                    400, f"input_reference must match the requested size {size}", "invalid_value"
                )
        self.received.append(fields)
        job = self.new_job(prompt, job_id=f"video_{uuid.uuid4().hex}", body=fields)
        return JSONResponse(self.video(job))

    def video(self, job: Job) -> dict[str, Any]:
        phase, progress = job.phase(self.scenario)
        status = {"queued": "queued", "running": "in_progress", "succeeded": "completed"}.get(
            phase, "failed"
        )
        body: dict[str, Any] = {
            "id": job.id,
            "object": "video",
            "model": job.body.get("model", "sora-2"),
            "status": status,
            "progress": int(progress * 100),
            "created_at": int(job.created),
            "seconds": job.body.get("seconds", "4"),
            "size": job.body.get("size", "720x1280"),
            "prompt": job.prompt,
            "error": None,
        }
        if phase == "policy":
            body["error"] = {"code": "moderation_blocked", "message": "Blocked by moderation."}
        elif phase == "failed":
            body["error"] = {"code": "internal_error", "message": "Video generation failed."}
        elif phase == "canceled":
            body["error"] = {"code": "canceled", "message": "Deleted while in progress."}
        return body

    async def get(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        job = self.polled(request.path_params["id"])
        if job is None:
            return self.error(404, "Video not found", "not_found")
        headers = {}
        if self.poll_after_ms is not None:
            headers["openai-poll-after-ms"] = str(self.poll_after_ms)
        return JSONResponse(self.video(job), headers=headers)

    async def content(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("download")) is not None:
            return fault
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return self.error(404, "Video not found", "not_found")
        if job.phase(self.scenario)[0] != "succeeded":
            return self.error(400, "Video is not ready", "video_not_ready")
        return Response(sample_mp4(), media_type="video/mp4")

    async def delete(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("cancel")) is not None:
            return fault
        job = self.jobs.pop(request.path_params["id"], None)
        if job is None:
            return self.error(404, "Video not found", "not_found")
        job.canceled = True
        return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})

    def webhook_payload(
        self, job: Job, *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        phase, _ = job.phase(self.scenario)
        kind = "video.completed" if phase == "succeeded" else "video.failed"
        body = dumps(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "object": "event",
                "created_at": int(time.time()),
                "type": kind,
                "data": {"id": job.id},
            }
        )
        return sign(secret or self.webhook_secret, body, timestamp=timestamp), body
