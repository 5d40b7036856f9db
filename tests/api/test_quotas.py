"""Per-user quotas over the API: the active-jobs cap, the rolling 24 hours of requested
seconds, both race-free under concurrent requests, admins' overrides, and who may read or
set a user's limits (docs/limits.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from strawberry.relay import to_base64
from tortoise.connection import get_connection

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, media_files, row_counts, start_live_server
from tests.api.test_uploads import png, upload
from vidgen.jobs.worker import Worker
from vidgen.models import User, Video, VideoStatus
from vidgen.settings import Settings

GENERATE = """
mutation Generate($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id status durationSeconds }
}
"""
LIMITS = """
query {
  viewer {
    limits { maxActiveJobs dailyVideoSeconds exempt mutationsPerMinute
             override { maxActiveJobs dailyVideoSeconds exempt } }
    usage { activeJobs queuedJobs processingJobs videosToday videoSecondsToday
            videoSecondsLeftToday
            byProvider { provider activeJobs queuedJobs processingJobs videosToday
                         videoSecondsToday } }
  }
}
"""
USER_LIMITS = """
query UserLimits($id: ID!) {
  node(id: $id) {
    ... on User { email limits { maxActiveJobs dailyVideoSeconds exempt }
                  usage { activeJobs videoSecondsToday } }
  }
}
"""
SET_LIMITS = """
mutation SetLimits($userId: ID!, $input: UserLimitsInput!) {
  setUserLimits(userId: $userId, input: $input) {
    id email limits { maxActiveJobs dailyVideoSeconds exempt
                      override { maxActiveJobs dailyVideoSeconds exempt } }
  }
}
"""


def user_id(account: Account) -> str:
    return to_base64("User", account.user.id)


async def generate(server: LiveServer, account: Account, **input_: Any) -> dict[str, Any]:
    """generateVideo's whole answer (data or errors)."""
    fields = {"prompt": "succeed", "provider": "test", "durationSeconds": 4, **input_}
    return await server.gql(GENERATE, {"input": fields}, token=account.token)


async def queued(server: LiveServer, account: Account, **input_: Any) -> str:
    body = await generate(server, account, **input_)
    assert "errors" not in body, body
    return body["data"]["generateVideo"]["id"]


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    """The one QUOTA_EXCEEDED error's extensions of a refused request."""
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUOTA_EXCEEDED", body
    return error["extensions"]


async def rewind(video_gid: str, hours: float) -> None:
    """Pretend the video was requested ``hours`` earlier (the 24 hours roll over it)."""
    from vidgen.graphql.types import decode_id

    video_id = decode_id(video_gid, "Video")
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    await Video.filter(id=video_id).update(requested_at=when)


async def test_the_active_jobs_cap_writes_nothing_and_frees_a_place_on_cancel(
    db: Settings, alice: Account
) -> None:
    async with start_live_server(db, user_max_active_jobs=2) as server:
        first = await queued(server, alice)
        await queued(server, alice, prompt="sleep:5")
        before = await row_counts()
        # New tags and a theme take the transaction path: it writes nothing either.
        refused = await generate(server, alice, tags=["brand new"], theme="Fresh")
        assert refusal(refused)["limit"] == "maxActiveJobs"
        assert refusal(refused)["max"] == 2
        assert "retryAfter" not in refusal(refused)  # no wait is sure to help
        # An input image would be stored once the row has its id: refused first, no file.
        response = await upload(server, alice.token, png(), provider="local")
        assert refusal(response.json())["limit"] == "maxActiveJobs"
        assert await row_counts() == before
        assert media_files(server.settings) == []

        canceled = await server.gql(d.CANCEL_VIDEO, {"id": first}, token=alice.token)
        assert canceled["data"]["cancelVideo"]["status"] == "CANCELED"
        third = await queued(server, alice, tags=["brand new"])  # the canceled one's place

        # A retry is a new request: at the cap it is refused and changes nothing.
        version = (await Video.get(id=_id(first))).version
        body = await server.gql(d.RETRY_VIDEO, {"id": first}, token=alice.token)
        assert refusal(body)["limit"] == "maxActiveJobs"
        video = await Video.get(id=_id(first))
        assert (video.status, video.version) == (VideoStatus.CANCELED, version)

        await server.gql(d.CANCEL_VIDEO, {"id": third}, token=alice.token)
        body = await server.gql(d.RETRY_VIDEO, {"id": first}, token=alice.token)
        assert body["data"]["retryVideo"]["status"] == "QUEUED", body


def _id(video_gid: str) -> int:
    from vidgen.graphql.types import decode_id

    found = decode_id(video_gid, "Video")
    assert found is not None
    return found


