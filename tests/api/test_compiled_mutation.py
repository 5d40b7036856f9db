"""``generateVideo`` through the compiled path gives exactly Strawberry's answers.

Each request (documents with different selections, fragments, aliases, literals or
variables, and bad input of each kind) is sent over HTTP twice to the same server: once with
the compiled path on, once with it off (plain Strawberry). The JSON must be identical, errors
included, once the new video's id and the timestamps are masked (each run creates its own
row), and both runs must write the same number of rows. Documents the plan covers must be
answered by it when they succeed, and a request must never run the mutation twice.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from strawberry.relay import GlobalID

from tests.api.conftest import Account, LiveServer, StatementCounter, row_counts
from vidgen.graphql.view import GraphQLView
from vidgen.models import Video
from vidgen.services import catalog

pytestmark = pytest.mark.timeout(300)

FIELDS = """__typename id prompt status statusMessage kind outputFormat progress provider model
  caption videoStyle resolution durationSeconds frameRate fileSize width height paragraphIndex
  predictionId errorMessage retryCount priority scheduledAt version createdAt updatedAt
  completedAt deletedAt videoUrl thumbnailUrl inputImageUrl"""

VARIABLE = "mutation G($input: GenerateVideoInput!) {{ generateVideo(input: $input) {{ {} }} }}"

# (document, covered: answered by the plan when it succeeds)
DOCUMENTS: list[tuple[str, bool]] = [
    (VARIABLE.format("id status createdAt"), True),
    (VARIABLE.format(FIELDS), True),
    (
        VARIABLE.format("...F again: status ... on Video { kind }") + " fragment F on Video { id }",
        True,
    ),
    (
        "mutation G($input: GenerateVideoInput!) { made: generateVideo(input: $input) "
        "{ id st: status } }",
        True,
    ),
    (VARIABLE.format("id status @include(if: true)"), False),  # a directive
    (VARIABLE.format("id tags { name } project { name } theme { name }"), False),  # relations
    (VARIABLE.format("id eventCursor"), False),
    (
        "mutation G($input: GenerateVideoInput!) { a: generateVideo(input: $input) { id } "
        "b: generateVideo(input: $input) { id } }",
        False,
    ),
    (
        "mutation G($input: GenerateVideoInput!) { __typename "
        "generateVideo(input: $input) { id } }",
        False,
    ),
]


def _inputs(project: str, story: str, other_project: str) -> list[dict[str, Any]]:
    return [
        {"prompt": "a fox"},
        {
            "prompt": "a full one",
            "provider": "local",
            "projectId": project,
            "storyId": story,
            "paragraphIndex": 1,
            "resolution": "1280x720",
            "outputFormat": "WEBM",
            "durationSeconds": 2.5,
            "caption": "c",
            "videoStyle": "noir",
            "theme": "dusk",
            "tags": ["a", "b", "a"],
            "priority": 3,
            "scheduledAt": "2031-01-02T03:04:05+00:00",
        },
        {"prompt": ""},  # bad: empty prompt
        {"prompt": "x", "provider": "nope"},  # bad: unknown provider
        {"prompt": "x", "projectId": other_project},  # someone else's project
        {"prompt": "x", "projectId": "not an id"},
        {"prompt": "x", "storyId": story, "paragraphIndex": 99},
        {"prompt": "x", "paragraphIndex": 1},  # needs storyId
        {"prompt": "x", "durationSeconds": -1.0},
        {"prompt": "x", "resolution": "1x1"},
        {"prompt": "x", "idempotencyKey": "   "},
        {"prompt": "x", "webhookUrl": "ftp://nowhere"},
        {"prompt": "x", "priority": "high"},  # variables do not coerce
        {"prompt": "x", "outputFormat": "GIFF"},
        {"prompt": "x", "inputImage": "not a file"},
        {"prompt": "with \u0000 nul"},
        {"provider": "local"},  # no prompt
    ]


def _view(server: LiveServer) -> GraphQLView:
    for route in server.app.routes:
        endpoint = getattr(route, "endpoint", None)
        if isinstance(endpoint, GraphQLView):
            return endpoint
    raise AssertionError("no GraphQL view")


TIME = re.compile(r'"\d{4}-\d\d-\d\dT[0-9:.]+(?:\+00:00|Z)?"')
CURSOR = re.compile(r'"eventCursor":"\d+"')  # the new video's first event


def _masked(text: str, new_ids: list[int]) -> str:
    for found in new_ids:
        text = text.replace(str(GlobalID("Video", str(found))), "<new video>")
        text = text.replace(f"?v={found}", "?v=<new>")
    return CURSOR.sub('"eventCursor":"<n>"', TIME.sub('"<time>"', text))


async def _send(
    server: LiveServer, document: str, variables: Any, token: str | None
) -> tuple[int, str, list[int], dict[str, int]]:
    before = set(await Video.all().values_list("id", flat=True))
    counts = await row_counts()
    response = await server.post(document, variables, token=token)
    after = set(await Video.all().values_list("id", flat=True))
    # New tag and theme names are made by the first of the two runs only.
    grown = {
        k: v - counts[k]
        for k, v in (await row_counts()).items()
        if v != counts[k] and k not in ("tags", "themes")
    }
    return response.status_code, response.text, sorted(after - before), grown


async def test_generate_video_compiled_equals_strawberry(
    live_server: LiveServer, alice: Account, bob: Account
) -> None:
    owner = alice.user
    project = await catalog.create_project(viewer=owner, name="P")
    story = await catalog.create_story(
        viewer=owner, title="S", project_id=project.id, paragraphs=["a", "b"]
    )
    others = await catalog.create_project(viewer=bob.user, name="Q")
    inputs = _inputs(
        str(GlobalID("Project", str(project.id))),
        str(GlobalID("Story", str(story.id))),
        str(GlobalID("Project", str(others.id))),
    )
    view = _view(live_server)
    plans = view.compiled
    assert plans is not None
    literal = (
        'mutation { generateVideo(input: {prompt: "lit", tags: ["t"], priority: 2, '
        "outputFormat: WEBM}) { id prompt priority outputFormat } }"
    )
    requests: list[tuple[str, Any, str | None, bool]] = []
    for document, covered in DOCUMENTS:
        for given in inputs:
            requests.append((document, {"input": given}, alice.token, covered))
    requests.append((DOCUMENTS[0][0], {"input": {"prompt": "anon"}}, None, False))
    requests.append((DOCUMENTS[0][0], {"input": {"prompt": "bad"}}, "nonsense", False))
    requests.append((literal, None, alice.token, True))
    requests.append(
        ('mutation { generateVideo(input: {prompt: ""}) { id } }', None, alice.token, True)
    )
    key = {"input": {"prompt": "once", "idempotencyKey": "k-1"}}
    await live_server.post(DOCUMENTS[0][0], key, token=alice.token)  # the first video
    requests.append((DOCUMENTS[0][0], key, alice.token, True))  # answered with it both ways
    answered = 0
    for document, variables, token, covered in requests:
        before = plans.compiled
        code_c, text_c, new_c, grown_c = await _send(live_server, document, variables, token)
        used = plans.compiled - before
        view.compiled = None
        try:
            code_s, text_s, new_s, grown_s = await _send(live_server, document, variables, token)
        finally:
            view.compiled = plans
        assert code_c == code_s, (document, variables)
        # A repeated idempotency key answers the first run's video in both.
        made = new_c + new_s
        assert _masked(text_c, made) == _masked(text_s, made), (document, variables)
        assert grown_c == grown_s, (document, variables)  # written once, as Strawberry does
        assert len(new_c) == len(new_s)
        if covered and '"errors"' not in text_c:
            assert used == 1, (document, variables)
            answered += 1
        if '"errors"' in text_c:
            assert used == 0
    assert answered == 10  # 4 documents x 2 good inputs, the literal, the repeated key


async def test_a_compiled_generate_video_runs_three_statements(
    live_server: LiveServer, alice: Account, count_statements: StatementCounter
) -> None:
    plans = _view(live_server).compiled
    assert plans is not None
    document = DOCUMENTS[0][0]
    await live_server.gql("{ viewer { id } }", token=alice.token)
    counts = []
    for i in range(3):
        before = plans.compiled
        with count_statements.counting() as counter:
            counter.reset()
            body = await live_server.gql(
                document, {"input": {"prompt": f"p{i}"}}, token=alice.token
            )
        assert "errors" not in body and plans.compiled == before + 1
        counts.append(counter.count)
    assert counts[0] == counts[1] == counts[2]


# Inputs for the argument coercion alone (no request): odd JSON values of every kind.
ODD_INPUTS: list[Any] = [
    {"prompt": "p"},
    {"prompt": "p", "durationSeconds": 3, "priority": 2.0, "paragraphIndex": 1.5},
    {"prompt": "p", "priority": True, "durationSeconds": False},
    {"prompt": "p", "priority": 2**31, "durationSeconds": 1e308},
    {"prompt": "p", "tags": "solo", "projectId": 12, "storyId": None},
    {"prompt": "p", "tags": [["nested"]], "theme": ["x"]},
    {"prompt": "p", "tags": [None], "caption": None, "model": None},
    {"prompt": "p", "tags": [], "outputFormat": "mp4", "provider": None},
    {"prompt": "p", "outputFormat": "WEBM", "scheduledAt": "2031-01-02T03:04:05+00:00"},
    {"prompt": "p", "scheduledAt": "yesterday", "idempotencyKey": 5},
    {"prompt": "p", "unknown": 1},
    {"prompt": "p", "inputImage": None, "webhookUrl": "https://example.com/h"},
    {"prompt": 5},
    {"prompt": None},
    {},
    None,
    "not an object",
    [{"prompt": "p"}],
]


def _arguments(plan: Any, schema: Any, raw: Any) -> Any:
    from vidgen.graphql.compiled.values import Fallback

    try:
        return plan.arguments(schema._schema, schema, raw)
    except Fallback:
        return "fallback"


@pytest.mark.parametrize(
    ("document", "direct"),
    [
        (VARIABLE.format("id"), True),
        ("mutation G($i: GenerateVideoInput!, $x: Int) { generateVideo(input: $i) { id } }", False),
        ('mutation { generateVideo(input: { prompt: "literal" }) { id } }', False),
        (
            'mutation G($i: GenerateVideoInput! = { prompt: "d" }) '
            "{ generateVideo(input: $i) { id } }",
            False,
        ),
    ],
)
async def test_the_direct_coercion_equals_graphql_cores(db, document: str, direct: bool) -> None:
    from graphql import parse

    from vidgen.graphql.compiled.mutation import compile_mutation
    from vidgen.graphql.schema import build_schema
    from vidgen.settings import Settings

    schema = build_schema(Settings(_env_file=None))
    parsed = parse(document)
    plan = compile_mutation(schema._schema, parsed, parsed.definitions[0])  # type: ignore[arg-type]
    assert (plan.direct is not None) is direct
    general = compile_mutation(schema._schema, parsed, parsed.definitions[0])  # type: ignore[arg-type]
    general.direct = None
    for value in ODD_INPUTS:
        for raw in ({"input": value, "i": value}, {"i": value, "x": 3}, None, {}):
            assert _arguments(plan, schema, raw) == _arguments(general, schema, raw), raw


async def test_more_compiled_requests_than_pool_connections_all_finish(
    live_server: LiveServer, alice: Account
) -> None:
    # Each compiled generateVideo holds one pool connection for its statements
    # (vidgen.db.one_connection) and gives it back before a transaction (new tags) or an
    # ORM query (a repeated key): three times the pool's size of such requests at once
    # all finish.
    import asyncio

    plans = _view(live_server).compiled
    assert plans is not None
    document = DOCUMENTS[0][0]
    count = 3 * live_server.settings.db_pool_max
    before = plans.compiled

    async def one(i: int) -> dict[str, Any]:
        given = {"prompt": f"p{i}", "tags": [f"new-{i}"], "idempotencyKey": f"k{i % 7}"}
        return await live_server.gql(document, {"input": given}, token=alice.token)

    async with asyncio.timeout(120):
        bodies = await asyncio.gather(*(one(i) for i in range(count)))
    assert all("errors" not in body for body in bodies)
    assert len({body["data"]["generateVideo"]["id"] for body in bodies}) == 7
    assert plans.compiled == before + count
