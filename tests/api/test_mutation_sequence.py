"""Several root mutation fields in one request: each one's answer shows what it and the
fields before it wrote (the request's data loaders are not reused between them)."""

from __future__ import annotations

GENERATE = """
mutation($p: ID) {
  c0: generateVideo(input: {prompt: "clip 0", projectId: $p}) { project { videos { totalCount } } }
  c1: generateVideo(input: {prompt: "clip 1", projectId: $p}) { project { videos { totalCount } } }
  c2: generateVideo(input: {prompt: "clip 2", projectId: $p}) {
    id
    project { videos { totalCount edges { node { id prompt } } } }
  }
}
"""


async def answer(live_server, account, document: str, **variables) -> dict:
    """The ``data`` of a request that must succeed."""
    body = await live_server.gql(document, variables, token=account.token)
    assert "errors" not in body, body
    return body["data"]


async def test_each_generate_video_sees_the_videos_made_before_it(live_server, alice) -> None:
    made = await answer(live_server, alice, 'mutation { createProject(input: {name: "c"}) { id } }')
    data = await answer(live_server, alice, GENERATE, p=made["createProject"]["id"])
    counts = [data[f"c{i}"]["project"]["videos"]["totalCount"] for i in range(3)]
    assert counts == [1, 2, 3]
    edges = data["c2"]["project"]["videos"]["edges"]
    assert [e["node"]["prompt"] for e in edges] == ["clip 2", "clip 1", "clip 0"]
    assert edges[0]["node"]["id"] == data["c2"]["id"]


TWICE = """
mutation($v: ID!) {
  a: updateVideo(id: $v, input: {tags: ["one"]}) { version tags { name } eventCursor }
  b: updateVideo(id: $v, input: {tags: ["two"]}) { version tags { name } eventCursor }
  c: cancelVideo(id: $v) { status statusHistory { status } }
  d: retryVideo(id: $v) { status statusHistory { status } }
}
"""


async def test_later_fields_see_earlier_writes_to_the_same_video(live_server, alice) -> None:
    one = 'mutation { generateVideo(input: {prompt: "f"}) { id } }'
    video = (await answer(live_server, alice, one))["generateVideo"]["id"]
    data = await answer(live_server, alice, TWICE, v=video)
    a, b, c, d = (data[k] for k in "abcd")
    assert [t["name"] for t in a["tags"]] == ["one"]
    assert [t["name"] for t in b["tags"]] == ["two"]
    assert b["version"] == a["version"] + 1
    assert int(b["eventCursor"]) > int(a["eventCursor"])
    assert [h["status"] for h in c["statusHistory"]] == ["QUEUED", "CANCELED"]
    assert d["status"] == "QUEUED"
    assert [h["status"] for h in d["statusHistory"]] == ["QUEUED", "CANCELED", "QUEUED"]
    # What a fresh request reads is what the last field answered.
    after = await live_server.gql(
        "query($v: ID!) { video(id: $v) { tags { name } eventCursor } }",
        {"v": video},
        token=alice.token,
    )
    assert after["data"]["video"]["tags"] == b["tags"]
    assert int(after["data"]["video"]["eventCursor"]) >= int(b["eventCursor"])


async def test_an_empty_update_is_no_change(live_server, alice) -> None:
    # updateVideo with nothing in its input writes nothing: no new version, no change row
    # (the event cursor stays), no event for subscribers.
    made = await live_server.gql(
        'mutation { generateVideo(input: {prompt: "a fox", tags: ["x"]})'
        " { id version eventCursor } }",
        token=alice.token,
    )
    video = made["data"]["generateVideo"]
    body = await live_server.gql(
        "mutation($v: ID!) { updateVideo(id: $v, input: {})"
        " { version eventCursor tags { name } } }",
        {"v": video["id"]},
        token=alice.token,
    )
    assert body["data"]["updateVideo"] == {
        "version": video["version"],
        "eventCursor": video["eventCursor"],
        "tags": [{"name": "x"}],
    }
