"""Provider callbacks: ``POST /webhooks/{provider}``.

The provider verifies its own signature (:meth:`Provider.parse_webhook`); a rejected
delivery is answered 401 and changes nothing, and so is one whose headers or body cannot even
be read (non-ASCII signature, absurd timestamp): a bad delivery is the sender's fault, never a
500. A verified one only wakes the job that runs the prediction (the worker then polls the
provider, the one source of truth, no sooner than its minimum poll interval), and a delivery
id seen before is ignored. An unknown prediction is answered 200 (and logged) so providers do
not retry it forever. A delivery whose nudge cannot be published (the event bus is down) is
answered 503 with ``Retry-After`` and not remembered, so the provider's retry wakes the job;
so is one whose prediction cannot be looked up because the database is unreachable (a
transient error, see :mod:`vidgen.jobs.transient`), rather than a bare 500.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidgen.events.bus import PublishFailed
from vidgen.jobs import webhooks
from vidgen.providers.base import WebhookRejected
from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 1024 * 1024
# What reading a hostile or garbled delivery can raise in a parser before it has decided
# (UnicodeError and json's errors are ValueErrors).
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)
# When to come back after a 503 for an unreachable event bus (providers retry on their own
# schedule; those that read the header wait this long).
RETRY_AFTER_SECONDS = 10


def webhook_routes(runtime: Runtime) -> list[Route]:
    """The webhook route, bound to this process's providers and bus (and its own memory of
    the deliveries it has seen)."""
    deliveries = webhooks.RecentDeliveries()

    async def receive(request: Request) -> Response:
        name = request.path_params["provider"]
        provider = runtime.providers.get(name)
        if provider is None:
            return JSONResponse({"error": f"unknown provider {name!r}"}, status_code=404)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            event = await provider.parse_webhook(request.headers, bytes(body), now=time.time())
        except WebhookRejected as exc:
            logger.warning(
                "webhook rejected",
                extra={"action": "webhook.rejected", "provider": name, "reason": str(exc)},
            )
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        except _UNREADABLE as exc:
            logger.warning(
                "webhook unreadable",
                extra={"action": "webhook.rejected", "provider": name, "reason": repr(exc)},
            )
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        try:
            video_id = await webhooks.notify_webhook(
                provider=name, event=event, bus=runtime.bus, deliveries=deliveries
            )
        except PublishFailed:  # logged by notify_webhook
            return _retry_later()
        except webhooks.LookupUnavailable as exc:
            logger.warning(
                "webhook deferred: database unavailable",
                extra={"action": "webhook.deferred", "provider": name, "error": str(exc)},
            )
            return _retry_later()
        return JSONResponse({"ok": True, "known": video_id is not None})

    return [Route("/webhooks/{provider}", receive, methods=["POST"])]


def _retry_later() -> Response:
    return JSONResponse(
        {"error": "temporarily unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
