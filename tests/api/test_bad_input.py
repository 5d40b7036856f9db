"""Bad input is refused with BAD_USER_INPUT naming the field, and writes nothing: after each
rejected mutation every table has the same rows and no media file was stored."""

from __future__ import annotations

import datetime as dt
import string

import pytest
from strawberry.relay import GlobalID

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, media_files, row_counts
from tests.api.test_authorization import snapshot
from vidgen import db

PAST = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
NO_PROJECT = str(GlobalID("Project", "424242"))
NO_STORY = str(GlobalID("Story", "424242"))


def generate_cases(project: str, other_project: str, story: str) -> list[tuple[dict, str]]:
    """(input fields, the field named in the error)."""
    return [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"provider": "nope"}, "provider"),
        ({"provider": "runway"}, "provider"),  # known but not configured
        ({"resolution": "999x999"}, "resolution"),
        ({"resolution": "big"}, "resolution"),
        ({"durationSeconds": 0}, "durationSeconds"),
        ({"durationSeconds": -2}, "durationSeconds"),
        ({"durationSeconds": 31}, "durationSeconds"),
        ({"model": "no-such-model"}, "model"),
        ({"projectId": "not an id"}, "projectId"),
        ({"projectId": NO_PROJECT}, "projectId"),
        ({"projectId": NO_STORY}, "projectId"),  # an id of another type
        ({"storyId": NO_STORY}, "storyId"),
        ({"storyId": story, "projectId": other_project}, "storyId"),
        ({"paragraphIndex": 0}, "paragraphIndex"),
        ({"storyId": story, "paragraphIndex": 2}, "paragraphIndex"),
        ({"storyId": story, "paragraphIndex": -1}, "paragraphIndex"),
        ({"scheduledAt": PAST}, "scheduledAt"),
        ({"priority": 101}, "priority"),
        ({"priority": -101}, "priority"),
        ({"caption": "c" * 256}, "caption"),
        ({"videoStyle": "s" * 101}, "videoStyle"),
        ({"tags": ["ok", "  "]}, "tags"),
        ({"tags": ["t" * 101]}, "tags"),
        ({"tags": [f"tag{i}" for i in range(21)]}, "tags"),
        ({"theme": " "}, "theme"),
        ({"idempotencyKey": ""}, "idempotencyKey"),
        ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
        ({"provider": "local", "tags": ["new-tag"], "theme": "new", "prompt": ""}, "prompt"),
    ]


async def test_rejected_mutations_write_nothing(live_server: LiveServer, alice: Account) -> None:
    t = alice.token
    project = (await live_server.gql(d.CREATE_PROJECT, {"input": {"name": "P"}}, token=t))["data"][
        "createProject"
    ]["id"]
    other_project = (await live_server.gql(d.CREATE_PROJECT, {"input": {"name": "Q"}}, token=t))[
        "data"
    ]["createProject"]["id"]
    story = (
        await live_server.gql(
            d.CREATE_STORY,
            {"input": {"title": "S", "projectId": project, "paragraphs": ["a", "b"]}},
            token=t,
        )
    )["data"]["createStory"]["id"]
    video = (
        await live_server.gql(
            d.GENERATE_VIDEO,
            {"input": {"prompt": "p", "storyId": story, "paragraphIndex": 1}},
            token=t,
        )
    )["data"]["generateVideo"]["id"]
    await live_server.gql(d.VIEWER, token=t)  # token's last_used_at is now fresh

    cases: list[tuple[str, dict, str]] = [
        (d.GENERATE_VIDEO, {"input": {"prompt": "ok", **fields}}, field)
        for fields, field in generate_cases(project, other_project, story)
    ]
    cases += [
        (d.CREATE_PROJECT, {"input": {"name": ""}}, "name"),
        (d.CREATE_PROJECT, {"input": {"name": "n" * 201}}, "name"),
        (d.CREATE_PROJECT, {"input": {"name": "ok", "description": "d" * 10_001}}, "description"),
        (d.UPDATE_PROJECT, {"id": project, "input": {"name": "  "}}, "name"),
        (d.CREATE_STORY, {"input": {"title": ""}}, "title"),
        (d.CREATE_STORY, {"input": {"title": "ok", "paragraphs": ["a", ""]}}, "paragraphs"),
        (d.CREATE_STORY, {"input": {"title": "ok", "projectId": NO_PROJECT}}, "projectId"),
        (d.UPDATE_STORY, {"id": story, "input": {"paragraphs": ["only one"]}}, "paragraphs"),
        (d.UPDATE_STORY, {"id": story, "input": {"title": ""}}, "title"),
        (d.UPDATE_VIDEO, {"id": video, "input": {"caption": "c" * 256}}, "caption"),
        (d.UPDATE_VIDEO, {"id": video, "input": {"tags": ["a", ""]}}, "tags"),
        (d.UPDATE_VIDEO, {"id": video, "input": {"theme": "  "}}, "theme"),
        (d.VIDEO_IDS, {"filter": {"projectId": "garbage"}}, "projectId"),
        (d.REGISTER, {"input": {"email": "not-an-email", "password": "long enough"}}, "email"),
        (d.REGISTER, {"input": {"email": "x@example.com", "password": "short"}}, "password"),
    ]

    before_counts = await row_counts()
    before = await snapshot()
    for document, variables, field in cases:
        body = await live_server.gql(document, variables, token=t)
        error = d.only_error(body)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, (variables, body)
        assert error["message"]
        assert await row_counts() == before_counts, variables
        assert media_files(live_server.settings) == []
    assert await snapshot() == before


