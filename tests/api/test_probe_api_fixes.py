"""Requests a probe found mishandled: forged cursors outside UTC's range, documents that
leave the operation to run unsaid, ``first: 0`` pages, and email addresses holding
characters that do not show."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from websockets.asyncio.client import connect

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, row_counts, start_live_server
from tests.test_cli import _env, vidgen
from vidgen import errors
from vidgen.models import Project, User
from vidgen.services import users

PROJECT_VIDEOS = """
query ProjectVideos($id: ID!, $first: Int, $after: String) {
  project(id: $id) {
    videos(first: $first, after: $after) {
      totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor }
    }
  }
}
"""

STORY_VIDEOS = """
query StoryVideos($id: ID!, $first: Int, $after: String) {
  story(id: $id) {
    videos(first: $first, after: $after) {
      totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor }
    }
  }
}
"""

# Two operations, the mutation first: without operationName nothing may run.
MUTATION_THEN_QUERY = (
    'mutation B { createProject(input: {name: "ambig"}) { id } } query A { viewer { email } }'
)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


async def _catalog(server: LiveServer, account: Account) -> tuple[str, str]:
    """A project with a story and two videos of that story: (project id, story id)."""
    t = account.token
    project = (await server.gql(d.CREATE_PROJECT, {"input": {"name": "P"}}, token=t))["data"][
        "createProject"
    ]["id"]
    story = (
        await server.gql(
            d.CREATE_STORY,
            {"input": {"title": "S", "projectId": project, "paragraphs": ["one", "two"]}},
            token=t,
        )
    )["data"]["createStory"]["id"]
    for index in (0, 1):
        body = await server.gql(
            d.GENERATE_VIDEO,
            {"input": {"prompt": f"p{index}", "storyId": story, "paragraphIndex": index}},
            token=t,
        )
        assert "errors" not in body, body
    return project, story


async def test_cursors_outside_utc_range_are_bad_input(
    live_server: LiveServer, alice: Account
) -> None:
    """An offset that moves a cursor's instant before year 1 or after 9999 in UTC failed
    inside the PostgreSQL driver (INTERNAL) and read a page on SQLite."""
    project, story = await _catalog(live_server, alice)
    for stamp in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        after = _cursor(f"c1:{stamp}|5")
        for query, variables, path in (
            (d.PROJECTS, {}, ("projects",)),
            (d.STORIES, {}, ("stories",)),
            (d.VIDEO_IDS, {}, ("videos",)),
            (d.VIDEO_IDS, {"filter": {"projectId": project}}, ("videos",)),
            (d.VIDEO_IDS, {"filter": {"status": ["QUEUED"]}}, ("videos",)),
            (PROJECT_VIDEOS, {"id": project}, ("project", "videos")),
            (STORY_VIDEOS, {"id": story}, ("story", "videos")),
        ):
            body = await live_server.gql(query, {**variables, "after": after}, token=alice.token)
            error = d.only_error(body)
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, (
                stamp,
                path,
                body,
            )
    # The same instants written in UTC, at the edges of the range, still read (empty) pages.
    for stamp in ("0001-01-01T05:00:00+05:00", "9999-12-31T18:59:59-05:00"):
        body = await live_server.gql(
            d.VIDEO_IDS, {"after": _cursor(f"c1:{stamp}|5")}, token=alice.token
        )
        assert "errors" not in body, body


async def test_several_operations_need_an_operation_name(
    live_server: LiveServer, alice: Account
) -> None:
    """Without operationName, a document with several operations ran its first one (here a
    mutation); an operationName naming none of them was a plain-text 400."""
    before = await row_counts()
    response = await live_server.client.post(
        "/graphql",
        json={"query": MUTATION_THEN_QUERY},
        headers=live_server.headers(alice.token),
    )
    body = response.json()
    assert body["data"] is None, body
    assert d.only_error(body)["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "operationName",
    }
    assert "operationName" in d.only_error(body)["message"]
    response = await live_server.client.get(
        "/graphql",
        params={"query": "query A { viewer { email } } query B { projects { totalCount } }"},
        headers=live_server.headers(alice.token),
    )
    assert d.only_error(response.json())["extensions"]["field"] == "operationName", response.text
    response = await live_server.client.post(
        "/graphql",
        json={"query": MUTATION_THEN_QUERY, "operationName": "Nope"},
        headers=live_server.headers(alice.token),
    )
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert d.only_error(response.json())["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "operationName",
    }
    assert await row_counts() == before
    assert not await Project.exists()
    # Named, the chosen operation (only) runs.
    response = await live_server.client.post(
        "/graphql",
        json={"query": MUTATION_THEN_QUERY, "operationName": "A"},
        headers=live_server.headers(alice.token),
    )
    assert response.json() == {"data": {"viewer": {"email": alice.email}}}
    assert not await Project.exists()
    # One operation needs no name, even when the keywords appear in its text.
    body = await live_server.gql(
        'query Q { videos(filter: {search: "query mutation"}) { totalCount } }', token=alice.token
    )
    assert body == {"data": {"videos": {"totalCount": 0}}}, body


async def test_several_operations_over_websocket_need_an_operation_name(
    live_server: LiveServer, alice: Account
) -> None:
    async with connect(live_server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        payload = {"Authorization": f"Bearer {alice.token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": MUTATION_THEN_QUERY}}
        await ws.send(json.dumps(subscribe))
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and message["id"] == "1", message
        assert [e["extensions"] for e in message["payload"]] == [
            {"code": "BAD_USER_INPUT", "field": "operationName"}
        ]
        named = {"id": "2", "type": "subscribe", "payload": {**subscribe["payload"]}}
        named["payload"]["operationName"] = "A"
        await ws.send(json.dumps(named))
        message = json.loads(await ws.recv())
        assert message == {
            "id": "2",
            "type": "next",
            "payload": {"data": {"viewer": {"email": alice.email}}},
        }, message
    assert not await Project.exists()


async def test_several_operations_over_legacy_graphql_ws_need_an_operation_name(
    db, alice: Account
) -> None:
    document = "subscription A { videoUpdates { id } } subscription B { videoUpdates { id } }"
    async with start_live_server(db, legacy_graphql_ws=True) as server:
        async with connect(server.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
            payload = {"Authorization": f"Bearer {alice.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "start", "payload": {"query": document}}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert message["type"] == "error" and message["id"] == "1", message
            assert message["payload"]["extensions"] == {
                "code": "BAD_USER_INPUT",
                "field": "operationName",
            }


async def test_first_zero_says_whether_rows_follow(live_server: LiveServer, alice: Account) -> None:
    """``first: 0`` answered hasNextPage false however many rows followed the cursor."""
    project, story = await _catalog(live_server, alice)
    t = alice.token
    for query, variables, path in (
        (d.PROJECTS, {}, ("projects",)),
        (d.STORIES, {}, ("stories",)),
        (d.VIDEO_IDS, {}, ("videos",)),
        (d.VIDEO_IDS, {"filter": {"storyId": story}}, ("videos",)),
        (PROJECT_VIDEOS, {"id": project}, ("project", "videos")),
        (STORY_VIDEOS, {"id": story}, ("story", "videos")),
    ):
        full = await live_server.gql(query, {**variables, "first": 10}, token=t)
        connection = full["data"]
        for key in path:
            connection = connection[key]
        assert connection["edges"], (path, full)
        cursors = [edge["cursor"] for edge in connection["edges"]]
        # (after, whether a row follows it)
        for after, follows in ((None, True), (cursors[0], len(cursors) > 1), (cursors[-1], False)):
            body = await live_server.gql(query, {**variables, "first": 0, "after": after}, token=t)
            assert "errors" not in body, body
            page = body["data"]
            for key in path:
                page = page[key]
            assert page["edges"] == [], body
            assert page["pageInfo"] == {"hasNextPage": follows, "endCursor": None}, (path, after)
    body = await live_server.gql(d.VIDEO_IDS, {"first": 0, "filter": {"tag": "none"}}, token=t)
    assert body["data"]["videos"]["pageInfo"]["hasNextPage"] is False, body


INVISIBLE_EMAILS = (
    "\u200bu@ex.io",  # ZERO WIDTH SPACE (Cf): reads as u@ex.io
    "u\u200d@ex.io",  # ZERO WIDTH JOINER (Cf)
    "\ufeffu@ex.io",  # BYTE ORDER MARK (Cf)
    "u@e\u00adx.io",  # SOFT HYPHEN (Cf)
    "ctl\x01@x.io",  # a control (Cc)
    "ctl\x7f@x.io",  # DEL (Cc)
    "u@ex.io\x85x",  # NEXT LINE (Cc)
    "u\u3000v@ex.io",  # IDEOGRAPHIC SPACE (Zs)
    "u\u2028v@ex.io",  # LINE SEPARATOR (Zl)
    "u\u2029v@ex.io",  # PARAGRAPH SEPARATOR (Zp)
    "u\ud800@ex.io",  # a lone surrogate (Cs): no character at all
)


@pytest.mark.parametrize("email", INVISIBLE_EMAILS)
async def test_emails_with_invisible_characters_are_refused(db, email: str) -> None:
    with pytest.raises(errors.BadUserInput) as refused:
        await users.create_user(email=email, password="password123")
    assert refused.value.extensions.get("field") == "email"
    with pytest.raises(errors.BadUserInput):
        await users.register(email=email, password="password123")
    assert not await User.exists()
    # Visible non-ASCII letters are still fine.
    made = await users.create_user(email="zoë@exämple.io", password="password123")
    assert made.email == "zoë@exämple.io"


async def test_register_and_login_refuse_lookalike_emails(
    live_server: LiveServer, user_factory
) -> None:
    await user_factory("u@ex.io")
    before = await row_counts()
    for email in ("\u200bu@ex.io", "ctl\x01@x.io"):
        body = await live_server.gql(
            d.REGISTER, {"input": {"email": email, "password": "pw123456"}}
        )
        assert d.only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "email"}, (
            body
        )
    assert await row_counts() == before
    # An account made before the check (not migrated) no longer signs in: its address is
    # answered like any unknown one.
    legacy = await users.create_user(email="legacy@ex.io", password="password123")
    await User.filter(id=legacy.id).update(email="\u200blegacy@ex.io")
    body = await live_server.gql(
        d.LOGIN, {"input": {"email": "\u200blegacy@ex.io", "password": "password123"}}
    )
    assert d.error_codes(body) == ["UNAUTHENTICATED"], body
    assert d.only_error(body)["message"] == "Wrong email or password."


async def test_createuser_refuses_a_control_character(db) -> None:
    done = await vidgen("createuser", "ctl\x01@x.io", env=_env(db))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "error:" in done.stderr and "email" in done.stderr
    assert not await User.exists()
