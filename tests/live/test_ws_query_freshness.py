"""Queries on one WebSocket each read the database afresh: an operation's dataloaders are
its own, not the connection's (a repeated query used to answer from rows cached by an
earlier operation on the same socket, however old)."""

from __future__ import annotations

from tests.live.test_ws_reauth import bearer, result
from tests.live.wsclient import GraphQLWS
from vidgen.models import Project, Video

PROJECT = "query P($id: ID!) { project(id: $id) { name } }"
VIDEOS = "{ videos(first: 5) { edges { node { caption owner { email } project { name } } } } }"


async def test_a_repeated_query_sees_changes_made_since(live, accounts):
    alice = await accounts("alice@example.com")
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        created = await result(ws, 'mutation { createProject(input: {name: "one"}) { id } }')
        project_id = created["data"]["createProject"]["id"]
        first = await result(ws, PROJECT, {"id": project_id})
        assert first["data"]["project"]["name"] == "one"
        await Project.all().update(name="two")
        again = await result(ws, PROJECT, {"id": project_id})
        assert again["data"]["project"]["name"] == "two"
    finally:
        await ws.close()


async def test_related_rows_are_not_served_from_an_earlier_operations_cache(live, accounts):
    from vidgen.services import catalog, videos

    alice = await accounts("alice@example.com")
    project = await catalog.create_project(viewer=alice.user, name="one")
    await videos.generate_video(
        runtime=live.runtime, viewer=alice.user, prompt="a cat", project_id=project.id
    )
    ws = await GraphQLWS.open(live.ws_url)
    try:
        await ws.init(bearer(alice.token))
        first = await result(ws, VIDEOS)
        assert first["data"]["videos"]["edges"][0]["node"]["project"]["name"] == "one"
        await Project.all().update(name="two")
        await Video.all().update(caption="new caption")
        again = await result(ws, VIDEOS)
        node = again["data"]["videos"]["edges"][0]["node"]
        assert (node["caption"], node["project"]["name"]) == ("new caption", "two")
    finally:
        await ws.close()
