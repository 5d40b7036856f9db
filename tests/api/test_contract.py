"""The queries and mutations of the API contract (docs/contract.md), from a real client over
HTTP."""

from __future__ import annotations

import datetime as dt

from strawberry.relay import GlobalID

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer
from vidgen.jobs import lifecycle
from vidgen.models import Video, VideoStatus, VideoStatusEvent


def db_id(global_id: str) -> int:
    return int(GlobalID.from_id(global_id).node_id)


async def generate(server: LiveServer, token: str, **input_: object) -> dict:
    body = await server.gql(d.GENERATE_VIDEO, {"input": {"prompt": "a cat", **input_}}, token=token)
    assert "errors" not in body, body
    return body["data"]["generateVideo"]


async def test_accounts_register_login_viewer_logout(live_server: LiveServer) -> None:
    creds = {"email": "New@Example.com", "password": "correct horse"}
    body = await live_server.gql(d.REGISTER, {"input": creds})
    registered = body["data"]["register"]
    assert registered["user"] == {
        "id": registered["user"]["id"],
        "email": "new@example.com",
        "isAdmin": False,
    }
    assert registered["token"].startswith("vg_")

    assert (await live_server.gql(d.VIEWER))["data"] == {"viewer": None}
    viewer = await live_server.gql(d.VIEWER, token=registered["token"])
    assert viewer["data"]["viewer"]["email"] == "new@example.com"

    again = await live_server.gql(d.REGISTER, {"input": creds})
    assert d.error_codes(again) == ["CONFLICT"]

    wrong = await live_server.gql(
        d.LOGIN, {"input": {"email": creds["email"], "password": "wrong password"}}
    )
    assert d.error_codes(wrong) == ["UNAUTHENTICATED"]
    unknown = await live_server.gql(
        d.LOGIN, {"input": {"email": "nobody@example.com", "password": "wrong password"}}
    )
    assert d.only_error(unknown)["message"] == d.only_error(wrong)["message"]

    login = await live_server.gql(d.LOGIN, {"input": creds})
    token = login["data"]["login"]["token"]
    assert token != registered["token"]

    assert (await live_server.gql(d.LOGOUT, token=token))["data"] == {"logout": True}
    revoked = await live_server.gql(d.TAGS_AND_THEMES, token=token)
    assert d.error_codes(revoked) == ["UNAUTHENTICATED"]
    assert "revoked" in d.only_error(revoked)["message"]
    # The other token still works.
    assert (await live_server.gql(d.VIEWER, token=registered["token"]))["data"]["viewer"]


