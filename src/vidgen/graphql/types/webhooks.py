"""Outgoing webhooks as the owner of a video sees them: each status change's delivery."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING, Any

import strawberry

from vidgen import models
from vidgen.graphql.fastpath.field_plans import direct
from vidgen.graphql.types.rows import accepts

if TYPE_CHECKING:
    from vidgen.graphql.context import Context


@strawberry.enum(name="WebhookDeliveryStatus", description="Where a webhook event is.")
class WebhookDeliveryStatusEnum(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@strawberry.type(
    description="One status change of a video POSTed to its webhookUrl (oldest first)."
)
class WebhookDelivery:
    attempts: int = strawberry.field(description="Attempts made so far.")
    last_error: str | None = strawberry.field(
        description="Why the last failed attempt failed (an HTTP status, a timeout...)."
    )
    delivered_at: dt.datetime | None
    version: int = strawberry.field(description="The video's version this event reports.")

    is_type_of = accepts(models.WebhookDelivery)

    @strawberry.field(description="The event's webhook-id header: the same on every retry.")
    @direct
    def event_id(root: Any, context: Context) -> str:
        return root.message_id

    @strawberry.field(
        description="PENDING (waiting, in flight or to be retried), DELIVERED (a 2xx answer) "
        "or FAILED (refused, or still failing after the retry window)."
    )
    @direct
    def status(root: Any, context: Context) -> WebhookDeliveryStatusEnum:
        return WebhookDeliveryStatusEnum(_state(root))

    @strawberry.field(
        description="When a pending event is tried (again); null once delivered or failed."
    )
    @direct
    def next_attempt_at(root: Any, context: Context) -> dt.datetime | None:
        return root.next_attempt_at if _state(root) == "pending" else None


def _state(root: Any) -> str:
    return str(getattr(root.state, "value", root.state))