async def test_invalid_graphql_values_are_bad_user_input(
    live_server: LiveServer, alice: Account
) -> None:
    before = await row_counts()
    for input_ in (
        {"prompt": "x", "outputFormat": "AVI"},
        {"prompt": "x", "priority": "high"},
        {"prompt": "x", "scheduledAt": "tomorrow"},
        {"prompt": None},
        {},
    ):
        body = await live_server.gql(d.GENERATE_VIDEO, {"input": input_}, token=alice.token)
        assert d.error_codes(body) == ["BAD_USER_INPUT"], (input_, body)
    assert await row_counts() == before


def _without_error_ids(body: dict) -> dict:
    for error in body.get("errors") or []:
        error.get("extensions", {}).pop("errorId", None)
    return body


async def test_ids_and_filters_no_row_can_match_are_answered_like_missing_rows(
    live_server: LiveServer, alice: Account
) -> None:
    """Ids whose number no row can have (beyond 32 bits, negative) and filter values longer
    than their column answer exactly like a missing row: no INTERNAL (PostgreSQL refused
    the numbers and the ORM the long provider name), nothing written."""
    import base64

    before = await row_counts()
    missing = "424242"
    for number in (str(2**40), str(-(2**40)), str(2**31), "0"):
        for query, variables in (
            (d.VIDEO, lambda n: {"id": str(GlobalID("Video", n))}),
            (d.NODE, lambda n: {"id": str(GlobalID("Video", n))}),
            (d.NODE, lambda n: {"id": str(GlobalID("Project", n))}),
            (d.PROJECT, lambda n: {"id": str(GlobalID("Project", n))}),
            (d.VIDEO_IDS, lambda n: {"filter": {"projectId": str(GlobalID("Project", n))}}),
            (d.VIDEO_IDS, lambda n: {"filter": {"storyId": str(GlobalID("Story", n))}}),
            (d.DELETE_VIDEO, lambda n: {"id": str(GlobalID("Video", n))}),
            (d.RETRY_VIDEO, lambda n: {"id": str(GlobalID("Video", n))}),
            (d.CANCEL_VIDEO, lambda n: {"id": str(GlobalID("Video", n))}),
            (d.DELETE_PROJECT, lambda n: {"id": str(GlobalID("Project", n))}),
        ):
            body = await live_server.gql(query, variables(number), token=alice.token)
            like = await live_server.gql(query, variables(missing), token=alice.token)
            assert "INTERNAL" not in d.error_codes(body), (query, number, body)
            assert _without_error_ids(body) == _without_error_ids(like), (query, number)
        cursor = base64.urlsafe_b64encode(f"c1:2026-01-01T00:00:00+00:00|{number}".encode())
        body = await live_server.gql(d.VIDEO_IDS, {"after": cursor.decode()}, token=alice.token)
        assert "INTERNAL" not in d.error_codes(body), body
    for stamp in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"):
        cursor = base64.urlsafe_b64encode(f"c1:{stamp}|{2**31 - 1}".encode()).decode()
        body = await live_server.gql(d.VIDEO_IDS, {"after": cursor}, token=alice.token)
        assert body["data"]["videos"]["edges"] == [] and "errors" not in body, body
    body = await live_server.gql(d.VIDEO_IDS, {"filter": {"provider": "x" * 33}}, token=alice.token)
    assert d.only_error(body)["extensions"]["field"] == "provider", body
    assert d.error_codes(body) == ["BAD_USER_INPUT"]
    body = await live_server.gql(d.VIDEO_IDS, {"filter": {"provider": "X" * 32}}, token=alice.token)
    assert body["data"]["videos"]["edges"] == [] and "errors" not in body, body
    assert await row_counts() == before


