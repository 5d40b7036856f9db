"""Inline field execution (vidgen.graphql.fastpath) gives exactly graphql-core's results.

Every document runs twice, on a fresh context each time: with the executor vidgen serves
(``build_schema()``, fields inlined) and with the same executor on graphql-core's path for
every field (``build_schema(fast_fields=False)``). The whole results (data, error messages,
paths, locations, codes) must be equal. A toy schema covers what the real data cannot
produce on demand: None for non-null fields, values a scalar or enum cannot represent,
attributes that raise, awaitable attributes, non-lists and bad list items.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from typing import Any

import pytest
import strawberry
from strawberry.dataloader import DataLoader

from tests.api.conftest import Account
from vidgen.graphql.context import Context
from vidgen.graphql.dataloaders import Loaders
from vidgen.graphql.fastpath import field_plans
from vidgen.graphql.schema import PlainExecutionContext, VidgenExecutionContext, build_schema
from vidgen.models import Project, Story, Video
from vidgen.runtime import Runtime
from vidgen.services import catalog, videos
from vidgen.settings import Settings

LIST = """
query List($first: Int!) {
  videos(first: $first) {
    edges { node {
      id prompt status createdAt
      owner { id email }
      project { id name }
      story { id title }
      theme { name }
      tags { name }
    } }
  }
}
"""

EVERYTHING = """
query Everything($first: Int, $withTags: Boolean!, $skipOwner: Boolean!) {
  __typename
  videos(first: $first) {
    __typename
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges {
      cursor
      node {
        ...Fields
        again: id
        ... on Video { st: status theme { __typename id name } }
        owner @skip(if: $skipOwner) { id email isAdmin }
        tags @include(if: $withTags) { __typename id name }
        owner { __typename }
      }
    }
  }
}
fragment Fields on Video {
  id prompt status statusMessage outputFormat progress provider model caption videoStyle
  resolution durationSeconds frameRate fileSize width height paragraphIndex predictionId
  errorMessage retryCount priority scheduledAt version createdAt updatedAt completedAt
  deletedAt videoUrl thumbnailUrl inputImageUrl eventCursor
  project { id name description createdAt updatedAt }
  story { id title paragraphs createdAt project { id name } }
  statusHistory { __typename at message status }
}
"""

MERGED = """
{
  videos(first: 5) {
    edges { node { owner { id } owner { email } a: tags { name } a: tags { id } } }
  }
  viewer { id email isAdmin __typename }
}
"""

NESTED = """
query Nested($videos: Int) {
  projects(first: 10) {
    totalCount
    edges { cursor node {
      id name
      videos(first: $videos) {
        totalCount
        edges { cursor node { id status theme { name } tags { name } owner { email } } }
      }
    } }
  }
  stories { edges { node {
    id title project { name } videos(first: 2) { edges { node { id } } }
  } } }
  tags { id name }
  themes { id name }
}
"""

NODE = """
query Node($id: ID!) {
  node(id: $id) { __typename id ... on Video { prompt status tags { name } owner { email } } }
  video(id: $id) { id status project { name } }
}
"""

BAD_FIRST = "{ videos(first: -1) { edges { node { id } } } }"


def _normalized(result: Any) -> dict[str, Any]:
    """The result as a client gets it, with the random error ids and the order of errors
    made comparable."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        errors = []
        for error in result.errors:
            formatted = dict(error.formatted)
            extensions = dict(formatted.get("extensions") or {})
            if "errorId" in extensions:
                extensions["errorId"] = "<id>"
            formatted["extensions"] = extensions
            errors.append(formatted)
        # The spec leaves the order of errors open, and graphql-core appends each as its
        # field fails: with async loaders that is the order they finish, which load decides.
        body["errors"] = sorted(errors, key=lambda e: (repr(e.get("path")), e["message"]))
    return body


