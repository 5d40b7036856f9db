"""fal.ai queue API (queue.fal.run): the Kling families of :data:`CATALOG`.

A family (``fal-ai/kling-video/v2/master``) has a ``/text-to-video`` and/or an
``/image-to-video`` endpoint, each with its own input schema: the adapter sends only the
fields that endpoint lists (image-to-video takes no ``aspect_ratio``: the clip follows the
image, which is therefore cropped to the requested preset first). Failure is ``COMPLETED``
with an ``error``; webhooks are per request (``?fal_webhook=``) and signed with Ed25519,
keys from a JWKS URL. See docs/providers.md ("fal").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vidgen.providers import errors
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    Mode,
    ModelSpec,
    PollResult,
    ProviderError,
    State,
    Submission,
    WebhookEvent,
    WebhookRejected,
)
from vidgen.providers.http import HttpProvider, data_uri, fit_image, webhook_timestamp
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

STATES = {"IN_QUEUE": State.QUEUED, "IN_PROGRESS": State.RUNNING, "COMPLETED": State.SUCCEEDED}
# What a cancelled request looks like on GET status is unconfirmed: we assume COMPLETED with
# an error_type naming the cancellation.
CANCELED_ERROR_TYPES = ("request_cancelled", "request_canceled", "cancelled", "canceled")
# fal's infrastructure failures ("Request Error Types": timeouts, runner crashes, scheduling
# and connection problems; 5xx, not billed): another attempt may well succeed. Every other
# error_type (validation such as image_too_large, content_policy_violation, a model's own
# failure) is the request's fault and permanent. A wrong guess here is a one-line change.
RETRYABLE_ERROR_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "generation_timeout",
        "internal_error",
        "internal_server_error",
        "downstream_service_error",
        "downstream_service_unavailable",
    }
)
RETRYABLE_ERROR_PREFIX = "runner_"  # runner_disconnected, runner_scheduling_failure, ...
# Our presets as Kling's aspect ratios (text-to-video's aspect_ratio enum).
ASPECT_RATIOS = {"1280x720": "16:9", "720x1280": "9:16", "960x960": "1:1"}
DURATIONS = (5.0, 10.0)  # DurationEnum "5" | "10"
ENDPOINTS = {Mode.TEXT: "/text-to-video", Mode.IMAGE: "/image-to-video"}
# Each endpoint's input schema (fal.ai/models/<endpoint>/api), as the fields we may send.
TEXT_INPUTS = ("prompt", "duration", "aspect_ratio", "negative_prompt", "cfg_scale")
IMAGE_INPUTS = ("prompt", "image_url", "duration", "negative_prompt", "cfg_scale")
CATALOG = (
    ModelSpec(
        name="fal-ai/kling-video/v2/master",
        resolutions=tuple(ASPECT_RATIOS),
        min_duration_seconds=DURATIONS[0],
        max_duration_seconds=DURATIONS[-1],
        durations=DURATIONS,
        inputs=tuple(dict.fromkeys(TEXT_INPUTS + IMAGE_INPUTS)),
    ),
    # Kling 2.1 standard serves image-to-video only.
    ModelSpec(
        name="fal-ai/kling-video/v2.1/standard",
        resolutions=tuple(ASPECT_RATIOS),
        text_to_video=False,
        min_duration_seconds=DURATIONS[0],
        max_duration_seconds=DURATIONS[-1],
        durations=DURATIONS,
        inputs=IMAGE_INPUTS,
    ),
)
MODE_INPUTS = {Mode.TEXT: TEXT_INPUTS, Mode.IMAGE: IMAGE_INPUTS}
# An input image (cropped to the preset) may be re-encoded; these types go as they are.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


def family(model: str) -> str:
    """``model`` without an endpoint suffix (the catalog's name for it)."""
    for suffix in ENDPOINTS.values():
        model = model.removesuffix(suffix)
    return model


JWKS_MAX_AGE = 24 * 3600.0
# Refetch the JWKS on an unknown signature at most this often (key rotation).
JWKS_REFRESH_FLOOR = 300.0
MAX_REMEMBERED = 2048


class FalProvider(HttpProvider):
    """fal's queue: submit to the model path, poll ``status``, read ``response_url``.

    Text requests go to the family's ``/text-to-video`` endpoint, image requests to its
    ``/image-to-video`` one with the image as an ``image_url`` data URI. The URLs that
    submit returns are used while this process remembers them; otherwise they are rebuilt
    from ``owner/app`` of ``fal_model``.

    Args:
        settings: Uses ``fal_api_key`` (sent as ``Authorization: Key ...``), ``fal_base_url``,
            ``fal_model`` (the default family, or one of its endpoints) and ``fal_jwks_url``.
        client: An existing client to use instead of building one.
    """

    name = "fal"
    auth_scheme = "Key"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.model = family(settings.fal_model)
        self.jwks_url = settings.fal_jwks_url
        self._keys: list[Ed25519PublicKey] = []
        self._keys_fetched_at = -math.inf
        self._urls: OrderedDict[str, dict[str, str]] = OrderedDict()
        known = any(spec.name == self.model for spec in CATALOG)
        self.capabilities = Capabilities.from_catalog(
            CATALOG,
            default_model=self.model if known else None,
            output_formats=("mp4",),
            max_prompt_length=2500,
            default_resolution="1280x720",
            webhooks=True,
            cancellable=True,
            min_poll_interval=2.0,
        )

    @property
    def unavailable_reason(self) -> str | None:
        if self.capabilities.spec(self.model) is None:
            known = ", ".join(spec.name for spec in CATALOG)
            return (
                f"VIDGEN_FAL_MODEL names {self.model!r}, whose inputs vidgen does not know;"
                f" choose one of {known}."
            )
        return super().unavailable_reason

    # --- urls -----------------------------------------------------------------------------
    def _app(self) -> str:
        return "/".join(self.model.split("/")[:2])

    def _request_urls(self, request_id: str) -> dict[str, str]:
        known = self._urls.get(request_id)
        if known:
            return known
        root = self.url(f"/{self._app()}/requests/{request_id}")
        return {
            "status_url": f"{root}/status",
            "response_url": root,
            "cancel_url": f"{root}/cancel",
        }

    def _remember(self, request_id: str, body: Mapping[str, Any]) -> None:
        urls = {
            k: str(body[k]) for k in ("status_url", "response_url", "cancel_url") if body.get(k)
        }
        if len(urls) == 3:
            self._urls[request_id] = urls
            while len(self._urls) > MAX_REMEMBERED:
                self._urls.popitem(last=False)

    # --- protocol -------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> Submission:
        """Enqueue on the model path, with ``?fal_webhook=`` when a URL is given."""
        if request.model:
            request = replace(request, model=family(request.model))
        spec = self.offered_spec(request)
        mode = Mode.IMAGE if request.input_image is not None else Mode.TEXT
        model = spec.name + ENDPOINTS[mode]
        values: dict[str, Any] = {
            "prompt": request.prompt,
            "duration": str(int(round(request.duration_seconds))),
            "aspect_ratio": ASPECT_RATIOS.get(request.resolution, "16:9"),
        }
        if request.input_image is not None:
            # The clip follows the image: crop it to the preset the request asked for.
            image = await asyncio.to_thread(
                fit_image,
                request.input_image,
                request.width,
                request.height,
                keep_types=IMAGE_TYPES,
            )
            values["image_url"] = data_uri(image)
        body = {k: v for k, v in values.items() if k in MODE_INPUTS[mode]}
        params = {"fal_webhook": request.webhook_url} if request.webhook_url else None
        response = await self._send(
            "POST", self.url(f"/{model}"), "submit", json=body, params=params
        )
        with self.errors.translating("submit"):
            queued = response.json()
            request_id = str(queued["request_id"])
            self._remember(request_id, queued)
        logger.info(
            "fal request queued", extra={"action": "provider.submit", "prediction_id": request_id}
        )
        return Submission(prediction_id=request_id, state=State.QUEUED)

    async def poll(self, prediction_id: str) -> PollResult:
        """Status (with logs); on COMPLETED without error, read the result for the file URL."""
        urls = self._request_urls(prediction_id)
        response = await self._send(
            "GET", urls["status_url"], "poll", lost_on_404=True, params={"logs": "1"}
        )
        with self.errors.translating("poll"):
            status = response.json()
            state = STATES[status["status"]]
        if state is State.QUEUED:
            position = status.get("queue_position")
            return PollResult(
                state=state, message=None if position is None else f"queue position {position}"
            )
        if state is State.RUNNING:
            return PollResult(state=state, message=_last_log(status))
        if status.get("error") or status.get("error_type"):
            return self._failure(status.get("error"), status.get("error_type"))
        result = await self._send(
            "GET", status.get("response_url") or urls["response_url"], "result"
        )
        with self.errors.translating("result"):
            return PollResult(
                state=State.SUCCEEDED, progress=1.0, output_url=_video_url(result.json())
            )

    def _failure(self, error: object, error_type: object) -> PollResult:
        kind = str(error_type or "")
        if kind.lower() in CANCELED_ERROR_TYPES:
            return PollResult(state=State.CANCELED, message=kind)
        text = self.errors.scrub(errors_text(error) or "The request failed.")
        detail = f"{text} [{kind}]" if kind else text
        return PollResult(
            state=State.FAILED,
            error=errors.failed(
                self.name, detail, retryable=_transient(kind), provider_code=kind or None
            ),
        )

    async def cancel(self, prediction_id: str) -> None:
        """PUT the cancel URL; already completed (400) or unknown (404) is fine."""
        try:
            await self._send("PUT", self._request_urls(prediction_id)["cancel_url"], "cancel")
        except ProviderError as exc:
            if exc.status_code not in (400, 404):
                raise

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """Verify the Ed25519 signature against fal's JWKS and read the outcome."""
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id = lowered.get("x-fal-webhook-request-id")
        user_id = lowered.get("x-fal-webhook-user-id")
        stamp = lowered.get("x-fal-webhook-timestamp")
        signature_hex = lowered.get("x-fal-webhook-signature")
        if not (request_id and user_id and stamp and signature_hex):
            raise WebhookRejected("Missing X-Fal-Webhook-* signature headers.")
        sent_at = webhook_timestamp(stamp, header="X-Fal-Webhook-Timestamp")
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError as exc:
            raise WebhookRejected("Malformed fal webhook signature.") from exc
        if abs(now - sent_at) > self.settings.webhook_tolerance_seconds:
            raise WebhookRejected("fal webhook timestamp is outside the tolerance.")
        message = "\n".join((request_id, user_id, stamp, hashlib.sha256(body).hexdigest())).encode()
        if not await self._verified(message, signature):
            raise WebhookRejected("No fal webhook key matches the signature.")
        try:
            event = json.loads(body)
            event_request_id = str(event.get("request_id") or request_id)
        except (ValueError, AttributeError, RecursionError) as exc:
            raise WebhookRejected("The webhook body is not JSON.") from exc
        # fal sends no delivery id: the same signed message (fal re-sending it, or anyone
        # replaying it within the tolerance) is the same delivery, known by its signature.
        return WebhookEvent(
            prediction_id=event_request_id,
            result=self._webhook_result(event),
            delivery_id=f"sig-{hashlib.sha256(signature).hexdigest()[:32]}",
        )

    def _webhook_result(self, event: Mapping[str, Any]) -> PollResult | None:
        status = event.get("status")
        if status == "OK":
            try:
                url = _video_url(event.get("payload") or {})
            except (KeyError, TypeError, IndexError):
                return None  # payload_error or odd output: the engine polls instead
            return PollResult(state=State.SUCCEEDED, progress=1.0, output_url=url)
        if status == "ERROR":
            payload = event.get("payload")
            error_type = payload.get("error_type") if isinstance(payload, dict) else None
            return self._failure(event.get("error") or payload, error_type)
        return None

    # --- JWKS -----------------------------------------------------------------------------
    async def _verified(self, message: bytes, signature: bytes) -> bool:
        age = time.monotonic() - self._keys_fetched_at
        if age > JWKS_MAX_AGE:
            await self._refresh_keys()
        if _any_verifies(self._keys, message, signature):
            return True
        if time.monotonic() - self._keys_fetched_at > JWKS_REFRESH_FLOOR:
            await self._refresh_keys()  # a rotated key we have not seen yet
            return _any_verifies(self._keys, message, signature)
        return False

    async def _refresh_keys(self) -> None:
        try:
            with self.errors.translating("jwks"):
                response = await self.client.get(self.jwks_url)
                response.raise_for_status()
                keys = [_public_key(jwk) for jwk in response.json()["keys"]]
        except ProviderError as exc:
            if self._keys:
                logger.warning(
                    "fal JWKS refresh failed; keeping cached keys",
                    extra={"action": "provider.jwks", "error": exc.message},
                )
                return
            raise WebhookRejected("fal's webhook keys could not be fetched.") from exc
        self._keys = [k for k in keys if k is not None]
        self._keys_fetched_at = time.monotonic()


def _transient(error_type: str) -> bool:
    """True for fal's infrastructure error types (worth a new attempt)."""
    kind = error_type.lower()
    return kind in RETRYABLE_ERROR_TYPES or kind.startswith(RETRYABLE_ERROR_PREFIX)


def _public_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey | None:
    if jwk.get("kty") != "OKP" or jwk.get("crv", "Ed25519") != "Ed25519":
        return None
    raw = str(jwk["x"])
    try:
        return Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        )
    except (ValueError, binascii.Error):
        return None


def _any_verifies(keys: list[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


def _last_log(status: Mapping[str, Any]) -> str | None:
    logs = status.get("logs") or []
    if not logs:
        return None
    last = logs[-1]
    return str(last.get("message") if isinstance(last, dict) else last)


def _video_url(output: Mapping[str, Any]) -> str:
    """fal video models answer ``{"video": {"url": ...}}`` (some: ``videos[]``)."""
    video = output.get("video") or output["videos"][0]
    return str(video["url"] if isinstance(video, dict) else video)


def errors_text(error: object) -> str:
    """fal's error details: a string, or validation ``detail[]`` entries."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        return errors_text(error.get("detail") or error.get("msg") or error.get("message") or "")
    if isinstance(error, list):
        return "; ".join(errors_text(e) for e in error)
    return "" if error is None else str(error)