async def test_an_id_spelled_unlike_ours_names_no_row(
    live_server: LiveServer, alice: Account
) -> None:
    """A global id's number names a row only when written as vidgen writes ids: "Video:007",
    "Video: 7" or "Video:٧" (an Arabic-Indic seven; Python's int() reads all of them as 7)
    answer like a missing row instead of acting on video 7."""
    body = await live_server.gql(d.CREATE_PROJECT, {"input": {"name": "Ids"}}, token=alice.token)
    project = GlobalID.from_id(body["data"]["createProject"]["id"])
    number = project.node_id
    assert (await live_server.gql(d.PROJECT, {"id": str(project)}, token=alice.token))["data"][
        "project"
    ], "the canonical id names the project"
    seven_alike = "".join(chr(0x0660 + int(c)) for c in number)  # the same digits, Arabic-Indic
    for spelled in (f"0{number}", f" {number}", f"{number} ", f"+{number}", seven_alike):
        gid = str(GlobalID("Project", spelled))
        for query in (d.PROJECT, d.NODE):
            body = await live_server.gql(query, {"id": gid}, token=alice.token)
            like = await live_server.gql(
                query, {"id": str(GlobalID("Project", "424242"))}, token=alice.token
            )
            assert _without_error_ids(body) == _without_error_ids(like), (spelled, body)
        body = await live_server.gql(d.DELETE_PROJECT, {"id": gid}, token=alice.token)
        assert "errors" in body or body["data"]["deleteProject"] is False, (spelled, body)
    assert (await live_server.gql(d.PROJECT, {"id": str(project)}, token=alice.token))["data"][
        "project"
    ], "no spelling deleted it"


BASE64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def _same_bytes_spelled_otherwise(text: str) -> str:
    """``text`` (padded base64) with a bit flipped that decoding drops: same bytes."""
    stripped = text.rstrip("=")
    assert stripped != text, "needs padding"
    flipped = BASE64[BASE64.index(stripped[-1]) ^ 1]
    return stripped[:-1] + flipped + text[len(stripped) :]


async def test_an_id_whose_base64_is_spelled_unlike_ours_names_no_row(
    live_server: LiveServer, alice: Account
) -> None:
    """The base64 of a global id is read strictly: stray characters, spaces, a newline, or
    other padding bits or padding than ours decode to the same bytes, but are not another
    spelling of the same id. ``video`` and mutations answer BAD_USER_INPUT, ``node`` null."""
    made = await live_server.gql(
        'mutation { generateVideo(input: {prompt: "a fox"}) { id } }', token=alice.token
    )
    canonical = made["data"]["generateVideo"]["id"]  # "Video:1": padded
    head, tail = canonical[:4], canonical[4:]
    spellings = [
        _same_bytes_spelled_otherwise(canonical),
        canonical + "==",
        canonical + "\n",
        f"{head} {tail}",
        f"{head}!{tail}",
    ]
    query = "query($id: ID!) { video(id: $id) { id } }"
    for spelled in spellings:
        assert GlobalID.from_id(spelled) == GlobalID.from_id(canonical), spelled  # lenient
        body = await live_server.gql(query, {"id": spelled}, token=alice.token)
        assert d.only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}
        body = await live_server.gql(d.NODE, {"id": spelled}, token=alice.token)
        assert body == {"data": {"node": None}}, (spelled, body)
        body = await live_server.gql(
            "mutation($id: ID!) { deleteVideo(id: $id) { id } }", {"id": spelled}, token=alice.token
        )
        assert d.error_codes(body) == ["BAD_USER_INPUT"], (spelled, body)
    body = await live_server.gql(query, {"id": canonical}, token=alice.token)
    assert body == {"data": {"video": {"id": canonical}}}, "the canonical id still names it"


async def test_an_id_with_thousands_of_digits_names_no_row(
    live_server: LiveServer, alice: Account
) -> None:
    """int() refuses more than 4,300 digits (a ValueError that was BAD_USER_INPUT); such a
    number is simply past every row."""
    huge = "9" * 5000
    for query, key in ((d.PROJECT, "project"), (d.NODE, "node")):
        body = await live_server.gql(
            query, {"id": str(GlobalID("Project", huge))}, token=alice.token
        )
        assert "errors" not in body and body["data"][key] is None, body
    assert db.row_id_in(huge) == 0 and db.row_id_in("7") == 7
    for spelled in ("-" + huge, "+" + huge, "\u0669" * 5000, " " + huge, "9_" * 2500):
        assert db.row_id_in(spelled) == 0, spelled[:3]
    with pytest.raises(ValueError):
        db.row_id_in("9" * 5000 + "x")
