"""fal queue simulator: submit on the model path, status/result/cancel, JWKS, signed webhooks.

After a cancel the status reads COMPLETED with ``error_type: request_cancelled`` (fal's real
behaviour there is unconfirmed; the adapter's ``CANCELED_ERROR_TYPES`` follows this).

A failed request (``outcome="fail"``) is COMPLETED with ``error`` = ``sim.error_text`` and,
when ``sim.error_type`` is set, that ``error_type`` (e.g. ``runner_disconnected``,
``request_timeout``: fal's infrastructure failures). By default it has none: the model
failed on this input, the request's own fault.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.common import Job, Simulator, dumps
from tests.simulators.media import data_uri_image

USER_ID = "sim-user"
KLING_TEXT: dict[str, Any] = {
    "prompt": str,
    "duration": ("5", "10"),
    "aspect_ratio": ("16:9", "9:16", "1:1"),
    "negative_prompt": str,
    "cfg_scale": (int, float),
}
KLING_IMAGE: dict[str, Any] = {
    "prompt": str,
    "image_url": str,
    "duration": ("5", "10"),
    "negative_prompt": str,
    "cfg_scale": (int, float),
}
# Each endpoint's input schema (fal.ai/models/<endpoint>/api).
ENDPOINTS: dict[str, dict[str, Any]] = {
    "fal-ai/kling-video/v2/master/text-to-video": KLING_TEXT,
    "fal-ai/kling-video/v2/master/image-to-video": KLING_IMAGE,
    "fal-ai/kling-video/v2.1/standard/image-to-video": KLING_IMAGE,
}


def jwk(private_key: Ed25519PrivateKey) -> dict[str, str]:
    """The public half of ``private_key`` as an OKP JWK (``x`` is base64url, unpadded)."""
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}


class FalSimulator(Simulator):
    """fal's queue API; ``signing_key`` signs webhooks and is served at
    ``/.well-known/jwks.json``."""

    auth_scheme = "Key"

    def __init__(self, *, signing_key: Ed25519PrivateKey | None = None, **kwargs: Any) -> None:
        self.signing_key = signing_key or Ed25519PrivateKey.generate()
        self.error_text = "The model could not generate a video from this input."
        self.error_type: str | None = None
        super().__init__(**kwargs)

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/{owner}/{app}/requests/{id}/status", self.status, methods=["GET"]),
            Route("/{owner}/{app}/requests/{id}/cancel", self.cancel, methods=["PUT"]),
            Route("/{owner}/{app}/requests/{id}", self.result, methods=["GET"]),
            Route("/{model:path}", self.submit, methods=["POST"]),
        ]

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [jwk(self.signing_key)]})

    def _urls(self, request: Request, app: str, job_id: str) -> dict[str, str]:
        root = self.url_for(request, f"/{app}/requests/{job_id}")
        return {
            "response_url": root,
            "status_url": f"{root}/status",
            "cancel_url": f"{root}/cancel",
        }

    async def submit(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        model = request.path_params["model"]
        schema = ENDPOINTS.get(model)
        if schema is None:
            return self.error(404, "Application not found")
        body: dict[str, Any] = await request.json()
        prompt = str(body.get("prompt") or "")
        if (fault := await self.fault("submit", prompt)) is not None:
            return fault
        problems = [] if prompt else ["prompt: field required"]
        more, dropped = self.schema_check(body, schema)
        problems += more
        if "image_url" in schema:
            image = str(body.get("image_url") or "")
            if not image.startswith("https://") and data_uri_image(image) is None:
                problems.append("image_url: must be an https URL or a data URI of an image")
        if problems:
            detail = [
                {"loc": ["body", p.split(":")[0]], "msg": p, "type": "value_error"}
                for p in problems
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        self.received.append({**body, "model": model})
        self.dropped.append(dropped)
        job = self.new_job(
            prompt,
            body={**body, "model": model},
            webhook_url=request.query_params.get("fal_webhook"),
        )
        app = "/".join(model.split("/")[:2])
        return JSONResponse(
            {"request_id": job.id, "queue_position": 0, **self._urls(request, app, job.id)}
        )

    def status_body(self, job: Job, request: Request) -> tuple[int, dict[str, Any]]:
        phase, progress = job.phase(self.scenario)
        app = "/".join(str(job.body["model"]).split("/")[:2])
        base = {
            "request_id": job.id,
            "response_url": self._urls(request, app, job.id)["response_url"],
        }
        if phase == "queued":
            return 202, {**base, "status": "IN_QUEUE", "queue_position": 3}
        logs = [
            {
                "message": f"step {int(progress * 100)}%",
                "level": "INFO",
                "source": "user",
                "timestamp": "2026-01-01T00:00:00Z",
            }
        ]
        if phase == "running":
            return 202, {**base, "status": "IN_PROGRESS", "logs": logs}
        done = {**base, "status": "COMPLETED", "logs": logs, "metrics": {"inference_time": 1.0}}
        if phase == "failed":
            done["error"] = self.error_text
            if self.error_type:
                done["error_type"] = self.error_type
        elif phase == "policy":
            done.update(
                error="The content could not be processed because it contained content flagged"
                " by a content checker.",
                error_type="content_policy_violation",
            )
        elif phase == "canceled":
            done.update(error="Request was cancelled", error_type="request_cancelled")
        return 200, done

    async def status(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("poll")) is not None:
            return fault
        job = self.polled(request.path_params["id"])
        if job is None:
            return self.error(404, "Request not found")
        code, body = self.status_body(job, request)
        if request.query_params.get("logs") != "1":
            body.pop("logs", None)
        return JSONResponse(body, status_code=code)

    def output(self, job: Job, request: Request | None = None) -> dict[str, Any]:
        url = self.file_url(f"/files/{job.id}.mp4", request)
        return {"video": {"url": url, "content_type": "video/mp4", "file_name": "out.mp4"}}

    async def result(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("result")) is not None:
            return fault
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return self.error(404, "Request not found")
        phase, _ = job.phase(self.scenario)
        if phase in ("queued", "running"):
            return self.error(400, "Request is still in progress")
        if phase != "succeeded":
            response = JSONResponse({"detail": phase, "error_type": phase}, status_code=422)
            response.headers["X-Fal-Error-Type"] = phase
            return response
        return JSONResponse(self.output(job, request))

    async def cancel(self, request: Request) -> Response:
        if (denied := self.authorized(request)) is not None:
            return denied
        if (fault := await self.fault("cancel")) is not None:
            return fault
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        if job.phase(self.scenario)[0] not in ("queued", "running"):
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        job.canceled = True
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    def webhook_payload(
        self,
        job: Job,
        *,
        timestamp: int | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> tuple[dict[str, str], bytes]:
        phase, _ = job.phase(self.scenario)
        event: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
        if phase == "succeeded":
            event.update(status="OK", payload=self.output(job), error=None)
        elif phase == "failed":
            payload: dict[str, Any] = {"detail": self.error_text}
            if self.error_type:
                payload["error_type"] = self.error_type
            event.update(status="ERROR", payload=payload, error=f"Request failed: {phase}")
        else:
            event.update(
                status="ERROR",
                payload={"detail": f"{phase}", "error_type": f"{phase}"},
                error=f"Request failed: {phase}",
            )
        body = dumps(event)
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = "\n".join((job.id, USER_ID, stamp, hashlib.sha256(body).hexdigest())).encode()
        signature = (signing_key or self.signing_key).sign(message).hex()
        headers = {
            "X-Fal-Webhook-Request-Id": job.id,
            "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature,
        }
        return headers, body


__all__ = ["FalSimulator", "jwk"]
