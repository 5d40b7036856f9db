"""PostgreSQL restarts while a worker delivers webhooks: no event is lost, each video's
events still arrive in version order (an event may arrive twice, with its one id, when its
outcome could not be written), and the worker rides the outage out without a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import pytest

from tests.faults.conftest import private_postgres, spawn, stop_all, wait_for  # noqa: F401
from tests.webhooks_out.receiver import Receiver, receiving
from tests.webhooks_out.running import worker_env
from vidgen import db as vdb
from vidgen.jobs import lifecycle
from vidgen.models import DeliveryState, User, Video, WebhookDelivery
from vidgen.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

VIDEOS = 12


def by_video(receiver: Receiver) -> dict[str, list[tuple[str, int, str]]]:
    """Per video id: (webhook-id, version, status) in arrival order."""
    seen: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for request in receiver.requests:
        data = json.loads(request.body)["data"]
        seen[data["id"]].append((request.webhook_id, data["version"], data["status"]))
    return seen


async def test_a_database_restart_loses_no_event(private_postgres, tmp_path: Path) -> None:  # noqa: F811
    name = f"hooks_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(private_postgres.admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = private_postgres.url(name)
    await vdb.migrate_database(url)
    await vdb.init(Settings(_env_file=None, database_url=url, secret_key="k", db_pool_max=4))
    env = worker_env(
        url,
        tmp_path,
        VIDGEN_MAX_RESCUES="5",
        VIDGEN_WEBHOOK_TIMEOUT_SECONDS="1",
        VIDGEN_DB_POOL_MAX="6",
    )
    try:
        async with receiving() as receiver:
            owner = await User.create(email="restart@example.com", password_hash="x")
            ids = []
            for n in range(VIDEOS):
                video = Video(
                    owner_id=owner.id,
                    prompt=f"sleep:{0.5 + n * 0.2:.1f}",
                    provider="test",
                    resolution="64x64",
                    webhook_url=receiver.url,
                )
                await lifecycle.record_created(video, actor="test")
                ids.append(video.id)
            worker = spawn(
                ["-m", "vidgen.cli", "worker", "--concurrency", "6"], env, tmp_path / "w.log"
            )
            try:
                await receiver.wait_for(VIDEOS + 3, seconds=60)  # some events are out
                private_postgres.stop()
                await asyncio.sleep(2)
                private_postgres.start()

                async def all_delivered() -> bool:
                    done = await Video.filter(id__in=ids, status="completed").count() == VIDEOS
                    pending = await WebhookDelivery.filter(state=DeliveryState.PENDING).exists()
                    return done and not pending

                await wait_for(all_delivered, 120, "every video done and every event delivered")
                alive = worker.poll() is None
            finally:
                [code] = stop_all([worker])
        assert alive and code == 0, "the worker rides the outage out"

        rows = await WebhookDelivery.all().order_by("video_id", "version")
        assert all(r.state is DeliveryState.DELIVERED for r in rows)
        seen = by_video(receiver)
        assert len(seen) == VIDEOS
        for arrivals in seen.values():
            # Each event once, or again right after itself (its outcome was lost in the
            # outage): the same id, never after a later one.
            distinct = [a for i, a in enumerate(arrivals) if i == 0 or a[0] != arrivals[i - 1][0]]
            assert len({a[0] for a in distinct}) == len(distinct), arrivals
            versions = [a[1] for a in distinct]
            assert versions == sorted(versions), arrivals
            assert distinct[0][2] == "QUEUED" and distinct[-1][2] == "COMPLETED", arrivals
        stored = defaultdict(list)
        for row in rows:
            stored[row.video_id].append(row.message_id)
        assert sorted(len(v) for v in stored.values()) == sorted(
            len({a[0] for a in arrivals}) for arrivals in seen.values()
        )
    finally:
        await vdb.close()
        admin = await asyncpg.connect(private_postgres.admin_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
