"""The compiled path over HTTP: which requests it answers, its statements, its pins.

(The answers themselves are compared with Strawberry's in test_compiled_differential.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from strawberry.relay import GlobalID

from tests.api.conftest import Account, LiveServer, StatementCounter
from vidgen.graphql.compiled import pins
from vidgen.services import catalog, videos

EVERY_RELATION = """
query Page($first: Int!) {
  videos(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id prompt status eventCursor videoUrl
      owner { id email } project { id name } story { id title paragraphs } theme { name }
      tags { id name } statusHistory { at status message }
    } }
  }
}
"""


def _page_statements(counter: StatementCounter) -> list[str]:
    # The compiled page statement names the videos table "v" (the ORM's never does).
    return [s for s in counter.statements if s.startswith("SELECT v.")]


async def _library(live_server: LiveServer, owner: Account, count: int) -> None:
    viewer = owner.user
    project = await catalog.create_project(viewer=viewer, name="P")
    story = await catalog.create_story(
        viewer=viewer, title="S", project_id=project.id, paragraphs=["a", "b"]
    )
    for i in range(count):
        await videos.generate_video(
            runtime=live_server.runtime,
            viewer=viewer,
            prompt=f"video {i}",
            project_id=project.id,
            story_id=story.id if i % 2 else None,
            theme=f"theme {i % 3}",
            tags=[f"tag{i % 4}", f"tag{i % 5}"],
        )


async def test_statements_per_request_are_constant_in_the_page_size(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter, backend: str
) -> None:
    await _library(live_server, alice, 60)
    await live_server.gql("{ viewer { id } }", token=alice.token)  # token use recorded
    counts = {}
    for first in (1, 10, 50):
        with count_statements.counting() as counter:
            counter.reset()
            body = await live_server.gql(EVERY_RELATION, {"first": first}, token=alice.token)
        assert "errors" not in body, body
        page = body["data"]["videos"]
        assert len(page["edges"]) == first and page["totalCount"] == 60
        assert page["edges"][0]["node"]["tags"] and page["edges"][0]["node"]["statusHistory"]
        assert len(_page_statements(counter)) == 1, counter.statements  # answered by a plan
        counts[first] = counter.count
    # token + page (with its count; relations in it on PostgreSQL); SQLite: + tags,
    # history and latest event, one statement each
    expected = 2 if backend == "postgres" else 5
    assert counts[1] == counts[10] == counts[50] == expected, count_statements.statements


async def test_the_page_statement_reads_only_what_is_selected_and_scopes_by_owner(
    live_server: LiveServer,
    alice: Account,
    user_factory: Any,
    count_statements: StatementCounter,
) -> None:
    await _library(live_server, alice, 3)
    admin = await user_factory("admin@example.com", admin=True)
    query = "{ videos(first: 5) { edges { node { id } } } }"
    for account, scoped in ((alice, True), (admin, False)):
        with count_statements.counting() as counter:
            body = await live_server.gql(query, token=account.token)
            counter_statements = list(counter.statements)
            counter.reset()
        assert len(body["data"]["videos"]["edges"]) == 3
        (page,) = [s for s in counter_statements if s.startswith("SELECT v.")]
        selected = page.split(" FROM ")[0]
        assert selected.strip() == 'SELECT v."id"', page
        assert ('"owner_id" =' in page) is scoped, page


async def test_what_a_plan_cannot_answer_strawberry_does(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter
) -> None:
    await _library(live_server, alice, 2)
    cases = [
        # not signed in: Strawberry's UNAUTHENTICATED
        ("{ videos { edges { node { id } } } }", None, None, "UNAUTHENTICATED"),
        # a bad page size and a bad cursor: BAD_USER_INPUT
        ("{ videos(first: -1) { edges { node { id } } } }", None, alice.token, "BAD_USER_INPUT"),
        ('{ videos(after: "x") { edges { node { id } } } }', None, alice.token, "BAD_USER_INPUT"),
        # a variable of the wrong type
        (
            "query Q($n: Int) { videos(first: $n) { edges { node { id } } } }",
            {"n": "ten"},
            alice.token,
            "BAD_USER_INPUT",
        ),
    ]
    for query, variables, token, code in cases:
        with count_statements.counting() as counter:
            counter.reset()
            body = await live_server.gql(query, variables, token=token)
        assert body["errors"][0]["extensions"]["code"] == code, body
        assert not _page_statements(counter), counter.statements
    # Outside what plans cover (a directive, a nested connection): Strawberry's answers.
    body = await live_server.gql(
        "query Q($t: Boolean!) { videos { edges { node { id tags @include(if: $t) { name } } } } }",
        {"t": True},
        token=alice.token,
    )
    assert len(body["data"]["videos"]["edges"]) == 2 and "errors" not in body
    body = await live_server.gql(
        "{ projects { edges { node { videos { totalCount } } } } }", token=alice.token
    )
    assert body["data"]["projects"]["edges"][0]["node"]["videos"]["totalCount"] == 2


async def test_compiled_and_plain_views_answer_the_same_bytes_as_json(
    live_server: LiveServer, alice: Account
) -> None:
    """The same request through the app's view (compiled) and through a view without
    plans: equal JSON, same status and content type."""
    import httpx

    from vidgen.graphql.schema import build_schema
    from vidgen.graphql.view import GraphQLView

    await _library(live_server, alice, 4)
    plain_view = GraphQLView(
        build_schema(live_server.settings), live_server.runtime, compiled=False
    )
    transport = httpx.ASGITransport(app=plain_view)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as plain:
        for first in (0, 2, 10):
            request = {"query": EVERY_RELATION, "variables": {"first": first}}
            headers = live_server.headers(alice.token)
            compiled = await live_server.client.post("/graphql", json=request, headers=headers)
            expected = await plain.post("/graphql", json=request, headers=headers)
            assert compiled.status_code == expected.status_code == 200
            assert compiled.headers["content-type"] == expected.headers["content-type"]
            body = compiled.json()
            for edge in body["data"]["videos"]["edges"]:  # signed URLs: none stored here
                assert edge["node"]["videoUrl"] is None
            assert body == expected.json()


def test_the_pins_are_checked_with_a_clear_error() -> None:
    pins.check()  # the installed versions are the pinned ones
    wrong = {**pins.PINNED, "graphql-core": "3.4.0"}
    with pytest.raises(pins.VersionMismatch, match=r"graphql-core 3\.4\.0 \(pinned: 3\.3\.2\)"):
        pins.check(wrong)
    with pytest.raises(pins.VersionMismatch, match=r"strawberry-graphql \(missing\)"):
        pins.check({"graphql-core": "3.3.2"})


EVENT_FIELDS = """
  __typename id prompt status statusMessage kind outputFormat progress provider model caption
  videoStyle resolution durationSeconds frameRate fileSize width height paragraphIndex
  predictionId errorMessage retryCount priority scheduledAt version createdAt updatedAt
  completedAt deletedAt videoUrl thumbnailUrl inputImageUrl ...on Video { again: status }
