"""Luma Dream Machine simulator: ``/v1/generations/video``, ``/v1/generations/{id}``.

Generations go ``queued`` → ``dreaming`` → ``completed`` (``assets.video``) | ``failed``
(``failure_reason``). The create body is checked against the SDK's schema (model, aspect
ratio, resolution and duration enums; keyframes of type ``image`` need an https URL, not a
data URI; fields the schema does not list are recorded in ``sim.dropped``). ``DELETE``
removes a generation (GET is 404 after). Callbacks are POSTs of the
Generation with no signature at all, as Luma documents them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Job, Simulator, dumps

SCHEMA: dict[str, Any] = {
    "prompt": str,
    "model": ("ray-1-6", "ray-2", "ray-flash-2"),
    "aspect_ratio": ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21"),
    "resolution": ("540p", "720p", "1080p", "4k"),
    "duration": ("5s", "9s"),
    "loop": bool,
    "keyframes": dict,
    "callback_url": str,
    "generation_type": ("video",),
    "concepts": list,
}
MODERATION = "400: prompt not allowed because advanced moderation failed"


class LumaSimulator(Simulator):
    """Luma's generations API; callbacks are unsigned."""

    def __init__(self, **kwargs: Any) -> None:
        self.failure_reason = "Job failed"
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/generations/video", self.create, methods=["POST"]),
            Route("/v1/generations/{id}", self.get, methods=["GET"]),
            Route("/v1/generations/{id}", self.delete, methods=["DELETE"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    async def create(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        body: dict[str, Any] = await request.json()
        prompt = str(body.get("prompt") or "")
        if (fault := await self.fault("submit", prompt)) is not None:
            return fault
        problems, dropped = self.schema_check(body, SCHEMA)
        if "model" not in body:
            problems.append("model: field required")
        for frame, value in (body.get("keyframes") or {}).items():
            problems += _keyframe_problems(frame, value)
        if problems:
            return self.error(400, "; ".join(problems))
        self.received.append(body)
        self.dropped.append(dropped)
        job = self.new_job(prompt, body=body, webhook_url=body.get("callback_url"))
        return JSONResponse(self.generation(job, request), status_code=201)

    def generation(self, job: Job, request: Request | None = None) -> dict[str, Any]:
        phase, _ = job.phase(self.scenario)
        state = {"queued": "queued", "running": "dreaming", "succeeded": "completed"}.get(
            phase, "failed"
        )
        body: dict[str, Any] = {
            "id": job.id,
            "generation_type": "video",
            "state": state,
            "failure_reason": None,
            "created_at": "2026-01-01T00:00:00.000Z",
            "assets": None,
            "model": job.body.get("model"),
            "request": job.body,
        }
        if phase == "succeeded":
            body["assets"] = {"video": self.file_url(f"/files/{job.id}.mp4", request)}
        elif phase == "policy":
            body["failure_reason"] = MODERATION
        elif phase == "failed":
            body["failure_reason"] = self.failure_reason
        return body

    async def get(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        job = self.polled(request.path_params["id"])
        if job is None:
            return self.error(404, "Generation not found")
        return JSONResponse(self.generation(job, request))

    async def delete(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("cancel")) is not None:
            return fault
        job = self.jobs.pop(request.path_params["id"], None)
        if job is None:
            return self.error(404, "Generation not found")
        job.canceled = True
        return Response(status_code=204)

    def webhook_payload(self, job: Job) -> tuple[dict[str, str], bytes]:
        """The callback: the Generation as JSON, unsigned."""
        return {}, dumps(self.generation(job))


def _keyframe_problems(frame: str, value: object) -> list[str]:
    if frame not in ("frame0", "frame1") or not isinstance(value, dict):
        return [f"keyframes.{frame}: not a keyframe"]
    if value.get("type") == "generation":
        return [] if value.get("id") else [f"keyframes.{frame}.id: field required"]
    if value.get("type") != "image":
        return [f"keyframes.{frame}.type: must be image or generation"]
    if not str(value.get("url") or "").startswith("https://"):
        return [f"keyframes.{frame}.url: must be an https URL (data URIs are not accepted)"]
    return []


__all__ = ["LumaSimulator"]
