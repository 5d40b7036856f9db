"""The authorization matrix: another user with the first user's ids gets nothing and changes
nothing; ids reveal nothing (the same answer as for an id that never existed); admins see
everything."""

from __future__ import annotations

from strawberry.relay import GlobalID
from tortoise.connection import get_connection

from tests.api import documents as d
from tests.api.conftest import TABLES, Account, LiveServer

MISSING = {
    "Video": str(GlobalID("Video", "999999")),
    "Project": str(GlobalID("Project", "999999")),
    "Story": str(GlobalID("Story", "999999")),
}


async def snapshot() -> dict[str, list[dict]]:
    """Every row of every table."""
    conn = get_connection("default")
    return {
        table: await conn.execute_query_dict(f'SELECT * FROM "{table}" ORDER BY 1, 2')
        for table in TABLES
    }


async def alices_world(server: LiveServer, alice: Account) -> dict[str, str]:
    t = alice.token
    project = (await server.gql(d.CREATE_PROJECT, {"input": {"name": "Secret"}}, token=t))["data"][
        "createProject"
    ]["id"]
    story = (
        await server.gql(
            d.CREATE_STORY,
            {"input": {"title": "S", "projectId": project, "paragraphs": ["a", "b"]}},
            token=t,
        )
    )["data"]["createStory"]["id"]
    body = await server.gql(
        d.GENERATE_VIDEO,
        {
            "input": {
                "prompt": "private",
                "projectId": project,
                "storyId": story,
                "paragraphIndex": 0,
                "tags": ["alicetag"],
                "theme": "alicetheme",
            }
        },
        token=t,
    )
    video = body["data"]["generateVideo"]
    lists = (await server.gql(d.TAGS_AND_THEMES, token=t))["data"]
    viewer = (await server.gql(d.VIEWER, token=t))["data"]["viewer"]
    return {
        "Video": video["id"],
        "Project": project,
        "Story": story,
        "Tag": lists["tags"][0]["id"],
        "Theme": lists["themes"][0]["id"],
        "User": viewer["id"],
    }


# (document, variables builder, path to the payload); each must come back empty for Bob.
QUERIES = [
    (d.VIDEO, lambda ids: {"id": ids["Video"]}, "video"),
    (d.PROJECT, lambda ids: {"id": ids["Project"]}, "project"),
    (d.STORY, lambda ids: {"id": ids["Story"]}, "story"),
    *[
        (d.NODE, (lambda kind: lambda ids: {"id": ids[kind]})(k), "node")
        for k in ("Video", "Project", "Story", "Tag", "Theme", "User")
    ],
]

LISTS = [
    (d.VIDEO_IDS, lambda ids: {}, "videos"),
    (d.VIDEO_IDS, lambda ids: {"filter": {"projectId": ids["Project"]}}, "videos"),
    (d.VIDEO_IDS, lambda ids: {"filter": {"storyId": ids["Story"]}}, "videos"),
    (d.VIDEO_IDS, lambda ids: {"filter": {"tag": "alicetag", "includeDeleted": True}}, "videos"),
    (d.VIDEO_IDS, lambda ids: {"filter": {"theme": "alicetheme"}}, "videos"),
    (d.PROJECTS, lambda ids: {}, "projects"),
    (d.STORIES, lambda ids: {}, "stories"),
    (d.STORIES, lambda ids: {"projectId": ids["Project"]}, "stories"),
]

# Mutations on Alice's objects: NOT_FOUND, exactly as for an id that never existed.
MUTATIONS = [
    (d.UPDATE_PROJECT, "Project", {"input": {"name": "pwned"}}),
    (d.DELETE_PROJECT, "Project", {}),
    (d.UPDATE_STORY, "Story", {"input": {"title": "pwned"}}),
    (d.DELETE_STORY, "Story", {}),
    (d.UPDATE_VIDEO, "Video", {"input": {"caption": "pwned"}}),
    (d.CANCEL_VIDEO, "Video", {}),
    (d.RETRY_VIDEO, "Video", {}),
    (d.DELETE_VIDEO, "Video", {}),
    (d.RESTORE_VIDEO, "Video", {}),
]

# Mutations that would attach Bob's things to Alice's: BAD_USER_INPUT on that field.
ATTACH = [
    (
        d.CREATE_STORY,
        lambda ids: {"input": {"title": "x", "projectId": ids["Project"]}},
        "projectId",
    ),
    (
        d.GENERATE_VIDEO,
        lambda ids: {"input": {"prompt": "x", "projectId": ids["Project"]}},
        "projectId",
    ),
    (d.GENERATE_VIDEO, lambda ids: {"input": {"prompt": "x", "storyId": ids["Story"]}}, "storyId"),
    (
        d.GENERATE_VIDEO,
        lambda ids: {"input": {"prompt": "x", "storyId": ids["Story"], "paragraphIndex": 0}},
        "storyId",
    ),
]


