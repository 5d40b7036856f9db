"""Outgoing webhooks end to end: the API, a worker, and a receiver over real HTTP."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.webhooks_out.conftest import deliveries, generate, secret_of
from tests.webhooks_out.running import working
from tests.webhooks_out.standard_webhooks import verify

STATUSES = ["QUEUED", "PROCESSING", "COMPLETED"]


async def test_every_status_change_arrives_in_order_signed(server, receiver, alice) -> None:
    secret = await secret_of(server, alice)
    assert secret.startswith("whsec_")
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    async with working(server.runtime):
        received = await receiver.wait_for(3)

    events = [verify(secret, r.headers, r.body) for r in received]
    assert [e["type"] for e in events] == ["video.updated"] * 3
    assert [e["data"]["status"] for e in events] == STATUSES
    versions = [e["data"]["version"] for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert all(e["data"]["id"] == video["id"] for e in events)
    assert len({r.webhook_id for r in received}) == 3
    done = events[-1]["data"]
    assert done["progress"] == 1.0 and done["errorMessage"] is None
    # A signed media URL (on the public URL the settings give), served by the app.
    media = urlsplit(done["videoUrl"])
    assert media.path.startswith("/media/") and "sig=" in media.query
    assert (await server.client.get(f"{media.path}?{media.query}")).status_code == 200

    seen = await deliveries(server, alice, video["id"])
    assert [d["status"] for d in seen["webhookDeliveries"]] == ["DELIVERED"] * 3
    assert [d["eventId"] for d in seen["webhookDeliveries"]] == [r.webhook_id for r in received]
    assert [d["version"] for d in seen["webhookDeliveries"]] == versions
    assert all(d["attempts"] == 1 and d["nextAttemptAt"] is None for d in seen["webhookDeliveries"])