async def test_bad_and_missing_tokens_are_unauthenticated(live_server: LiveServer) -> None:
    for headers in (
        {"Authorization": "Bearer vg_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {},
    ):
        body = await live_server.gql(d.VIDEO_IDS, headers=headers)
        assert d.error_codes(body) == ["UNAUTHENTICATED"], headers
        assert body["data"] is None
        # viewer is public: null, not an error
        assert (await live_server.gql(d.VIEWER, headers=headers)) == {"data": {"viewer": None}}
    providers = await live_server.gql(d.PROVIDERS)
    assert "errors" not in providers


async def test_registration_can_be_switched_off(live_server: LiveServer) -> None:
    live_server.settings.signup_enabled = False
    body = await live_server.gql(
        d.REGISTER, {"input": {"email": "x@example.com", "password": "long enough"}}
    )
    assert d.error_codes(body) == ["FORBIDDEN"]


async def test_providers_lists_capabilities(live_server: LiveServer) -> None:
    body = await live_server.gql(d.PROVIDERS)
    providers = {p["name"]: p for p in body["data"]["providers"]}
    assert {"local", "runway", "replicate", "stability", "openai", "fal"} <= set(providers)
    local = providers["local"]
    assert local["available"] is True
    assert local["textToVideo"] is True
    assert {"512x512", "1024x1024", "1280x720"} <= set(local["resolutions"])
    assert set(local["outputFormats"]) == {"MP4", "WEBM"}
    assert local["maxDurationSeconds"] == 30
    assert providers["runway"]["available"] is False  # no key configured


async def test_projects_and_stories_crud(live_server: LiveServer, alice: Account) -> None:
    t = alice.token
    created = await live_server.gql(
        d.CREATE_PROJECT, {"input": {"name": "  Trip ", "description": "summer"}}, token=t
    )
    project = created["data"]["createProject"]
    assert project["name"] == "Trip" and project["description"] == "summer"

    updated = await live_server.gql(
        d.UPDATE_PROJECT, {"id": project["id"], "input": {"description": None}}, token=t
    )
    assert updated["data"]["updateProject"] == {
        "id": project["id"],
        "name": "Trip",
        "description": None,
    }

    story_body = await live_server.gql(
        d.CREATE_STORY,
        {"input": {"title": "Day one", "projectId": project["id"], "paragraphs": ["A", "B"]}},
        token=t,
    )
    story = story_body["data"]["createStory"]
    assert story["project"] == {"id": project["id"]} and story["paragraphs"] == ["A", "B"]

    moved = await live_server.gql(
        d.UPDATE_STORY,
        {"id": story["id"], "input": {"projectId": None, "paragraphs": ["A", "B", "C"]}},
        token=t,
    )
    assert moved["data"]["updateStory"]["project"] is None
    assert moved["data"]["updateStory"]["paragraphs"] == ["A", "B", "C"]

    stories = await live_server.gql(d.STORIES, token=t)
    assert stories["data"]["stories"]["totalCount"] == 1
    in_project = await live_server.gql(d.STORIES, {"projectId": project["id"]}, token=t)
    assert in_project["data"]["stories"]["totalCount"] == 0

    video = await generate(live_server, t, projectId=project["id"])
    fetched = await live_server.gql(d.PROJECT, {"id": project["id"]}, token=t)
    assert fetched["data"]["project"]["videos"]["totalCount"] == 1
    assert fetched["data"]["project"]["videos"]["edges"][0]["node"]["id"] == video["id"]

    deleted = await live_server.gql(d.DELETE_PROJECT, {"id": project["id"]}, token=t)
    assert deleted["data"] == {"deleteProject": True}
    assert (await live_server.gql(d.PROJECT, {"id": project["id"]}, token=t))["data"] == {
        "project": None
    }
    # The video stays, detached.
    after = await live_server.gql(d.VIDEO, {"id": video["id"]}, token=t)
    assert after["data"]["video"]["project"] is None

    gone = await live_server.gql(d.DELETE_STORY, {"id": story["id"]}, token=t)
    assert gone["data"] == {"deleteStory": True}
    assert (await live_server.gql(d.STORY, {"id": story["id"]}, token=t))["data"] == {"story": None}


async def test_generate_video_with_everything(live_server: LiveServer, alice: Account) -> None:
    t = alice.token
    project = (await live_server.gql(d.CREATE_PROJECT, {"input": {"name": "P"}}, token=t))["data"][
        "createProject"
    ]
    story = (
        await live_server.gql(
            d.CREATE_STORY,
            {"input": {"title": "S", "projectId": project["id"], "paragraphs": ["one", "two"]}},
            token=t,
        )
    )["data"]["createStory"]
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    video = await generate(
        live_server,
        t,
        prompt="  a red fox in snow ",
        provider="local",
        projectId=project["id"],
        storyId=story["id"],
        paragraphIndex=1,
        resolution="1280x720",
        outputFormat="WEBM",
        durationSeconds=3.5,
        caption="Fox",
        videoStyle="watercolor",
        theme="Winter  Tales",
        tags=["Animals", "animals", "snow"],
        priority=5,
        scheduledAt=when,
    )
    assert video["status"] == "QUEUED"
    assert video["prompt"] == "a red fox in snow"
    assert video["resolution"] == "1280x720" and video["outputFormat"] == "WEBM"
    assert video["durationSeconds"] == 3.5
    assert video["project"] == {"id": project["id"]} and video["story"] == {"id": story["id"]}
    assert video["paragraphIndex"] == 1
    assert video["theme"] == {"name": "Winter Tales"}
    assert sorted(t["name"] for t in video["tags"]) == ["Animals", "snow"]
    assert video["priority"] == 5 and video["version"] == 1
    assert video["owner"] == {
        "id": (await live_server.gql(d.VIEWER, token=t))["data"]["viewer"]["id"],
        "email": alice.email,
    }
    assert [h["status"] for h in video["statusHistory"]] == ["QUEUED"]
    assert video["eventCursor"] is not None
    assert video["videoUrl"] is None and video["inputImageUrl"] is None

    # Tags and theme are reused by normalised name.
    await generate(live_server, t, theme="winter tales", tags=["ANIMALS"])
    lists = await live_server.gql(d.TAGS_AND_THEMES, token=t)
    assert [x["name"] for x in lists["data"]["tags"]] == ["Animals", "snow"]
    assert [x["name"] for x in lists["data"]["themes"]] == ["Winter Tales"]

    # Defaults: local, 1024x1024, MP4.
    plain = await generate(live_server, t)
    assert (plain["provider"], plain["resolution"], plain["outputFormat"]) == (
        "local",
        "1024x1024",
        "MP4",
    )


async def test_videos_filters_pagination_and_node(live_server: LiveServer, alice: Account) -> None:
    t = alice.token
    project = (await live_server.gql(d.CREATE_PROJECT, {"input": {"name": "P"}}, token=t))["data"][
        "createProject"
    ]
    ids = []
    for i in range(5):
        video = await generate(
            live_server,
            t,
            prompt=f"clip number {i}",
            caption="Sunset" if i == 3 else None,
            tags=["even"] if i % 2 == 0 else ["odd"],
            theme="Warm" if i < 2 else None,
            projectId=project["id"] if i == 4 else None,
            provider="test" if i == 1 else "local",
            resolution="512x512",
        )
        ids.append(video["id"])
    newest_first = list(reversed(ids))

    async def video_ids(filter_: dict | None = None, **kw: object) -> dict:
        body = await live_server.gql(d.VIDEO_IDS, {"filter": filter_, **kw}, token=t)
        assert "errors" not in body, body
        return body["data"]["videos"]

    everything = await video_ids()
    assert [e["node"]["id"] for e in everything["edges"]] == newest_first
    assert everything["totalCount"] == 5

    # Pages of two, following endCursor, cover everything once.
    seen, after = [], None
    while True:
        page = await video_ids(first=2, after=after)
        assert page["totalCount"] == 5
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == newest_first

    def nodes(conn: dict) -> list[str]:
        return [e["node"]["id"] for e in conn["edges"]]

    assert nodes(await video_ids({"tag": "EVEN"})) == [ids[4], ids[2], ids[0]]
    assert nodes(await video_ids({"theme": "warm"})) == [ids[1], ids[0]]
    assert nodes(await video_ids({"projectId": project["id"]})) == [ids[4]]
    assert nodes(await video_ids({"provider": "test"})) == [ids[1]]
    assert nodes(await video_ids({"search": "sunset"})) == [ids[3]]
    assert nodes(await video_ids({"search": "NUMBER 2"})) == [ids[2]]
    assert nodes(await video_ids({"status": ["QUEUED"]})) == newest_first
    assert nodes(await video_ids({"status": ["COMPLETED", "FAILED"]})) == []

    deleted = await live_server.gql(d.DELETE_VIDEO, {"id": ids[0]}, token=t)
    assert deleted["data"]["deleteVideo"]["deletedAt"] is not None
    assert deleted["data"]["deleteVideo"]["status"] == "CANCELED"
    assert ids[0] not in nodes(await video_ids())
    assert ids[0] in nodes(await video_ids({"includeDeleted": True}))
    assert nodes(await video_ids({"status": ["CANCELED"], "includeDeleted": True})) == [ids[0]]

    # node() resolves every kind of object.
    node = await live_server.gql(d.NODE, {"id": ids[3]}, token=t)
    assert node["data"]["node"] == {"__typename": "Video", "id": ids[3], "prompt": "clip number 3"}
    node = await live_server.gql(d.NODE, {"id": project["id"]}, token=t)
    assert node["data"]["node"]["__typename"] == "Project"
    tags = (await live_server.gql(d.TAGS_AND_THEMES, token=t))["data"]["tags"]
    node = await live_server.gql(d.NODE, {"id": tags[0]["id"]}, token=t)
    assert node["data"]["node"]["__typename"] == "Tag"

    # Page size: default 20, at most 100.
    too_many = await live_server.gql(d.VIDEO_IDS, {"first": 101}, token=t)
    assert d.only_error(too_many)["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    bad_cursor = await live_server.gql(d.VIDEO_IDS, {"after": "nonsense"}, token=t)
    assert d.only_error(bad_cursor)["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}


async def test_update_cancel_retry_delete_restore(live_server: LiveServer, alice: Account) -> None:
    t = alice.token
    video = await generate(live_server, t, tags=["a"], theme="T")
    vid = video["id"]

    updated = await live_server.gql(
        d.UPDATE_VIDEO,
        {"id": vid, "input": {"caption": "New", "tags": ["b", "c"], "theme": None}},
        token=t,
    )
    assert updated["data"]["updateVideo"] == {
        "id": vid,
        "caption": "New",
        "videoStyle": None,
        "theme": None,
        "tags": [{"name": "b"}, {"name": "c"}],
        "version": 2,
    }

    canceled = await live_server.gql(d.CANCEL_VIDEO, {"id": vid}, token=t)
    assert canceled["data"]["cancelVideo"]["status"] == "CANCELED"
    again = await live_server.gql(d.CANCEL_VIDEO, {"id": vid}, token=t)
    assert d.error_codes(again) == ["CONFLICT"]

    retried = await live_server.gql(d.RETRY_VIDEO, {"id": vid}, token=t)
    assert retried["data"]["retryVideo"]["status"] == "QUEUED"
    history = (await live_server.gql(d.VIDEO, {"id": vid}, token=t))["data"]["video"]
    assert [h["status"] for h in history["statusHistory"]] == ["QUEUED", "CANCELED", "QUEUED"]
    latest = await VideoStatusEvent.filter(video_id=db_id(vid)).order_by("-id").first()
    assert history["eventCursor"] == str(latest.id)

    # Retrying a completed video is an illegal transition.
    await lifecycle.transition(db_id(vid), VideoStatus.PROCESSING, actor="test")
    await lifecycle.transition(db_id(vid), VideoStatus.COMPLETED, actor="test")
    conflict = await live_server.gql(d.RETRY_VIDEO, {"id": vid}, token=t)
    assert d.error_codes(conflict) == ["CONFLICT"]
    assert (await Video.get(id=db_id(vid))).status == VideoStatus.COMPLETED

    deleted = await live_server.gql(d.DELETE_VIDEO, {"id": vid}, token=t)
    assert deleted["data"]["deleteVideo"]["status"] == "COMPLETED"
    assert deleted["data"]["deleteVideo"]["deletedAt"] is not None
    restored = await live_server.gql(d.RESTORE_VIDEO, {"id": vid}, token=t)
    assert restored["data"]["restoreVideo"]["deletedAt"] is None


async def test_idempotency_key_returns_the_first_video(
    live_server: LiveServer, alice: Account, bob: Account
) -> None:
    import asyncio

    first = await generate(live_server, alice.token, idempotencyKey="k-1")
    again = await generate(live_server, alice.token, idempotencyKey="k-1", prompt="other")
    assert again["id"] == first["id"] and again["prompt"] == "a cat"
    assert await Video.all().count() == 1
    assert await VideoStatusEvent.all().count() == 1

    # Another user's same key is theirs alone.
    theirs = await generate(live_server, bob.token, idempotencyKey="k-1")
    assert theirs["id"] != first["id"]

    # A race of identical requests still makes one video.
    results = await asyncio.gather(
        *(generate(live_server, alice.token, idempotencyKey="race") for _ in range(5))
    )
    assert len({r["id"] for r in results}) == 1
    assert await Video.filter(idempotency_key="race").count() == 1
