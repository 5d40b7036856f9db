"""generateVideo's usual request in ONE statement (PostgreSQL: the insert finds the rows
the request names itself) answers exactly as the way with a lookup first: the same video,
tags, theme, project and history row, or the same error, with nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api.conftest import Account, StatementCounter, row_counts
from vidgen import dialect, errors
from vidgen.models import Tag, Video, VideoStatusEvent
from vidgen.runtime import Runtime
from vidgen.services import catalog, videos
from vidgen.services.videos import generation
from vidgen.settings import Settings


@pytest_asyncio.fixture
async def runtime(db: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(db)
    try:
        yield runtime
    finally:
        await runtime.close()


async def _library(account: Account, other: Account) -> dict[str, int]:
    """The same rows for each user: a project with a story, a story without a project,
    an existing theme and tags; and another user's project and story."""
    user = account.user
    project = await catalog.create_project(viewer=user, name="P")
    other_project = await catalog.create_project(viewer=user, name="Q")
    story = await catalog.create_story(
        viewer=user, title="S", project_id=project.id, paragraphs=["a", "b"]
    )
    loose = await catalog.create_story(viewer=user, title="L", paragraphs=["a"])
    await catalog.ensure_theme(owner_id=user.id, name="Noir")
    await catalog.ensure_tags(owner_id=user.id, names=["Ocean", "night", "City"])
    theirs = await catalog.create_project(viewer=other.user, name="Theirs")
    their_story = await catalog.create_story(viewer=other.user, title="T", paragraphs=["x"])
    return {
        "project": project.id,
        "other_project": other_project.id,
        "story": story.id,
        "loose": loose.id,
        "theirs": theirs.id,
        "their_story": their_story.id,
    }


# Each request names rows by role; "key" repeats across requests on purpose.
REQUESTS: list[dict[str, Any]] = [
    {},
    {"project": "project"},
    {"story": "story"},
    {"story": "loose"},
    {"project": "project", "story": "story"},
    {"project": "other_project", "story": "story"},  # not in that project
    {"project": "project", "story": "loose"},  # a story without a project
    {"project": "theirs"},
    {"story": "their_story"},
    {"project": 2**31 - 1},
    {"theme": "noir"},
    {"theme": "  NOIR "},
    {"theme": "Brand new"},
    {"tags": ["ocean", "NIGHT"]},
    {"tags": ["city", "ocean", "night"]},
    {"tags": ["ocean", "fresh"]},
    {"project": "project", "story": "story", "theme": "Noir", "tags": ["night", "ocean"]},
    {"key": "k1", "project": "project", "tags": ["city"]},
    {"key": "k1"},  # repeated: the first video
    {"key": "k1", "project": "theirs"},  # repeated wins over an error
    {"key": "k2", "project": "theirs"},  # refused, nothing written
    {"key": "k2", "story": "story"},
    {"webhook_url": "https://93.184.216.34/hook", "project": "project"},
    {"priority": 5, "tags": ["night"], "caption": "c", "video_style": "s"},
]


def _arguments(request: dict[str, Any], rows: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt": "a lighthouse"}
    for role, name in (("project", "project_id"), ("story", "story_id")):
        if role in request:
            value = request[role]
            out[name] = rows[value] if isinstance(value, str) else value
    if "key" in request:
        out["idempotency_key"] = request["key"]
    for name in ("theme", "tags", "webhook_url", "priority", "caption", "video_style"):
        if name in request:
            out[name] = request[name]
    return out


async def _outcome(
    runtime: Runtime, account: Account, rows: dict[str, int], request: dict[str, Any]
) -> Any:
    """What a request gives, in terms that do not depend on the user's own ids."""
    # Ids by table (a project's and a story's ids may be equal).
    projects = {rows[k]: k for k in ("project", "other_project", "theirs")}
    stories = {rows[k]: k for k in ("story", "loose", "their_story")}
    try:
        video = await videos.generate_video(
            runtime=runtime, viewer=account.user, **_arguments(request, rows)
        )
    except errors.BadUserInput as exc:
        return ("error", type(exc).__name__, str(exc), exc.field)
    video = await Video.get(id=video.id)
    tags = [t.name for t in await Tag.filter(videos__id=video.id).order_by("name_key", "id")]
    theme = await video.theme if video.theme_id is not None else None
    history = await VideoStatusEvent.filter(video_id=video.id).values_list(
        "from_status", "to_status", "version", "message", "actor"
    )
    return (
        "video",
        projects.get(video.project_id, video.project_id),
        stories.get(video.story_id, video.story_id),
        theme.name if theme is not None else None,
        tags,
        video.status,
        video.priority,
        video.idempotency_key,
        video.webhook_url,
        video.caption,
        video.video_style,
        [(a, b, c, d, e.replace(str(account.user.id), "me")) for a, b, c, d, e in history],
    )


async def test_the_folded_insert_answers_as_the_lookup_first(
    runtime: Runtime, alice: Account, bob: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_rows = await _library(alice, bob)
    bob_rows = await _library(bob, alice)
    folded, looked_up = [], []
    for request in REQUESTS:
        folded.append(await _outcome(runtime, alice, alice_rows, request))
    with monkeypatch.context() as patch:

        async def never(*args: Any, **kwargs: Any) -> None:
            return None

        patch.setattr(generation, "_insert_folded", never)
        for request in REQUESTS:
            looked_up.append(await _outcome(runtime, bob, bob_rows, request))
    for request, one, other in zip(REQUESTS, folded, looked_up, strict=True):
        assert one == other, request
    kinds = [outcome[0] for outcome in folded]
    assert "error" in kinds and "video" in kinds  # both kinds were compared


async def test_the_usual_request_is_one_statement_on_postgres(
    runtime: Runtime, alice: Account, bob: Account, count_statements: StatementCounter
) -> None:
    rows = await _library(alice, bob)
    request = {"project": "project", "story": "story", "theme": "Noir", "key": "one"}
    with count_statements.counting() as counter:
        counter.reset()
        await _outcome(runtime, alice, rows, {**request, "tags": ["ocean", "night"]})
        statements = counter.statements[:]
    inserts = [s for s in statements if "INSERT INTO videos" in s]
    assert len(inserts) == 1
    if dialect.is_postgres():
        # The insert statement is the request's first: nothing was looked up before it.
        assert "INSERT INTO videos" in statements[0], statements
        assert "JOIN tags" in statements[0] and "FROM projects" in statements[0]
    before = await row_counts()
    # A request naming a missing row writes nothing and answers as before.
    with pytest.raises(errors.BadUserInput) as refused:
        await videos.generate_video(
            runtime=runtime, viewer=alice.user, prompt="x", project_id=rows["theirs"]
        )
    assert refused.value.field == "projectId"
    assert await row_counts() == before
