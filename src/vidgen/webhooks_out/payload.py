"""The body of a webhook event: ``{"type": "video.updated", "timestamp", "data"}``.

``data`` is the video as the change left it (the outbox row's copy), in the API's own
terms: its global id, its ``VideoStatus``, and signed media URLs. The body is made once, at
the event's first attempt, and every retry sends the same bytes
(:func:`~vidgen.webhooks_out.outbox.keep_body`): the signed URLs in it expire like any other
(``signed_url_ttl_seconds``), so a receiver that needs the files later asks the API for
fresh ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from vidgen.media.signing import signed_url
from vidgen.models import WebhookDelivery
from vidgen.settings import Settings

EVENT_TYPE = "video.updated"


def global_id(type_name: str, row_id: int) -> str:
    """The Relay global id the API gives this row (``base64("Video:12")``)."""
    return base64.b64encode(f"{type_name}:{row_id}".encode()).decode()


def _media_url(ref: str | None, settings: Settings) -> str | None:
    """A stored file's signed URL, or the provider's own URL as it is."""
    if not ref:
        return None
    if "://" in ref:  # storage keys never hold one (vidgen.media.storage.keys)
        return ref
    return signed_url(
        settings.resolved_public_url,
        ref,
        ttl=settings.signed_url_ttl_seconds,
        secret=settings.resolved_secret_key,
    )


def body(row: WebhookDelivery, settings: Settings) -> str:
    """The JSON text of the event ``row`` records."""
    data: dict[str, Any] = {
        "id": global_id("Video", row.video_id),
        "status": row.video_status.upper(),
        "version": row.version,
        "progress": row.progress,
        "videoUrl": _media_url(row.video_ref, settings),
        "thumbnailUrl": _media_url(row.thumbnail_ref, settings),
        "errorMessage": row.error_message,
    }
    event = {"type": EVENT_TYPE, "timestamp": row.at.astimezone(dt.UTC).isoformat(), "data": data}
    return json.dumps(event, separators=(",", ":"))
