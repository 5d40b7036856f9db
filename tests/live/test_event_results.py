"""Shared event results: one execution of an event's selection set per key, shared by its
subscribers; per-viewer results stay per viewer, errors stay per subscriber."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graphql import ExecutionResult, GraphQLError, GraphQLSchema
from starlette.routing import WebSocketRoute

from tests.api.conftest import Account, LiveServer
from tests.live.conftest import gid, make_video
from tests.live.wsclient import GraphQLWS
from vidgen import models
from vidgen.graphql import live_fanout
from vidgen.graphql.event_results import EventResults, results_for
from vidgen.jobs import lifecycle
from vidgen.models import VideoStatus
from vidgen.services import users

# --- the memo on its own ---------------------------------------------------------------------


def _is_awaitable(value: Any) -> bool:
    return asyncio.iscoroutine(value)


class Runs:
    """An ``execute`` callable that counts its calls."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> ExecutionResult:
        self.calls += 1
        return self.result


def test_an_error_free_result_is_executed_once_per_key_and_root() -> None:
    memo = EventResults()
    root = object()
    run = Runs(ExecutionResult({"v": 1}, None))
    first = memo.run("k", root, run, _is_awaitable)
    second = memo.run("k", root, run, _is_awaitable)
    assert run.calls == 1 and (memo.executions, memo.shared) == (1, 1)
    assert second.data is first.data and second.errors is None
    memo.run("k", object(), run, _is_awaitable)  # same key, another yielded object
    memo.run("other", root, run, _is_awaitable)
    assert run.calls == 3


def test_results_with_errors_are_never_shared() -> None:
    memo = EventResults()
    root = object()
    run = Runs(ExecutionResult({"v": None}, [GraphQLError("boom")]))
    for _ in range(3):
        assert memo.run("k", root, run, _is_awaitable).errors
    assert run.calls == 3 and memo.shared == 0 and len(memo) == 0


def test_the_memo_is_bounded_in_size_and_age() -> None:
    now = [0.0]
    memo = EventResults(maxsize=2, max_age=5.0, clock=lambda: now[0])
    root = object()
    run = Runs(ExecutionResult({"v": 1}, None))
    for key in ("a", "b", "c"):
        memo.run(key, root, run, _is_awaitable)
    assert len(memo) == 2
    memo.run("a", root, run, _is_awaitable)  # evicted: executed again
    assert run.calls == 4
    now[0] = 6.0
    memo.run("a", root, run, _is_awaitable)  # too old: executed again
    assert run.calls == 5


async def test_concurrent_subscribers_wait_for_the_first_execution() -> None:
    memo = EventResults()
    root = object()
    gate = asyncio.Event()
    calls = 0

    def execute() -> Any:
        nonlocal calls
        calls += 1

        async def later() -> ExecutionResult:
            await gate.wait()
            return ExecutionResult({"v": 1}, None)

        return later()

    pending = [memo.run("k", root, execute, _is_awaitable) for _ in range(5)]
    gate.set()
    results = await asyncio.gather(*pending)
    assert calls == 1 and {id(r.data) for r in results} == {id(results[0].data)}


@pytest.mark.parametrize("failure", ["errors", "cancelled"])
async def test_waiters_execute_themselves_when_the_first_execution_fails(failure: str) -> None:
    memo = EventResults()
    root = object()
    gate = asyncio.Event()
    calls = 0

    def execute() -> Any:
        nonlocal calls
        calls += 1
        first = calls == 1

        async def later() -> ExecutionResult:
            if first:
                await gate.wait()
                return ExecutionResult({"v": None}, [GraphQLError("first only")])
            return ExecutionResult({"v": 2}, None)

        return later()

    leader = asyncio.ensure_future(memo.run("k", root, execute, _is_awaitable))
    waiters = [asyncio.ensure_future(memo.run("k", root, execute, _is_awaitable)) for _ in "ab"]
    await asyncio.sleep(0)
    if failure == "cancelled":
        leader.cancel()
    else:
        gate.set()
    done = await asyncio.gather(leader, return_exceptions=True)
    if failure == "errors":
        assert done[0].errors  # the leader's own error, to the leader only
    else:
        assert isinstance(done[0], asyncio.CancelledError)
    results = await asyncio.gather(*waiters)
    assert [r.data for r in results] == [{"v": 2}, {"v": 2}]
    assert all(r.errors is None for r in results)
    assert calls == 3


# --- over real WebSockets ---------------------------------------------------------------------


WATCH = """
subscription Watch($id: ID!) {
  videoUpdated(id: $id) {
    id status version progress eventCursor owner { email } tags { name }
    statusHistory { status }
    project { videos(first: 10) { totalCount edges { node { id } } } }
  }
}
"""

WATCH_SMALL = """
subscription Small($id: ID!) { videoUpdated(id: $id) { id version } }
"""