async def test_another_user_gets_nothing_and_changes_nothing(
    live_server: LiveServer, alice: Account, bob: Account
) -> None:
    ids = await alices_world(live_server, alice)
    bobs_story = (
        await live_server.gql(d.CREATE_STORY, {"input": {"title": "mine"}}, token=bob.token)
    )["data"]["createStory"]["id"]
    before = await snapshot()

    for document, variables, field in QUERIES:
        body = await live_server.gql(document, variables(ids), token=bob.token)
        assert body == {"data": {field: None}}, (field, variables(ids), body)

    for document, variables, field in LISTS:
        body = await live_server.gql(document, variables(ids), token=bob.token)
        assert "errors" not in body, body
        seen = {edge["node"]["id"] for edge in body["data"][field]["edges"]}
        assert seen <= {bobs_story}, (field, variables(ids), seen)
        assert body["data"][field]["totalCount"] == len(seen), (field, variables(ids))

    lists = await live_server.gql(d.TAGS_AND_THEMES, token=bob.token)
    assert lists == {"data": {"tags": [], "themes": []}}

    for document, kind, extra in MUTATIONS:
        body = await live_server.gql(document, {"id": ids[kind], **extra}, token=bob.token)
        missing = await live_server.gql(document, {"id": MISSING[kind], **extra}, token=bob.token)
        assert d.error_codes(body) == ["NOT_FOUND"], (document, body)
        assert body["data"] is None
        assert d.only_error(body)["message"] == d.only_error(missing)["message"]

    for document, variables, field in ATTACH:
        body = await live_server.gql(document, variables(ids), token=bob.token)
        assert d.only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": field}

    moved = await live_server.gql(
        d.UPDATE_STORY, {"id": bobs_story, "input": {"projectId": ids["Project"]}}, token=bob.token
    )
    assert d.only_error(moved)["extensions"] == {"code": "BAD_USER_INPUT", "field": "projectId"}

    assert await snapshot() == before

    # Alice still sees all of it, unchanged.
    video = (await live_server.gql(d.VIDEO, {"id": ids["Video"]}, token=alice.token))["data"]
    assert video["video"]["caption"] is None and video["video"]["status"] == "QUEUED"


async def test_admins_see_everything(live_server: LiveServer, alice: Account, user_factory) -> None:
    ids = await alices_world(live_server, alice)
    admin = await user_factory("root@example.com", admin=True)
    for document, variables, field in QUERIES:
        body = await live_server.gql(document, variables(ids), token=admin.token)
        assert body["data"][field] is not None, (field, body)
    videos = await live_server.gql(d.VIDEO_IDS, token=admin.token)
    assert [e["node"]["id"] for e in videos["data"]["videos"]["edges"]] == [ids["Video"]]
    projects = await live_server.gql(d.PROJECTS, token=admin.token)
    assert projects["data"]["projects"]["totalCount"] == 1
    updated = await live_server.gql(
        d.UPDATE_VIDEO, {"id": ids["Video"], "input": {"caption": "moderated"}}, token=admin.token
    )
    assert updated["data"]["updateVideo"]["caption"] == "moderated"


async def test_anonymous_callers_are_unauthenticated(live_server: LiveServer) -> None:
    ids = {kind: value for kind, value in MISSING.items()}
    ids.update(
        Tag=str(GlobalID("Tag", "1")),
        Theme=str(GlobalID("Theme", "1")),
        User=str(GlobalID("User", "1")),
    )
    for document, variables, _ in [*QUERIES, *LISTS]:
        body = await live_server.gql(document, variables(ids))
        assert d.error_codes(body) == ["UNAUTHENTICATED"], document
    assert set(d.error_codes(await live_server.gql(d.TAGS_AND_THEMES))) == {"UNAUTHENTICATED"}
    for document, kind, extra in MUTATIONS:
        body = await live_server.gql(document, {"id": ids[kind], **extra})
        assert d.error_codes(body) == ["UNAUTHENTICATED"], document
    for document, variables, _ in ATTACH:
        body = await live_server.gql(document, variables(ids))
        assert d.error_codes(body) == ["UNAUTHENTICATED"], document
    body = await live_server.gql(d.CREATE_PROJECT, {"input": {"name": "x"}})
    assert d.error_codes(body) == ["UNAUTHENTICATED"]
    assert d.error_codes(await live_server.gql(d.LOGOUT)) == ["UNAUTHENTICATED"]
