"""Issue 23 with the settings left at their defaults: no mutation rate limit and no quota, so
a busy client is never answered RATE_LIMITED or QUOTA_EXCEEDED (docs/limits.md)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Account, LiveServer
from vidgen.models import Project, Video
from vidgen.settings import Settings

CREATE = "mutation Create($i: CreateProjectInput!) { createProject(input: $i) { id } }"
GENERATE = "mutation Gen($i: GenerateVideoInput!) { generateVideo(input: $i) { id } }"
LIMITS = """
{ viewer { limits { maxActiveJobs dailyVideoSeconds mutationsPerMinute exempt }
           usage { activeJobs videoSecondsLeftToday } } }
"""

IN_A_ROW = 150
PER_REQUEST = 25  # under the alias cap (30), which is a limit on documents, not on rate


def _codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def test_the_limits_are_off_by_default() -> None:
    defaults = Settings(_env_file=None)
    assert defaults.user_mutations_per_minute is None
    assert defaults.user_mutation_burst is None
    assert defaults.user_max_active_jobs is None
    assert defaults.user_daily_video_seconds is None


async def test_many_mutations_in_a_row_are_never_rate_limited(
    live_server: LiveServer, alice: Account
) -> None:
    # The test's settings keep the defaults for every limit.
    assert live_server.settings.user_mutations_per_minute is None
    for i in range(IN_A_ROW):
        body = await live_server.gql(CREATE, {"i": {"name": f"p{i}"}}, token=alice.token)
        assert "errors" not in body, (i, body)
    # Many mutations in one request: no per-request cap either.
    many = (
        "mutation { "
        + " ".join(
            f'p{i}: createProject(input: {{name: "many {i}"}}) {{ id }}' for i in range(PER_REQUEST)
        )
        + " }"
    )
    body = await live_server.gql(many, token=alice.token)
    assert "errors" not in body, _codes(body)
    assert len(body["data"]) == PER_REQUEST
    assert await Project.filter(owner_id=alice.user.id).count() == IN_A_ROW + PER_REQUEST


async def test_many_videos_at_once_meet_no_quota(live_server: LiveServer, alice: Account) -> None:
    count = 30
    for i in range(count):
        body = await live_server.gql(
            GENERATE,
            {"i": {"prompt": f"video {i}", "provider": "test", "durationSeconds": 10}},
            token=alice.token,
        )
        assert "errors" not in body, (i, body)
    assert await Video.filter(owner_id=alice.user.id).count() == count
    seen = (await live_server.gql(LIMITS, token=alice.token))["data"]["viewer"]
    assert seen["limits"] == {
        "maxActiveJobs": None,
        "dailyVideoSeconds": None,
        "mutationsPerMinute": None,
        "exempt": False,
    }
    assert seen["usage"] == {"activeJobs": count, "videoSecondsLeftToday": None}
