"""Issue 23's mutation rate limit scaled out: two API processes on one Redis draw from ONE
token bucket per user, so a client cannot double its rate by spreading its requests over
the processes (docs/limits.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.live.processes import ApiProcess, process_env
from tests.live.redis_server import RedisServer
from vidgen.models import Project
from vidgen.settings import Settings

CREATE = "mutation Create($i: CreateProjectInput!) { createProject(input: $i) { id } }"
REGISTER = "mutation R($i: RegisterInput!) { register(input: $i) { token user { id } } }"
BURST = 4


def _code(body: dict) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


@pytest.mark.slow
async def test_two_api_processes_share_each_users_mutation_bucket(
    db: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = process_env(
        database_url=db.resolved_database_url,
        redis_url=redis_server.url,
        data_dir=tmp_path,
        # One token a minute: none comes back while the test runs; the burst is the budget.
        VIDGEN_USER_MUTATIONS_PER_MINUTE="1",
        VIDGEN_USER_MUTATION_BURST=str(BURST),
    )
    apis = [ApiProcess(env, tmp_path, f"api{i}") for i in (1, 2)]
    try:
        for api in apis:
            await asyncio.to_thread(api.wait_ready)
        async with (
            httpx.AsyncClient(base_url=apis[0].url, timeout=30) as one,
            httpx.AsyncClient(base_url=apis[1].url, timeout=30) as two,
        ):

            async def gql(http: httpx.AsyncClient, query: str, variables: dict, token=None):  # noqa: ANN001, ANN202
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = await http.post(
                    "/graphql", json={"query": query, "variables": variables}, headers=headers
                )
                return response.json()

            async def account(http: httpx.AsyncClient, email: str) -> str:
                body = await gql(
                    http, REGISTER, {"i": {"email": email, "password": "a long passphrase"}}
                )
                assert "errors" not in body, body
                return body["data"]["register"]["token"]

            # register is not a signed-in user's mutation: it spends no bucket.
            alice = await account(one, "alice@example.com")
            bob = await account(two, "bob@example.com")

            async def create(http: httpx.AsyncClient, token: str, name: str) -> str | None:
                return _code(await gql(http, CREATE, {"i": {"name": name}}, token))

            # Alice spreads her burst over both processes: 2 + 2, then both refuse her.
            spread = [
                await create(one, alice, "a1"),
                await create(two, alice, "a2"),
                await create(one, alice, "a3"),
                await create(two, alice, "a4"),
            ]
            assert spread == [None] * BURST
            assert await create(one, alice, "a5") == "RATE_LIMITED"
            assert await create(two, alice, "a6") == "RATE_LIMITED"
            # Bob's bucket is his own, on either process.
            assert await create(two, bob, "b1") is None
            assert await create(one, bob, "b2") is None
    except BaseException:
        for api in apis:
            print(f"--- {api.log.name}\n{api.output()[-4000:]}")
        raise
    finally:
        for api in apis:
            await asyncio.to_thread(api.stop)
    names = sorted(await Project.all().values_list("name", flat=True))
    assert names == ["a1", "a2", "a3", "a4", "b1", "b2"]  # the refused ones wrote nothing