async def test_daily_seconds_roll_over_24_hours_and_failures_give_theirs_back(
    db: Settings, alice: Account
) -> None:
    async with start_live_server(db, user_daily_video_seconds=10) as server:
        failing = await queued(server, alice, prompt="fail", durationSeconds=4)
        await queued(server, alice, prompt="succeed", durationSeconds=4)
        body = await generate(server, alice, durationSeconds=4)
        extensions = refusal(body)
        assert extensions["limit"] == "dailyVideoSeconds" and extensions["max"] == 10
        assert 86_300 < extensions["retryAfter"] <= 86_400  # when the first 4 s roll out
        assert "8 requested" in body["errors"][0]["message"]
        # The oldest request is 23 hours old: its seconds come back in an hour.
        await rewind(failing, hours=23)
        assert 3_500 < refusal(await generate(server, alice, durationSeconds=4))["retryAfter"]
        assert refusal(await generate(server, alice, durationSeconds=4))["retryAfter"] <= 3_600
        # Alone over the limit: no wait helps.
        assert "retryAfter" not in refusal(await generate(server, alice, durationSeconds=11))
        await rewind(failing, hours=0)

        # One fails (its 4 s come back), one completes (its 4 s stay counted).
        assert await Worker(server.runtime, concurrency=2).run_until_idle() == 2
        assert (await Video.get(id=_id(failing))).status == VideoStatus.FAILED
        usage = (await server.gql(LIMITS, token=alice.token))["data"]["viewer"]["usage"]
        assert usage["videoSecondsToday"] == 4 and usage["videoSecondsLeftToday"] == 6
        assert usage["videosToday"] == 1 and usage["activeJobs"] == 0

        third = await queued(server, alice, durationSeconds=6)  # exactly fills the day
        assert "errors" in await generate(server, alice, durationSeconds=1)
        # Retrying the failed one asks for its 4 s again: refused until there is room.
        assert refusal(await server.gql(d.RETRY_VIDEO, {"id": failing}, token=alice.token))
        await server.gql(d.CANCEL_VIDEO, {"id": third}, token=alice.token)  # 6 s back
        body = await server.gql(d.RETRY_VIDEO, {"id": failing}, token=alice.token)
        assert body["data"]["retryVideo"]["status"] == "QUEUED", body
        retried = await Video.get(id=_id(failing))
        assert retried.requested_seconds == 4
        assert dt.datetime.now(dt.UTC) - retried.requested_at < dt.timedelta(minutes=5)
        usage = (await server.gql(LIMITS, token=alice.token))["data"]["viewer"]["usage"]
        assert usage["videoSecondsToday"] == 8


async def test_concurrent_requests_at_the_limit_pass_only_up_to_it(
    db: Settings, alice: Account, bob: Account
) -> None:
    async with start_live_server(db, user_max_active_jobs=3) as server:
        # Some requests take the several-statement path (new tags), some the single one.
        bodies = await asyncio.gather(
            *(generate(server, alice, tags=[f"t{i}"] if i % 2 else []) for i in range(16)),
            *(generate(server, bob) for _ in range(4)),
        )
        passed = [b for b in bodies[:16] if b.get("data")]
        refused = [refusal(b) for b in bodies[:16] if not b.get("data")]
        assert len(passed) == 3 and len(refused) == 13
        assert sum(1 for b in bodies[16:] if b.get("data")) == 3  # bob's own 3
        assert await Video.filter(owner_id=alice.user.id).count() == 3
        assert await Video.filter(owner_id=bob.user.id).count() == 3

    async with start_live_server(db, user_max_active_jobs=None, user_daily_video_seconds=10) as s:
        await Video.filter(owner_id=alice.user.id).delete()
        bodies = await asyncio.gather(*(generate(s, alice, durationSeconds=3) for _ in range(12)))
        assert sum(1 for b in bodies if b.get("data")) == 3  # 9 of 10 seconds
        assert await Video.filter(owner_id=alice.user.id).count() == 3


