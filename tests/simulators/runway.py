"""Runway simulator: ``/v1/{text,image}_to_video``, ``/v1/tasks/{id}`` (GET, DELETE).

A ``promptImage`` data URI is decoded: at most 5 MB, and an image. A DELETE cancels a running
task and deletes any other: either way the task cannot be fetched again (404), as the SDK
documents ("aborted and deleted tasks will not be able to be fetched again").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Job, Simulator
from tests.simulators.media import data_uri_image

RATIOS = {"1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672"}
MODELS = {"gen4.5", "gen4_turbo"}
# text_to_video: gen4.5 only (gen4_turbo is not listed), 1280:720 or 720:1280 only.
TEXT_RATIOS = {"1280:720", "720:1280"}
TEXT_MODELS = {"gen4.5"}
VERSION = "2024-11-06"
MAX_PROMPT = 1000  # UTF-16 code units
MAX_DATA_URI = 5_000_000  # "5 MB as data URI"
MAX_URL = 2048


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def image_problem(value: object) -> str | None:
    """What Runway says about a promptImage string (None: acceptable)."""
    image = str(value or "")
    if image.startswith("data:"):
        if len(image) > MAX_DATA_URI:
            return f"promptImage: a data URI may be at most 5 MB ({len(image)} characters)"
        if data_uri_image(image) is None:
            return "promptImage: the data URI does not hold a readable image"
        return None
    if image.startswith("https://") and len(image) <= MAX_URL:
        return None
    return "promptImage: must be an HTTPS URL or a data URI"


class RunwaySimulator(Simulator):
    """Runway's task API; no webhooks (Runway has none). ``deleted`` keeps DELETEd tasks."""

    def __init__(self, **kwargs: Any) -> None:
        self.deleted: dict[str, Job] = {}
        # The failureCode of a failed task (outcome "fail"), e.g. "INTERNAL"; None: no code.
        self.failure_code: str | None = None
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/text_to_video", self.create, methods=["POST"]),
            Route("/v1/image_to_video", self.create, methods=["POST"]),
            Route("/v1/tasks/{id}", self.task, methods=["GET"]),
            Route("/v1/tasks/{id}", self.delete, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if request.headers.get("x-runway-version") != VERSION:
            return self.error(400, "X-Runway-Version header is required")
        body: dict[str, Any] = await request.json()
        prompt = str(body.get("promptText") or "")
        if (fault := await self.fault("submit", prompt)) is not None:
            return fault
        problems = []
        image_mode = request.url.path.endswith("image_to_video")
        models, ratios = (MODELS, RATIOS) if image_mode else (TEXT_MODELS, TEXT_RATIOS)
        if body.get("model") not in models:
            problems.append(f"model: unsupported for {request.url.path.rsplit('/', 1)[-1]}")
        if body.get("ratio") not in ratios:
            problems.append("ratio: must be one of " + ", ".join(sorted(ratios)))
        if not isinstance(body.get("duration"), int) or not 2 <= body["duration"] <= 10:
            problems.append("duration: must be an integer from 2 to 10")
        if body.get("model") == "gen4.5" and not prompt:
            problems.append("promptText: required")
        if utf16_length(prompt) > MAX_PROMPT:
            problems.append(f"promptText: at most {MAX_PROMPT} UTF-16 code units")
        if image_mode and (problem := image_problem(body.get("promptImage"))) is not None:
            problems.append(problem)
        if problems:
            return self.error(400, "; ".join(problems))
        self.received.append(body)
        job = self.new_job(prompt, body=body)
        return JSONResponse({"id": job.id})

    async def task(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        job = self.polled(request.path_params["id"])
        if job is None:
            return self.error(404, "Task not found")
        return JSONResponse(self.task_body(job, request))

    def task_body(self, job: Job, request: Request) -> dict[str, Any]:
        phase, progress = job.phase(self.scenario)
        task: dict[str, Any] = {
            "id": job.id,
            "createdAt": datetime.fromtimestamp(0, UTC).isoformat(),
        }
        if phase == "queued":
            task["status"] = "PENDING"
        elif phase == "running":
            task.update(status="RUNNING", progress=round(progress, 3))
        elif phase == "succeeded":
            task.update(status="SUCCEEDED", output=[self.url_for(request, f"/files/{job.id}.mp4")])
        elif phase == "policy":
            task.update(
                status="FAILED",
                failure="Your input was flagged by content moderation.",
                failureCode="SAFETY.INPUT.TEXT",
            )
        elif phase == "failed":
            task.update(status="FAILED", failure="The generation failed.")
            if self.failure_code:
                task["failureCode"] = self.failure_code
        else:
            task["status"] = "CANCELLED"
        return task

    async def delete(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("cancel")) is not None:
            return fault
        job = self.jobs.pop(request.path_params["id"], None)
        if job is None:
            return self.error(404, "Task not found")
        # Running tasks are canceled, others deleted: neither can be fetched again.
        job.canceled = job.phase(self.scenario)[0] in ("queued", "running")
        self.deleted[job.id] = job
        return Response(status_code=204)