WATCH_TOO_MANY = """
subscription TooMany($id: ID!) {
  videoUpdated(id: $id) { id version project { videos(first: 1000) { totalCount } } }
}
"""


def _memo(live: LiveServer) -> EventResults:
    for route in live.app.routes:
        if isinstance(route, WebSocketRoute) and route.path == "/graphql":
            schema: GraphQLSchema = route.endpoint.schema._schema  # type: ignore[attr-defined]
            return results_for(schema)
    raise AssertionError("no /graphql WebSocket route")


async def _admin(email: str) -> Account:
    user = await models.User.create(email=email, password_hash="!token-only", is_admin=True)
    token, _ = await users.issue_token(user=user, name="test")
    return Account(user=user, token=token, email=email)


async def _sockets(live: LiveServer, tokens: list[str]) -> list[GraphQLWS]:
    sockets = []
    for token in tokens:
        ws = await GraphQLWS.open(live.ws_url)
        await ws.init({"Authorization": f"Bearer {token}"})
        sockets.append(ws)
    return sockets


async def test_one_execution_per_event_for_all_subscribers(live: LiveServer, accounts) -> None:
    alice = await accounts("alice@example.com")
    project = await models.Project.create(owner_id=alice.user.id, name="P")
    video = await make_video(alice.user, project_id=project.id)
    memo = _memo(live)
    sockets = await _sockets(live, [alice.token] * 2)
    try:
        ops = []
        for ws in sockets:
            for _ in range(3):
                ops.append((ws, await ws.subscribe(WATCH, {"id": gid("Video", video.id)})))
            ops.append((ws, await ws.subscribe(WATCH_SMALL, {"id": gid("Video", video.id)})))
        for ws, op in ops:
            await ws.next_data(op, "videoUpdated")  # the current state (a fresh read each)

        before = memo.executions
        encoded, spliced = memo.encodings, memo.spliced
        (fanout,) = live_fanout._fanouts[live.runtime.bus].values()
        fanned = fanout.encodings
        bus = live.runtime.bus
        await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t", bus=bus)
        await lifecycle.touch(video.id, fields={"progress": 0.5}, bus=bus)
        got = [[await ws.next_data(op, "videoUpdated") for _ in range(2)] for ws, op in ops]

        full = [seen for (_, op), seen in zip(ops, got, strict=True) if len(seen[0]) > 2]
        small = [seen for (_, op), seen in zip(ops, got, strict=True) if len(seen[0]) == 2]
        assert len(full) == 6 and len(small) == 2
        assert all(seen == full[0] for seen in full)  # the same result for each subscriber
        assert all(seen == small[0] for seen in small)  # and each document its own fields
        assert [(s["status"], s["version"], s["progress"]) for s in full[0]] == [
            ("PROCESSING", 2, 0.0),
            ("PROCESSING", 3, 0.5),
        ]
        assert full[0][1]["statusHistory"] == [{"status": "QUEUED"}, {"status": "PROCESSING"}]
        assert small[0] == [{"id": full[0][0]["id"], "version": v} for v in (2, 3)]
        # 2 events x 2 documents, whatever the number of subscribers: the small document
        # (a compiled event plan) is served by the fan-out, the other one by Strawberry.
        assert memo.executions - before == 2, (memo.executions, memo.shared)
        assert fanout.encodings - fanned == 2
        # ... and as many JSON encodings: the other 10 next messages splice in their id.
        assert (memo.encodings - encoded, memo.spliced - spliced) == (2, 10)
    finally:
        for ws in sockets:
            await ws.close()


async def test_results_stay_per_viewer(live: LiveServer, accounts) -> None:
    """The owner and an admin watch one video whose project also holds another user's video:
    ``project { videos }`` lists through the viewer's scope, so their results differ and
    neither may be served the other's."""
    alice = await accounts("alice@example.com")
    root = await _admin("root@example.com")
    other = await _admin("other-admin@example.com")
    project = await models.Project.create(owner_id=alice.user.id, name="P")
    video = await make_video(alice.user, project_id=project.id)
    theirs = await make_video(root.user, "not alice's", project_id=project.id)
    memo = _memo(live)
    sockets = await _sockets(live, [alice.token, root.token, other.token, alice.token])
    try:
        ops = [(ws, await ws.subscribe(WATCH, {"id": gid("Video", video.id)})) for ws in sockets]
        for ws, op in ops:
            await ws.next_data(op, "videoUpdated")
        before = memo.executions
        encoded = memo.encodings
        await lifecycle.transition(
            video.id, VideoStatus.PROCESSING, actor="t", bus=live.runtime.bus
        )
        got = [await ws.next_data(op, "videoUpdated") for ws, op in ops]
        listed = [
            {edge["node"]["id"] for edge in seen["project"]["videos"]["edges"]} for seen in got
        ]
        alice_sees = {gid("Video", video.id)}
        admin_sees = alice_sees | {gid("Video", theirs.id)}
        assert listed == [alice_sees, admin_sees, admin_sees, alice_sees]
        assert [seen["project"]["videos"]["totalCount"] for seen in got] == [1, 2, 2, 1]
        assert memo.executions - before == 2  # one for alice, one for every admin
        assert memo.encodings - encoded == 2  # and one encoding each: never the other's
    finally:
        for ws in sockets:
            await ws.close()


