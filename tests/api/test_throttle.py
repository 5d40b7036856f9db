"""Throttling over the API: failed logins per email and per client address (the same
answer whether the account exists), registrations per address, X-Forwarded-For believed
only from trusted proxies, the counters shared by two API processes on Redis, and each
user's mutation rate (docs/limits.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, start_live_server
from tests.live.processes import ApiProcess, process_env
from tests.live.redis_server import RedisServer
from vidgen.models import Project, User
from vidgen.services.rate_stores import MemoryRates
from vidgen.settings import Settings


class Clock:
    """A clock the test moves (for the in-memory counters)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frozen(server: LiveServer) -> Clock:
    """Give the server fresh in-memory counters on a clock the test moves."""
    clock = Clock()
    server.runtime.throttle.store = MemoryRates(clock=clock)
    return clock


async def login(
    server: LiveServer, email: str, password: str = "wrong password", **headers: str
) -> dict[str, Any]:
    variables = {"input": {"email": email, "password": password}}
    return await server.gql(d.LOGIN, variables, headers=headers)


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


async def test_failed_logins_per_email_answer_alike_for_any_email(
    db: Settings, alice: Account
) -> None:
    async with start_live_server(db, login_max_failures_per_email=3) as server:
        clock = frozen(server)
        answers = {}
        for email in (alice.email, "nobody@example.com"):
            seen = [(await login(server, email))["errors"] for _ in range(4)]
            answers[email] = seen
            assert [e[0]["extensions"]["code"] for e in seen] == ["UNAUTHENTICATED"] * 3 + [
                "RATE_LIMITED"
            ]
        # No account oracle: an email with an account and one without get the same answers.
        assert answers[alice.email] == answers["nobody@example.com"]
        [limited] = answers[alice.email][3]
        assert limited["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 900}
        assert limited["message"] == "Too many failed sign-ins; try again in 15 minutes."

        # The right password waits too; another email from the same address does not.
        assert code(await login(server, alice.email, "password123")) == "RATE_LIMITED"
        assert code(await login(server, "carol@example.com")) == "UNAUTHENTICATED"
        clock.now += 600
        [error] = (await login(server, alice.email, "password123"))["errors"]
        assert error["extensions"]["retryAfter"] == 300
        clock.now += 300  # the first failure leaves the window: one more attempt
        body = await login(server, alice.email, "password123")
        assert body["data"]["login"]["user"]["email"] == alice.email
        # A success forgets the email's failures.
        assert [code(await login(server, alice.email)) for _ in range(4)] == [
            "UNAUTHENTICATED"
        ] * 3 + ["RATE_LIMITED"]


async def test_concurrent_guesses_cannot_outrun_the_count(db: Settings, alice: Account) -> None:
    async with start_live_server(db, login_max_failures_per_email=3) as server:
        bodies = await asyncio.gather(*(login(server, alice.email) for _ in range(12)))
        codes = sorted(code(body) or "" for body in bodies)
        assert codes == ["RATE_LIMITED"] * 9 + ["UNAUTHENTICATED"] * 3


async def test_failed_logins_per_address_behind_trusted_proxies(db: Settings) -> None:
    async with start_live_server(
        db, login_max_failures_per_address=3, trusted_proxies=["127.0.0.0/8"]
    ) as server:
        frozen(server)
        client = {"X-Forwarded-For": "203.0.113.7"}
        for i in range(3):
            assert code(await login(server, f"u{i}@example.com", **client)) == "UNAUTHENTICATED"
        assert code(await login(server, "u9@example.com", **client)) == "RATE_LIMITED"
        # What the client adds on the left changes nothing: the proxy wrote the right end.
        spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        assert code(await login(server, "u8@example.com", **spoofed)) == "RATE_LIMITED"
        other = {"X-Forwarded-For": "203.0.113.8"}
        assert code(await login(server, "u8@example.com", **other)) == "UNAUTHENTICATED"

    async with start_live_server(db, trusted_proxies=[]) as server:  # (overrides stay set)
        frozen(server)
        # No trusted proxy: the header is not believed, the peer (127.0.0.1) is counted.
        for i in range(3):
            forged = {"X-Forwarded-For": f"192.0.2.{i}"}
            assert code(await login(server, f"u{i}@example.com", **forged)) == "UNAUTHENTICATED"
        forged = {"X-Forwarded-For": "192.0.2.200"}
        assert code(await login(server, "u9@example.com", **forged)) == "RATE_LIMITED"


async def test_registrations_per_address(db: Settings) -> None:
    async with start_live_server(db, register_max_per_address=2) as server:
        frozen(server)

        async def register(email: str) -> dict[str, Any]:
            variables = {"input": {"email": email, "password": "password123"}}
            return await server.gql(d.REGISTER, variables)

        assert code(await register("a@example.com")) is None
        assert code(await register("a@example.com")) == "CONFLICT"  # counted as well
        body = await register("b@example.com")
        assert body["errors"][0]["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 3600}
        assert await User.filter(email="b@example.com").count() == 0


MUTATE = """
mutation Two($a: CreateProjectInput!, $b: CreateProjectInput!) {
  first: createProject(input: $a) { id }
  ...More
}
fragment More on Mutation { second: createProject(input: $b) { id } __typename }
"""
CREATE = "mutation Create($i: CreateProjectInput!) { createProject(input: $i) { id } }"


async def test_each_users_mutations_are_rate_limited(
    db: Settings, alice: Account, bob: Account
) -> None:
    async with start_live_server(db, user_mutations_per_minute=60, user_mutation_burst=3) as server:
        clock = frozen(server)

        async def create(account: Account, name: str = "p") -> dict[str, Any]:
            return await server.gql(CREATE, {"i": {"name": name}}, token=account.token)

        assert [code(await create(alice)) for _ in range(4)] == [None] * 3 + ["RATE_LIMITED"]
        [error] = (await create(alice))["errors"]
        assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 1}
        assert await Project.filter(owner_id=alice.user.id).count() == 3
        assert code(await server.gql(d.VIEWER, token=alice.token)) is None  # queries are free
        assert code(await create(bob)) is None  # bob has his own bucket

        clock.now += 2  # two tokens back: a request with two root fields (one in a fragment)
        variables = {"a": {"name": "x"}, "b": {"name": "y"}}
        body = await server.gql(MUTATE, variables, token=alice.token)
        assert code(body) is None and body["data"]["second"]["id"]
        assert code(await server.gql(MUTATE, variables, token=alice.token)) == "RATE_LIMITED"
        clock.now += 60
        many = "mutation { " + " ".join(f"p{i}: logout" for i in range(4)) + " }"
        [error] = (await server.gql(many, token=alice.token))["errors"]
        assert error["extensions"] == {"code": "RATE_LIMITED"}  # more than the bucket holds
        assert error["message"] == "A request may hold at most 3 mutations."
        assert await Project.filter(owner_id=alice.user.id).count() == 5


@pytest.mark.slow
async def test_two_api_processes_share_login_counters_on_redis(
    db: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    await User.create(email="alice@example.com", password_hash="x")
    env = process_env(
        database_url=db.resolved_database_url,
        redis_url=redis_server.url,
        data_dir=tmp_path,
        VIDGEN_LOGIN_MAX_FAILURES_PER_EMAIL="3",
        VIDGEN_LOGIN_MAX_FAILURES_PER_ADDRESS="5",
    )
    apis = [ApiProcess(env, tmp_path, f"api{i}") for i in (1, 2)]
    try:
        for api in apis:
            await asyncio.to_thread(api.wait_ready)
        async with (
            httpx.AsyncClient(base_url=apis[0].url, timeout=30) as one,
            httpx.AsyncClient(base_url=apis[1].url, timeout=30) as two,
        ):

            async def attempt(http: httpx.AsyncClient, email: str) -> str | None:
                variables = {"input": {"email": email, "password": "wrong password"}}
                response = await http.post(
                    "/graphql", json={"query": d.LOGIN, "variables": variables}
                )
                return code(response.json())

            email = "alice@example.com"
            # Per email: 2 failures on one process and 1 on the other reach the limit of 3.
            assert [await attempt(one, email), await attempt(one, email)] == ["UNAUTHENTICATED"] * 2
            assert await attempt(two, email) == "UNAUTHENTICATED"
            assert await attempt(one, email) == "RATE_LIMITED"
            assert await attempt(two, email) == "RATE_LIMITED"
            # Per address: 3 failures so far; 2 more (other emails) reach its limit of 5.
            assert await attempt(two, "x@example.com") == "UNAUTHENTICATED"
            assert await attempt(one, "y@example.com") == "UNAUTHENTICATED"
            assert await attempt(two, "z@example.com") == "RATE_LIMITED"
    except BaseException:
        for api in apis:
            print(f"--- {api.log.name}\n{api.output()[-4000:]}")
        raise
    finally:
        for api in apis:
            await asyncio.to_thread(api.stop)
