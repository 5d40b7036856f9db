"""The compiled path (vidgen.graphql.compiled) gives exactly Strawberry's answers.

Documents are generated from the schema by the fuzz suite's generator (hypothesis-graphql):
most from the schema cut down to what plans cover (so that most of them compile), the rest
from the whole schema (so that fallbacks are exercised too), with ids, tag and theme names,
search texts and cursors drawn from the real data. Each runs as four viewers (the owner of
most rows, another user, an admin, nobody) through the compiled path and through plain
Strawberry execution over the same data; whenever the compiled path answers, its JSON must
equal Strawberry's. ``VIDGEN_DIFF_EXAMPLES`` sets the number of documents (default 400 per
backend; ``make fuzz``-style campaigns use thousands).
"""

from __future__ import annotations

import os
import types as pytypes
from typing import Any

import graphql
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries

from tests.api.conftest import Account
from tests.fuzz.test_graphql_fuzz import SCHEMA
from vidgen.graphql.compiled import plans_for
from vidgen.graphql.context import Context
from vidgen.graphql.dataloaders import Loaders
from vidgen.graphql.schema import build_schema
from vidgen.media import signing
from vidgen.models import Video
from vidgen.runtime import Runtime
from vidgen.services import catalog, videos
from vidgen.settings import Settings

EXAMPLES = int(os.environ.get("VIDGEN_DIFF_EXAMPLES", "400"))

# What plans do not cover, cut from the schema the covered documents are drawn from.
UNCOVERED = {
    "User": ("limits", "usage"),
    "Video": ("webhookDeliveries",),
    "Project": ("videos",),
    "Story": ("videos", "project", "film", "clips"),
}

SCHEMA_OBJECT = build_schema()


def _covered_sdl() -> str:
    schema = graphql.build_schema(SCHEMA)
    for type_name, names in UNCOVERED.items():
        fields = schema.type_map[type_name].fields  # type: ignore[union-attr]
        for name in names:
            del fields[name]
    return graphql.print_schema(schema)


COVERED = _covered_sdl()

HAND_WRITTEN = [
    """query List($first: Int!) { videos(first: $first) { edges { node {
      id prompt status createdAt owner { id email } project { id name } story { id title }
      theme { name } tags { name } } } } }""",
    """query Everything($first: Int) { __typename videos(first: $first) { __typename
      totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { ...Fields again: id ... on Video { st: status theme {
      __typename id name } } owner { id email isAdmin webhookSecret } tags { __typename id name }
      owner { __typename } } } } }
    fragment Fields on Video {
      id prompt status statusMessage kind outputFormat progress provider model caption videoStyle
      resolution durationSeconds frameRate fileSize width height paragraphIndex predictionId
      errorMessage retryCount priority scheduledAt version createdAt updatedAt completedAt
      deletedAt videoUrl thumbnailUrl inputImageUrl eventCursor
      project { id name description createdAt updatedAt }
      story { id title paragraphs createdAt updatedAt }
      statusHistory { __typename at message status } }""",
    """{ videos(first: 5) { edges { node { owner { id } owner { email } a: tags { name }
      a: tags { id } } } } viewer { id email isAdmin __typename } }""",
    "{ videos(first: 50) { edges { node { id } } } }",
    "{ viewer { id } }",
    "{ videos(first: -1) { edges { node { id } } } }",
    '{ videos(after: "nope") { edges { node { id } } } }',
]


async def _library(runtime: Runtime, owner: Account) -> None:
    """Videos with and without theme, project, story and tags; deleted, processing, failed,
    completed with files."""
    viewer = owner.user
    project = await catalog.create_project(viewer=viewer, name="P", description=None)
    other = await catalog.create_project(viewer=viewer, name="Q", description="second")
    story = await catalog.create_story(
        viewer=viewer, title="S", project_id=project.id, paragraphs=["one", "two"]
    )
    made = []
    for i in range(9):
        made.append(
            await videos.generate_video(
                runtime=runtime,
                viewer=viewer,
                prompt=f"prompt {i} 100%_off",
                project_id=(project.id, other.id, None)[i % 3],
                story_id=story.id if i % 3 == 0 else None,
                theme=None if i % 5 == 0 else f"Theme {i % 2}",
                tags=[f"tag{j}" for j in range(i % 4)],
                caption=None if i % 2 else f"Caption {i}",
            )
        )
    await videos.delete_video(runtime=runtime, viewer=viewer, video_id=made[3].id)
    await Video.filter(id=made[1].id).update(status="processing", status_message="step 2")
    await Video.filter(id=made[2].id).update(status="failed", error_message="boom", progress=0.5)
    await Video.filter(id=made[4].id).update(
        status="completed",
        video_file="v/1.mp4",
        thumbnail_file="t/1.jpg",
        file_size=1234,
        width=640,
        height=360,
        frame_rate=24.0,
    )