async def test_errors_stay_per_subscriber(live: LiveServer, accounts) -> None:
    alice = await accounts("alice@example.com")
    project = await models.Project.create(owner_id=alice.user.id, name="P")
    video = await make_video(alice.user, project_id=project.id)
    memo = _memo(live)
    sockets = await _sockets(live, [alice.token, alice.token])
    try:
        ops = [
            (ws, await ws.subscribe(WATCH_TOO_MANY, {"id": gid("Video", video.id)}))
            for ws in sockets
        ]
        for ws, op in ops:
            await ws.receive(op)
        before, shared = memo.executions, memo.shared
        await lifecycle.transition(
            video.id, VideoStatus.PROCESSING, actor="t", bus=live.runtime.bus
        )
        for ws, op in ops:
            message = await ws.receive(op)
            payload = message["payload"]
            assert payload["data"]["videoUpdated"]["version"] == 2
            assert payload["data"]["videoUpdated"]["project"] is None
            assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert (memo.executions - before, memo.shared - shared) == (2, 0)
    finally:
        for ws in sockets:
            await ws.close()


# --- one loaded state is self-consistent ----------------------------------------------------


async def test_a_loaded_state_holds_every_history_row_up_to_its_version(db) -> None:
    """Status changes commit while states load: no state may be newer than its history.

    (Reading the row and the history at the same time let a load see version N without
    N's own history row; the event for N then went out with a short ``statusHistory``.)
    """
    from vidgen.events.video_states import load_state

    owner = await models.User.create(email="race@example.com", password_hash="!")
    video = await make_video(owner)
    stop = asyncio.Event()

    async def write() -> None:
        try:
            for _ in range(40):
                await lifecycle.transition(video.id, VideoStatus.PROCESSING, actor="t")
                await lifecycle.touch(video.id, fields={"progress": 0.5})
                await lifecycle.transition(video.id, VideoStatus.QUEUED, actor="t")
        finally:
            stop.set()

    async def read(states: list[Any]) -> None:
        while not stop.is_set():
            states.append(await load_state(video.id))

    states: list[Any] = []
    await asyncio.gather(write(), read(states), read(states), read(states))
    full = await models.VideoStatusEvent.filter(video_id=video.id).order_by("id")
    assert len(full) == 81 and len(states) > 3
    for state in states:
        expected = [h.id for h in full if h.version <= state.version]
        assert [h.id for h in state.history] == expected, state.version


async def test_batched_loads_equal_single_loads(db) -> None:
    """load_states (the loads of one loop pass read together) gives each video what
    load_state gives it: the row and relations, the tags in their order, the history; a
    video that does not exist is left out. The same holds under concurrent status changes."""
    from vidgen.events.video_states import load_state, load_states

    owner = await models.User.create(email="batch@example.com", password_hash="!")
    videos = [await make_video(owner) for _ in range(3)]
    names = ["zebra", "Äpfel", "apple", "a-b", "ab", "b"]
    tags = [await models.Tag.create(owner=owner, name=n, name_key=n.lower()) for n in names]
    await videos[0].tags.add(*tags)
    await videos[1].tags.add(tags[2])
    await lifecycle.transition(videos[0].id, VideoStatus.PROCESSING, actor="t")
    await lifecycle.touch(videos[0].id, fields={"progress": 0.5})
    ids = [v.id for v in videos]
    batched = await load_states([*ids, 10**9])
    assert sorted(batched) == sorted(ids)
    for video_id in ids:
        one, many = await load_state(video_id), batched[video_id]
        assert one is not None
        assert many.version == one.version and many.video.status == one.video.status
        assert [t.id for t in many.tags] == [t.id for t in one.tags]
        assert [h.id for h in many.history] == [h.id for h in one.history]
        assert many.owner.id == one.owner.id
    assert len(batched[ids[0]].tags) == len(names) and batched[ids[2]].tags == []


async def test_states_loaded_together_are_each_videos_own(db) -> None:
    """VideoStates reads the loads started in one loop pass together (one batch)."""
    from vidgen.events.video_states import VideoStates

    owner = await models.User.create(email="pass@example.com", password_hash="!")
    videos = [await make_video(owner) for _ in range(4)]
    await lifecycle.touch(videos[1].id, fields={"progress": 0.5})
    states = VideoStates()
    found = await asyncio.gather(*(states.at_least(v.id, 1) for v in videos))
    assert [s.video.id for s in found] == [v.id for v in videos]
    assert found[1].version == 2 and found[0].version == 1
    assert states.loads == 4
