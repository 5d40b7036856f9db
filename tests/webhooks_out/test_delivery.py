"""Outgoing webhooks end to end: the API, a worker, and a receiver over real HTTP."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.webhooks_out.conftest import ROTATE, SHORT_TIMEOUT, deliveries, generate, secret_of
from tests.webhooks_out.receiver import ENDLESS_500, HANG
from tests.webhooks_out.running import delivering, settled, working
from tests.webhooks_out.standard_webhooks import InvalidSignature, verify
from vidgen.jobs import queue

STATUSES = ["QUEUED", "PROCESSING", "COMPLETED"]


async def test_every_status_change_arrives_in_order_signed(server, receiver, alice) -> None:
    secret = await secret_of(server, alice)
    assert secret.startswith("whsec_")
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    async with working(server.runtime):
        received = await receiver.wait_for(3)
        await settled()

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


async def test_a_retried_event_keeps_its_id_and_body(server, receiver, alice) -> None:
    receiver.answer(500, 500, 200)
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    async with delivering(server.runtime):
        received = await receiver.wait_for(3)
        await settled()
    assert [r.answer for r in received] == [500, 500, 200]
    assert len({r.webhook_id for r in received}) == 1
    assert len({r.body for r in received}) == 1
    secret = await secret_of(server, alice)
    assert all(verify(secret, r.headers, r.body)["data"]["status"] == "QUEUED" for r in received)
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert seen["eventId"] == received[0].webhook_id
    assert (seen["status"], seen["attempts"]) == ("DELIVERED", 3)
    assert seen["lastError"] == "HTTP 500: no"  # the last failure stays visible
    assert seen["deliveredAt"] is not None


async def test_a_video_s_later_events_wait_for_the_earlier_one(server, receiver, alice) -> None:
    # The queued event fails twice; the processing one is written meanwhile.
    receiver.answer(503, (429, {"retry-after": "0"}))
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    await queue.claim(worker_id="w", limit=1, lease_seconds=60)
    async with delivering(server.runtime):
        received = await receiver.wait_for(4)
        await settled()
    statuses = [json.loads(r.body)["data"]["status"] for r in received]
    assert statuses == ["QUEUED", "QUEUED", "QUEUED", "PROCESSING"]
    seen = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert [(d["status"], d["attempts"]) for d in seen] == [("DELIVERED", 3), ("DELIVERED", 1)]


async def test_a_refusal_ends_the_event_and_the_next_one_goes(server, receiver, alice) -> None:
    receiver.answer(410)
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    await queue.claim(worker_id="w", limit=1, lease_seconds=60)
    async with delivering(server.runtime):
        received = await receiver.wait_for(2)
        await settled()
    assert [json.loads(r.body)["data"]["status"] for r in received] == ["QUEUED", "PROCESSING"]
    seen = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert [(d["status"], d["attempts"], d["lastError"]) for d in seen] == [
        ("FAILED", 1, "HTTP 410: no"),
        ("DELIVERED", 1, None),
    ]
    assert seen[0]["nextAttemptAt"] is None and seen[0]["deliveredAt"] is None


async def test_a_receiver_that_hangs_or_never_ends_is_cut_off(server, receiver, alice) -> None:
    # One that never answers, one whose error body never ends: each attempt ends at the
    # timeout or after a few bytes, and the event is tried again.
    server.settings.webhook_timeout_seconds = SHORT_TIMEOUT
    receiver.answer(HANG, ENDLESS_500)
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    async with delivering(server.runtime):
        received = await receiver.wait_for(3)
        await settled()
    assert [r.answer for r in received] == [HANG, ENDLESS_500, 204]
    assert len({r.webhook_id for r in received}) == 1
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["attempts"]) == ("DELIVERED", 3)
    last = seen["lastError"]
    assert last.startswith("HTTP 500: error error") and len(last) <= len("HTTP 500: ") + 200


async def test_events_still_failing_after_the_window_are_given_up(server, receiver, alice) -> None:
    server.settings.webhook_retry_window_seconds = 0
    receiver.answer(502)
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    async with delivering(server.runtime):
        await receiver.wait_for(1)
        await settled()
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["attempts"]) == ("FAILED", 1)
    assert seen["lastError"] == "HTTP 502: no (still failing after 0 s)"


async def test_the_address_is_checked_again_when_sending(server, receiver, alice) -> None:
    # Allowed when the videos were made; by the time they are sent, private receivers (and
    # plain http) are not.
    plain = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    tls = receiver.url.replace("http://", "https://")
    secure = await generate(server, alice, prompt="succeed", webhookUrl=tls)
    server.settings.webhook_allow_private = False
    async with delivering(server.runtime):
        await settled()
    assert receiver.requests == []
    [seen] = (await deliveries(server, alice, plain["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["attempts"]) == ("FAILED", 1)
    assert seen["lastError"] == "refused: the URL must be an https URL"
    [seen] = (await deliveries(server, alice, secure["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["attempts"]) == ("FAILED", 1)
    assert seen["lastError"] == (
        "refused: 127.0.0.1 is a loopback, private, link-local or reserved address"
    )


async def test_a_rotated_secret_signs_the_next_event(server, receiver, alice) -> None:
    old = await secret_of(server, alice)
    await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    async with delivering(server.runtime):
        [first] = await receiver.wait_for(1)
        body = await server.gql(ROTATE, token=alice.token)
        new = body["data"]["rotateWebhookSecret"]
        assert new != old and new.startswith("whsec_")
        assert await secret_of(server, alice) == new
        await queue.claim(worker_id="w", limit=1, lease_seconds=60)
        second = (await receiver.wait_for(2))[1]
    assert verify(old, first.headers, first.body)["data"]["status"] == "QUEUED"
    assert verify(new, second.headers, second.body)["data"]["status"] == "PROCESSING"
    with pytest.raises(InvalidSignature):
        verify(old, second.headers, second.body)


async def test_only_the_owner_sees_the_secret_and_the_deliveries(
    server, receiver, alice, user_factory
) -> None:
    admin = await user_factory("admin@example.com", admin=True)
    video = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
    query = """
    query Seen($id: ID!) {
      video(id: $id) { webhookDeliveries { eventId } owner { email webhookSecret } }
    }
    """
    mine = await server.gql(query, {"id": video["id"]}, token=alice.token)
    assert len(mine["data"]["video"]["webhookDeliveries"]) == 1
    assert mine["data"]["video"]["owner"]["webhookSecret"].startswith("whsec_")
    theirs = await server.gql(query, {"id": video["id"]}, token=admin.token)
    assert theirs["data"]["video"] == {
        "webhookDeliveries": None,
        "owner": {"email": "alice@example.com", "webhookSecret": None},
    }
