"""A worker SIGKILLed in the middle of a delivery loses no event: the attempt's lease runs
out, another worker sends the event again (same webhook-id, same body), then the video's
later events, in order."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.faults.conftest import spawn
from tests.webhooks_out.receiver import HANG, receiving
from tests.webhooks_out.running import worker_env
from tests.webhooks_out.standard_webhooks import verify
from vidgen.jobs import lifecycle
from vidgen.models import DeliveryState, User, Video, WebhookDelivery
from vidgen.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def start_worker(settings: Settings, tmp_path: Path, name: str, timeout: float):
    env = worker_env(
        str(settings.database_url), tmp_path, VIDGEN_WEBHOOK_TIMEOUT_SECONDS=str(timeout)
    )
    command = ["-m", "vidgen.cli", "worker", "--concurrency", "2"]
    return spawn(command, env, tmp_path / f"{name}.log")


async def test_a_worker_killed_mid_delivery_loses_nothing(db, tmp_path: Path) -> None:
    owner = await User.create(email="kill@example.com", password_hash="x")
    async with receiving() as receiver:
        receiver.answer(HANG)  # the first attempt never gets an answer
        video = Video(
            owner_id=owner.id,
            prompt="succeed",
            provider="test",
            resolution="64x64",
            webhook_url=receiver.url,
        )
        await lifecycle.record_created(video, actor="test")
        # The victim's attempts run up to 3 s, so its lease lasts 8 s (timeout + margin).
        victim = start_worker(db, tmp_path, "victim", timeout=3)
        survivor = None
        try:
            await receiver.wait_for(1, seconds=60)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            # The receiver answers the survivor at once; a short timeout would only let a
            # loaded machine turn a slow answer into a resend (a duplicate id below).
            survivor = start_worker(db, tmp_path, "survivor", timeout=10)
            while True:
                received = await receiver.wait_for(len(receiver.requests) + 1, seconds=60)
                if json.loads(received[-1].body)["data"]["status"] == "COMPLETED":
                    break
        finally:
            for proc in (victim, survivor):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
    assert survivor is not None and survivor.returncode == 0

    secret = (await User.get(id=owner.id)).webhook_secret
    assert secret is not None
    events = [verify(secret, r.headers, r.body) for r in received]
    ids = [r.webhook_id for r in received]
    # The killed attempt, then the same event again: same id, same bytes.
    assert received[0].answer == HANG and ids[0] == ids[1]
    assert received[0].body == received[1].body
    assert events[0]["data"]["status"] == "QUEUED"
    # Then every later event once, in version order, ending with the completion.
    later = events[1:]
    versions = [e["data"]["version"] for e in later]
    assert versions == sorted(set(versions))
    assert len(set(ids[1:])) == len(ids) - 1
    rows = await WebhookDelivery.filter(video_id=video.id).order_by("version")
    assert [r.message_id for r in rows] == ids[1:]
    assert all(r.state is DeliveryState.DELIVERED for r in rows)
    assert rows[0].attempts == 2
