"""Stability simulator: ``POST /v2beta/image-to-video`` and its result endpoint.

The prompt never reaches Stability, so magic prompt words do nothing here: script
``scenario`` instead (``outcome="policy"`` answers 200 with ``CONTENT_FILTERED``;
``outcome="fail"`` answers the result with a 500).

The finish reason is documented in the JSON result only: asked for as ``video/*``, a result
comes without a ``finish-reason`` header, whatever the outcome. ``sim.discontinued = True``
answers the start route with 404, as a withdrawn API would. The uploaded image must be a
JPEG or PNG (by its bytes and by its part's content type) of one of the three sizes.
"""

from __future__ import annotations

import base64
import io
import secrets
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Simulator
from tests.simulators.media import sample_mp4

SIZES = {(1024, 576), (576, 1024), (768, 768)}


class StabilitySimulator(Simulator):
    """Stable Video Diffusion's two endpoints; no cancel, no webhooks."""

    def __init__(self, **kwargs: Any) -> None:
        self.discontinued = False
        self.accepts: list[str] = []  # the Accept header of each result request
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/v2beta/image-to-video", self.create, methods=["POST"]),
            Route("/v2beta/image-to-video/result/{id}", self.result, methods=["GET"]),
        ]

    def error(self, status: int, message: str) -> Response:
        name = {
            400: "bad_request",
            401: "unauthorized",
            403: "content_moderation",
            404: "not_found",
            429: "rate_limit_exceeded",
        }.get(status, "server_error")
        return JSONResponse(
            {"id": secrets.token_hex(16), "name": name, "errors": [message]}, status_code=status
        )

    async def create(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("submit")) is not None:
            return fault
        if self.discontinued:
            return self.error(404, "Not found")
        form = await request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            return self.error(400, "image: required")
        data = await upload.read()
        part_type = upload.content_type or ""
        await form.close()
        if part_type not in ("image/jpeg", "image/png"):
            return self.error(400, f"image: content type {part_type!r} is not JPEG or PNG")
        try:
            with Image.open(io.BytesIO(data)) as image:
                size, kind = image.size, image.format
        except OSError:
            return self.error(400, "image: not a JPEG or PNG")
        if kind not in ("PNG", "JPEG"):
            return self.error(400, "image: must be JPEG or PNG")
        if size not in SIZES:
            return self.error(400, f"image: dimensions {size[0]}x{size[1]} are not supported")
        fields: dict[str, Any] = {k: v for k, v in form.items() if k != "image"}
        self.received.append({**fields, "image_size": f"{size[0]}x{size[1]}"})
        job = self.new_job("", job_id=secrets.token_hex(32), body=fields)
        return JSONResponse({"id": job.id})

    async def result(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        self.accepts.append(request.headers.get("accept", ""))
        job = self.polled(request.path_params["id"])
        if job is None:
            return self.error(404, "generation not found or expired")
        phase, _ = job.phase(self.scenario)
        if phase in ("queued", "running"):
            return JSONResponse({"id": job.id, "status": "in-progress"}, status_code=202)
        if phase == "failed":
            return self.error(500, "The generation failed")
        finish = "CONTENT_FILTERED" if phase == "policy" else "SUCCESS"
        if "application/json" in request.headers.get("accept", ""):
            video = base64.b64encode(sample_mp4()).decode() if finish == "SUCCESS" else ""
            return JSONResponse({"video": video, "finish_reason": finish, "seed": 42})
        job.polls -= 1  # a download re-reads the same finished result
        return Response(sample_mp4(), media_type="video/mp4")