def _normalized(result: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [dict(error.formatted) for error in result.errors]
    return orjson.loads(orjson.dumps(body))


def _documents(strategy: st.SearchStrategy[str], count: int) -> list[str]:
    found: list[str] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(document=strategy)
    def draw(document: str) -> None:
        found.append(document)

    draw()
    return found


@pytest.mark.timeout(600)
async def test_compiled_answers_equal_strawberrys(
    db: Settings, alice: Account, bob: Account, user_factory: Any, monkeypatch: Any
) -> None:
    # Signed URLs carry their expiry: one clock for both paths.
    monkeypatch.setattr(signing, "time", pytypes.SimpleNamespace(time=lambda: 1_800_000_000.0))
    admin = await user_factory("root@example.com", admin=True)
    runtime = Runtime.create(db)
    await _library(runtime, alice)
    await _library(runtime, bob)
    plans = plans_for(SCHEMA_OBJECT, db)

    seen = await plain_with(
        SCHEMA_OBJECT,
        runtime,
        "{ videos(first: 100, filter: {includeDeleted: true}) { edges { cursor node { id"
        " project { id } story { id } } } } }",
        admin.token,
    )
    nodes = [edge["node"] for edge in seen["data"]["videos"]["edges"]]
    real = sorted(
        {node["id"] for node in nodes}
        | {node[name]["id"] for node in nodes for name in ("project", "story") if node[name]}
    )
    cursors = [edge["cursor"] for edge in seen["data"]["videos"]["edges"]][::3]
    ids = st.sampled_from(real).map(lambda v: graphql.StringValueNode(value=v))
    texts = st.one_of(
        st.sampled_from(["tag1", "TAG2", "theme 1", "Theme 0", "prompt", "100%", "_", "ß"]),
        st.sampled_from(cursors),
        st.text(max_size=8),
    ).map(lambda v: graphql.StringValueNode(value=v))
    # Page sizes mostly in range, so that most requests have an answer to compare.
    sizes = st.one_of(st.integers(0, 120), st.integers(-5, 5)).map(
        lambda v: graphql.IntValueNode(value=str(v))
    )
    scalars = {"ID": ids, "String": texts, "Int": sizes}
    roots = ["videos", "viewer"]
    covered = _documents(queries(COVERED, fields=roots, custom_scalars=scalars), EXAMPLES)
    anything = _documents(queries(SCHEMA, fields=roots, custom_scalars=scalars), EXAMPLES // 5)

    viewers = {"owner": alice.token, "other": bob.token, "admin": admin.token, "anonymous": None}
    answered = fell_back = 0
    for document in HAND_WRITTEN + covered + anything:
        for who, token in viewers.items():
            context = Context(runtime=runtime, _loaders=Loaders())
            if token is not None:
                await context.authenticate(f"Bearer {token}")
            compiled = await plans.data(document, None, {"first": 7}, context.viewer)
            expected = await plain_with(SCHEMA_OBJECT, runtime, document, token)
            if compiled is None:
                fell_back += 1
                # A covered document falls back only when Strawberry answers an error.
                assert document not in covered or "errors" in expected, (who, document)
                continue
            answered += 1
            assert "errors" not in expected, (who, document, expected)
            assert orjson.loads(orjson.dumps({"data": compiled})) == expected, (who, document)
    # The comparison must have had something to compare, and fallbacks must have happened.
    print(f"compiled {answered}, fell back {fell_back}")
    assert answered >= EXAMPLES // 2, (answered, fell_back)
    assert fell_back > 0


async def plain_with(
    schema: Any, runtime: Runtime, query: str, token: str | None
) -> dict[str, Any]:
    context = Context(runtime=runtime, _loaders=Loaders())
    if token is not None:
        await context.authenticate(f"Bearer {token}")
    return _normalized(
        await schema.execute(query, variable_values={"first": 7}, context_value=context)
    )