class _Counting:
    """Counts ResolveInfo objects built (one per field executed on graphql-core's path)."""

    def __init__(self) -> None:
        self.count = 0

    def wrap(self, original: Any) -> Any:
        def build_resolve_info(executor: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(executor, *args, **kwargs)

        return build_resolve_info


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    counter = _Counting()
    monkeypatch.setattr(
        VidgenExecutionContext,
        "build_resolve_info",
        counter.wrap(VidgenExecutionContext.build_resolve_info),
    )
    return counter


async def _library(runtime: Runtime, owner: Account) -> dict[str, Any]:
    """Videos with and without theme, project, story and tags; one deleted; one processing."""
    viewer = owner.user
    project = await catalog.create_project(viewer=viewer, name="P", description=None)
    other = await catalog.create_project(viewer=viewer, name="Q", description="second")
    story = await catalog.create_story(
        viewer=viewer, title="S", project_id=project.id, paragraphs=["one", "two"]
    )
    await catalog.create_story(viewer=viewer, title="Loose", paragraphs=[])
    made = []
    for i in range(12):
        made.append(
            await videos.generate_video(
                runtime=runtime,
                viewer=viewer,
                prompt=f"prompt {i}",
                project_id=(project.id, other.id, None)[i % 3],
                story_id=story.id if i % 6 == 0 else None,
                theme=None if i % 5 == 0 else f"theme {i % 2}",
                tags=[f"tag{j}" for j in range(i % 4)],
                caption=None if i % 2 else f"caption {i}",
            )
        )
    await videos.delete_video(runtime=runtime, viewer=viewer, video_id=made[3].id)
    await Video.filter(id=made[1].id).update(status="processing", status_message="step 2 of 3")
    await Video.filter(id=made[2].id).update(status="failed", error_message="boom", progress=0.5)
    return {"first": made[0], "project": project}


async def _run(
    schema: Any,
    runtime: Runtime,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    loaders: type[Loaders] = Loaders,
) -> dict[str, Any]:
    context = Context(runtime=runtime, _loaders=loaders())
    if token is not None:
        await context.authenticate(f"Bearer {token}")
    result = await schema.execute(query, variable_values=variables, context_value=context)
    return _normalized(result)


async def _both(
    settings: Settings,
    runtime: Runtime,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    loaders: type[Loaders] = Loaders,
) -> tuple[dict[str, Any], dict[str, Any]]:
    fast = await _run(_SCHEMAS[True], runtime, token, query, variables, loaders)
    plain = await _run(_SCHEMAS[False], runtime, token, query, variables, loaders)
    return fast, plain


_SCHEMAS = {True: build_schema(), False: build_schema(fast_fields=False)}


async def test_real_documents_give_graphql_cores_results(
    db: Settings, alice: Account, bob: Account, counting: _Counting
) -> None:
    runtime = Runtime.create(db)
    made = await _library(runtime, alice)
    await _library(runtime, bob)  # never visible to alice
    video_id = strawberry.relay.to_base64("Video", made["first"].id)
    project_id = strawberry.relay.to_base64("Project", made["project"].id)
    cases: list[tuple[str, dict[str, Any] | None]] = [
        (LIST, {"first": 50}),
        (LIST, {"first": 3}),
        (EVERYTHING, {"first": 20, "withTags": True, "skipOwner": False}),
        (EVERYTHING, {"first": 7, "withTags": False, "skipOwner": True}),
        (MERGED, None),
        (NESTED, {"videos": 3}),
        (NESTED, {"videos": 0}),
        (NODE, {"id": video_id}),
        (NODE, {"id": project_id}),
        (BAD_FIRST, None),
    ]
    for query, variables in cases:
        fast, plain = await _both(db, runtime, alice.token, query, variables)
        assert fast == plain, (query, variables)
        if query is LIST and variables == {"first": 50}:
            assert len(fast["data"]["videos"]["edges"]) == 11
    # Not signed in: UNAUTHENTICATED from the permission classes, on both paths.
    fast, plain = await _both(db, runtime, None, LIST, {"first": 5})
    assert fast == plain and fast["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # The fast path did run: the plain executor builds an Info for every field. (Relations
    # not yet in a loader, awaited the first time, take graphql-core's path: the root list
    # no longer preloads them, vidgen.graphql.compiled answers it when it can.)
    infos = {}
    for fast_fields, schema in _SCHEMAS.items():
        counting.count = 0
        await _run(schema, runtime, alice.token, LIST, {"first": 50})
        infos[fast_fields] = counting.count
    assert infos[True] * 5 < infos[False], infos


class _BrokenThemes(Loaders):
    """A theme lookup that fails (a nullable relation: only that field is null)."""

    def __init__(self) -> None:
        super().__init__()

        async def fail(keys: list[int]) -> list[Any]:
            raise RuntimeError("theme table on fire")

        self.theme_by_id = DataLoader(load_fn=fail)


class _BrokenTags(Loaders):
    """A tags lookup that fails (a non-null list: the null propagates to the page)."""

    def __init__(self) -> None:
        super().__init__()

        async def fail(keys: list[int]) -> list[Any]:
            raise RuntimeError("tags table on fire")

        self.tags_by_video_id = DataLoader(load_fn=fail)


class _NoUsers(DataLoader[int, Any]):
    def __init__(self) -> None:
        async def none(keys: list[int]) -> list[Any]:
            return [None for _ in keys]

        super().__init__(load_fn=none)

    def prime(self, key: int, value: Any, force: bool = False) -> None:
        pass  # not even the viewer


class _MissingOwners(Loaders):
    """Owners that are not found: None for the non-null ``owner``."""

    def __init__(self) -> None:
        super().__init__()
        self.user_by_id = _NoUsers()


class _WrongProjects(Loaders):
    """A project lookup that returns stories (``is_type_of`` refuses them)."""

    def __init__(self) -> None:
        super().__init__()

        async def stories(keys: list[int]) -> list[Any]:
            story = await Story.first()
            return [story for _ in keys]

        self.project_by_id = DataLoader(load_fn=stories)


@pytest.mark.parametrize("loaders", [_BrokenThemes, _BrokenTags, _MissingOwners, _WrongProjects])
async def test_errors_and_null_propagation_are_graphql_cores(
    db: Settings, alice: Account, loaders: type[Loaders]
) -> None:
    runtime = Runtime.create(db)
    await _library(runtime, alice)
    assert await Project.all().count() == 2
    for query, variables in (
        (LIST, {"first": 50}),
        (EVERYTHING, {"first": 20, "withTags": True, "skipOwner": False}),
        (NESTED, {"videos": 3}),
    ):
        fast, plain = await _both(db, runtime, alice.token, query, variables, loaders=loaders)
        assert fast == plain, (loaders.__name__, query)
        assert fast.get("errors"), (loaders.__name__, query)
        assert all(e["extensions"]["code"] == "INTERNAL" for e in fast["errors"])
        assert all(e["extensions"]["errorId"] == "<id>" for e in fast["errors"])


# --- a toy schema: values the real data cannot produce on demand --------------------------


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Row:
    """A plain object with attributes (like an ORM row); ``raising`` raises on read."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    @property
    def raising(self) -> str:
        raise ValueError("cannot read this")


@strawberry.type
class Thing:
    name: str
    count: int
    ratio: float | None
    color: Color
    when: dt.datetime | None
    nickname: str | None
    raising: str | None
    child: Thing | None
    kids: list[Thing]
    maybe_kids: list[Thing | None] | None
    labels: list[str]

    @strawberry.field
    @field_plans.direct
    def double(root: Any, context: Any) -> int:
        return root.count * 2

    @strawberry.field
    @field_plans.direct
    def picked(root: Any, context: Any) -> Thing:
        return root.optional_kid

    @strawberry.field
    async def later(self, root: strawberry.Parent[Any]) -> str:
        await asyncio.sleep(0)
        return root.name.upper()


@strawberry.type
class ToyQuery:
    @strawberry.field
    def things(self, info: strawberry.Info) -> list[Thing | None]:
        return info.context["things"]()

    @strawberry.field
    def one(self, info: strawberry.Info) -> Thing:
        return info.context["things"]()[0]


def _fine(label: str, **extra: Any) -> Row:
    values = {
        "name": label,
        "count": 3,
        "ratio": 0.5,
        "color": Color.RED,
        "when": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "nickname": None,
        "child": None,
        "kids": [],
        "maybe_kids": None,
        "labels": ["a", "b"],
        "optional_kid": Row(name="picked"),
    }
    values.update(extra)
    return Row(**values)


def _later(value: str) -> asyncio.Future[str]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def _toy_things() -> list[Any]:
    kid = _fine("kid", kids=[_fine("grandkid")])
    # Objects under several parents: each place must report its own errors.
    shared_bad = _fine("shared bad", count="seven", ratio="many")
    shared_ok = _fine("shared ok")
    return [
        _fine("fine", child=kid, kids=[kid, _fine("k2")], maybe_kids=[None, kid], optional_kid=kid),
        _fine("shares", kids=[shared_ok, shared_ok], maybe_kids=[shared_bad, shared_ok]),
        _fine("shares too", child=shared_ok, kids=[shared_ok], maybe_kids=[shared_bad, None]),
        _fine("null name", name=None),
        _fine("too big", count=2**40),
        _fine("bad enum", color="green"),
        _fine("bad float", ratio="many"),
        _fine("awaitable nickname", nickname=_later("nick")),
        _fine("exception value", child=ValueError("a value that is an exception")),
        _fine("null kid", kids=[_fine("ok"), None]),
        _fine("null label", labels=["x", None]),
        _fine("string labels", labels="abc"),
        _fine("tuple labels", labels=("t", "u")),
        _fine("bad kid", kids=[_fine("x", count="seven")]),
        _fine("enum by value", color="blue"),
        _fine("int ratio", ratio=2, when=None),
        _fine("bool count", count=True),
        _fine("none picked", optional_kid=None),
        None,
    ]


TOY_DOCUMENTS = [
    """{ things { name count ratio color when nickname double labels __typename
                child { name kids { name } } kids { name count } maybeKids { name }
                picked { name } } }""",
    "{ things { raising name kids { raising name } maybeKids { raising count } } }",
    "{ things { child { name ratio } maybeKids { name ratio } kids { name } a: kids { count } } }",
    "{ things { later name a: name b: count } }",
    "{ things { ...F kids { ...F } } } fragment F on Thing { name color double }",
    "{ one { name kids { name } picked { name } } }",
    """query Q($x: Boolean!) { things { name @include(if: $x) count @skip(if: $x)
                                        kids @include(if: $x) { name } } }""",
]


@pytest.mark.parametrize("document", TOY_DOCUMENTS)
@pytest.mark.parametrize("include", [True, False])
async def test_toy_schema_gives_graphql_cores_results(
    document: str, include: bool, counting: _Counting
) -> None:
    results, infos = [], []
    for context_class in (VidgenExecutionContext, PlainExecutionContext):
        schema = strawberry.Schema(query=ToyQuery, execution_context_class=context_class)
        counting.count = 0
        result = await schema.execute(
            document, variable_values={"x": include}, context_value={"things": _toy_things}
        )
        results.append(_normalized(result))
        infos.append(counting.count)
    fast, plain = results
    assert fast == plain
    assert fast["data"] is not None
    assert infos[0] < infos[1]  # the fast path ran


def test_plans_inline_only_what_they_may() -> None:
    schema = build_schema()._schema
    video = schema.type_map["Video"]
    plans = {
        name: field_plans.plan_field(video, name, field) for name, field in video.fields.items()
    }
    assert plans["prompt"].kind == field_plans.BASIC
    assert plans["id"].kind == field_plans.NODE_ID
    assert plans["owner"].kind == field_plans.DIRECT
    assert plans["eventCursor"] is None  # async
    query = schema.type_map["Query"]
    for name, field in query.fields.items():  # arguments or permission classes: never inlined
        if name != "viewer":
            assert field_plans.plan_field(query, name, field) is None, name