"""


async def test_event_results_equal_strawberrys_for_a_row_in_hand(
    db: Any, alice: Account, bob: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscriptions' entry point: a subscription document's selection on one video row
    equals what Strawberry gives for the same selection on that video."""
    import types as pytypes

    from vidgen.graphql.compiled import plans_for
    from vidgen.graphql.context import Context
    from vidgen.graphql.schema import build_schema
    from vidgen.media import signing
    from vidgen.models import Video
    from vidgen.runtime import Runtime

    monkeypatch.setattr(signing, "time", pytypes.SimpleNamespace(time=lambda: 1_800_000_000.0))
    runtime = Runtime.create(db)
    schema = build_schema(db)
    plans = plans_for(schema, db)
    made = await videos.generate_video(
        runtime=runtime, viewer=alice.user, prompt="a fox", caption="c", tags=["x"]
    )
    await Video.filter(id=made.id).update(
        status="processing", status_message="step 1", video_file="v/f.mp4"
    )
    video = await Video.get(id=made.id)
    gid = GlobalID("Video", str(made.id))
    subscription = f"subscription S($id: ID!) {{ videoUpdated(id: $id) {{ {EVENT_FIELDS} }} }}"
    for viewer in (alice, bob):
        compiled = plans.event_result(subscription, None, {"id": str(gid)}, viewer.user, video)
        context = Context(runtime=runtime)
        await context.authenticate(f"Bearer {alice.token}")  # the owner may see it
        expected = await schema.execute(
            f'{{ video(id: "{gid}") {{ {EVENT_FIELDS} }} }}', context_value=context
        )
        assert expected.errors is None and expected.data is not None
        assert compiled == {"videoUpdated": expected.data["video"]}
    assert compiled["videoUpdated"]["statusMessage"] == "step 1"
    assert compiled["videoUpdated"]["videoUrl"].startswith("http")
    # Selections that need a statement, and documents that are not subscriptions: None.
    for document in (
        "subscription { videoUpdated(id: $id) { id owner { id } } }",
        "subscription S($id: ID!) { videoUpdated(id: $id) { id owner { id } } }",
        "subscription S($id: ID!) { videoUpdated(id: $id) { eventCursor } }",
        "subscription S($id: ID!, $t: Boolean!) { videoUpdated(id: $id) { id @skip(if: $t) } }",
        "{ viewer { id } }",
    ):
        assert plans.event_result(document, None, {"id": str(gid)}, alice.user, video) is None