async def test_admins_override_a_users_limits(db: Settings, alice: Account, user_factory) -> None:
    admin = await user_factory("root@example.com", admin=True)
    async with start_live_server(db, user_max_active_jobs=1) as server:

        async def set_limits(**input_: Any) -> dict[str, Any]:
            variables = {"userId": user_id(alice), "input": input_}
            body = await server.gql(SET_LIMITS, variables, token=admin.token)
            assert "errors" not in body, body
            return body["data"]["setUserLimits"]["limits"]

        await queued(server, alice)
        assert refusal(await generate(server, alice))["max"] == 1
        limits = await set_limits(maxActiveJobs=2)
        assert limits["maxActiveJobs"] == 2 and limits["override"]["maxActiveJobs"] == 2
        await queued(server, alice)  # the override applies from the next request
        assert refusal(await generate(server, alice))["max"] == 2

        limits = await set_limits(exempt=True)  # maxActiveJobs stays as it was
        assert limits == {
            "maxActiveJobs": None,
            "dailyVideoSeconds": None,
            "exempt": True,
            "override": {"maxActiveJobs": 2, "dailyVideoSeconds": None, "exempt": True},
        }
        await queued(server, alice)
        await set_limits(exempt=None, maxActiveJobs=None, dailyVideoSeconds=5)
        viewer = (await server.gql(LIMITS, token=alice.token))["data"]["viewer"]
        assert viewer["limits"]["maxActiveJobs"] == 1  # the server's setting again
        assert viewer["limits"]["dailyVideoSeconds"] == 5
        assert viewer["limits"]["override"] == {
            "maxActiveJobs": None,
            "dailyVideoSeconds": 5.0,
            "exempt": None,
        }
        assert viewer["usage"]["activeJobs"] == 3

        # Admins are not exempt unless the setting says so.
        await queued(server, admin)
        assert refusal(await generate(server, admin))["limit"] == "maxActiveJobs"
    async with start_live_server(db, user_max_active_jobs=1, user_limits_exempt_admins=True) as s:
        await queued(s, admin)
        limits = (await s.gql(LIMITS, token=admin.token))["data"]["viewer"]["limits"]
        assert limits["exempt"] is True and limits["maxActiveJobs"] is None

        # An admin reads anyone's limits and usage; a bad value names its field.
        body = await s.gql(USER_LIMITS, {"id": user_id(alice)}, token=admin.token)
        assert body["data"]["node"]["usage"]["activeJobs"] == 3
        variables = {"userId": user_id(alice), "input": {"maxActiveJobs": -1}}
        [error] = (await s.gql(SET_LIMITS, variables, token=admin.token))["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "maxActiveJobs"}
        variables = {"userId": to_base64("User", 999_999), "input": {"exempt": True}}
        [error] = (await s.gql(SET_LIMITS, variables, token=admin.token))["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND"


async def test_only_admins_read_or_set_another_users_limits(
    live_server: LiveServer, alice: Account, bob: Account
) -> None:
    before = await User.get(id=bob.user.id)
    for target in (bob, alice):  # not even one's own
        variables = {"userId": user_id(target), "input": {"maxActiveJobs": 100, "exempt": True}}
        body = await live_server.gql(SET_LIMITS, variables, token=alice.token)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    body = await live_server.gql(SET_LIMITS, variables)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    after = await User.get(id=bob.user.id)
    assert (after.max_active_jobs, after.quota_exempt) == (before.max_active_jobs, None)

    # Another user is not found (null), so neither are their limits.
    body = await live_server.gql(USER_LIMITS, {"id": user_id(bob)}, token=alice.token)
    assert body == {"data": {"node": None}}
    body = await live_server.gql(USER_LIMITS, {"id": user_id(alice)}, token=alice.token)
    assert body["data"]["node"]["limits"] == {
        "maxActiveJobs": None,
        "dailyVideoSeconds": None,
        "exempt": False,
    }


async def test_usage_counts_by_provider(live_server: LiveServer, alice: Account) -> None:
    await queued(live_server, alice, durationSeconds=2)
    await queued(live_server, alice, durationSeconds=3)
    await queued(live_server, alice, provider="local", durationSeconds=5)
    # A processing one, and one from before the 24 hours (still active, its seconds gone).
    [processing] = await Video.filter(provider="local")
    conn = get_connection("default")
    await conn.execute_query(
        "UPDATE videos SET status = 'processing' WHERE id = " + str(processing.id)
    )
    old = await Video.filter(provider="test", duration_seconds=2).first()
    assert old is not None
    await Video.filter(id=old.id).update(
        requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    )
    usage = (await live_server.gql(LIMITS, token=alice.token))["data"]["viewer"]["usage"]
    assert usage == {
        "activeJobs": 3,
        "queuedJobs": 2,
        "processingJobs": 1,
        "videosToday": 2,
        "videoSecondsToday": 8.0,
        "videoSecondsLeftToday": None,
        "byProvider": [
            {
                "provider": "local",
                "activeJobs": 1,
                "queuedJobs": 0,
                "processingJobs": 1,
                "videosToday": 1,
                "videoSecondsToday": 5.0,
            },
            {
                "provider": "test",
                "activeJobs": 2,
                "queuedJobs": 2,
                "processingJobs": 0,
                "videosToday": 1,
                "videoSecondsToday": 3.0,
            },
        ],
    }


async def test_a_quota_and_a_webhook_url_share_the_inserting_statement(
    db: Settings, alice: Account
) -> None:
    """The admission and the outbox row ride in one statement: an admitted video with a
    webhookUrl gets its first event in the outbox; a refused one writes neither."""
    from vidgen.models import WebhookDelivery

    url = "http://127.0.0.1:9/hook"
    async with start_live_server(
        db, user_max_active_jobs=1, webhook_allow_private=True, embedded_worker=False
    ) as server:
        first = await queued(server, alice, webhookUrl=url)
        assert await WebhookDelivery.filter(video_id=_id(first)).count() == 1
        before = await row_counts()
        refused = await generate(server, alice, webhookUrl=url, tags=["new tag"])
        assert refusal(refused)["limit"] == "maxActiveJobs"
        assert await row_counts() == before
        assert await WebhookDelivery.all().count() == 1
