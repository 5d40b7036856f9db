"""Schema-driven fuzzing of /graphql with a signed-in user (hypothesis-graphql).

A real API process (uvicorn, the test's database) is hammered with generated queries and
mutations, valid and deliberately invalid. Two properties must hold for every request:

1. No response is an HTTP 500 or carries an ``INTERNAL`` error: every failure is a coded,
   expected one.
2. Nothing one user sends changes another user's data: a second user's whole visible state
   (viewer, projects, stories, videos, tags, themes) is identical before and after.

CI runs a bounded number of examples; ``make fuzz`` (``VIDGEN_FUZZ_EXAMPLES=2000``) runs a
longer campaign.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries
from strawberry.relay import GlobalID

from tests.faults.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = (ROOT / "schema.graphql").read_text()
EXAMPLES = int(os.environ.get("VIDGEN_FUZZ_EXAMPLES", "60"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CUSTOM_SCALARS = {
    # Every year from 1 to 9999, with offsets from -23:59 to +23:59.
    "DateTime": st.datetimes(
        timezones=st.builds(
            lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)),
            st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
        )
    ).map(lambda d: graphql.StringValueNode(value=d.isoformat())),
    # Files only travel in multipart bodies; over JSON an Upload can only be null.
    "Upload": st.just(graphql.NullValueNode()),
}

SNAPSHOT = """
{
  viewer { id email isAdmin }
  projects(first: 100) { totalCount edges { node { id name description createdAt } } }
  stories(first: 100) { totalCount edges { node { id title paragraphs project { id } } } }
  videos(first: 100, filter: {includeDeleted: true}) { totalCount edges { node {
    id status progress prompt provider caption videoStyle resolution outputFormat
    durationSeconds priority version deletedAt theme { name } tags { name }
    project { id } story { id } paragraphIndex } } }
  tags { id name }
  themes { id name }
}
"""


class Api:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def gql(self, query: str, variables: dict | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        return response

    def ok(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        body = self.gql(query, variables, token).json()
        assert not body.get("errors"), body
        return body["data"]


@pytest.fixture
def api(settings, tmp_path: Path) -> Iterator[Api]:
    """A real API process on the test's (migrated) database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
    env.update(
        VIDGEN_DATABASE_URL=settings.resolved_database_url,
        VIDGEN_SECRET_KEY="fuzz-secret",
        VIDGEN_DATA_DIR=str(tmp_path / "data"),
        VIDGEN_MEDIA_ROOT=str(tmp_path / "media"),
        VIDGEN_EMBEDDED_WORKER="false",
        VIDGEN_LOG_LEVEL="ERROR",
        VIDGEN_LOG_JSON="true",
    )
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "vidgen.web.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    api = Api(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if api.client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        yield api
    finally:
        api.client.close()
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _register(api: Api, email: str) -> str:
    data = api.ok(
        "mutation($i: RegisterInput!) { register(input: $i) { token } }",
        {"i": {"email": email, "password": "fuzz passphrase 123"}},
    )
    return data["register"]["token"]


def _seed(api: Api, token: str) -> None:
    project = api.ok(
        'mutation { createProject(input: {name: "Theirs", description: "d"}) { id } }',
        token=token,
    )["createProject"]["id"]
    story = api.ok(
        'mutation($p: ID) { createStory(input: {title: "S", projectId: $p,'
        ' paragraphs: ["one", "two"]}) { id } }',
        {"p": project},
        token=token,
    )["createStory"]["id"]
    for i in range(3):
        api.ok(
            "mutation($p: ID, $s: ID, $t: String!) { generateVideo(input: {prompt: $t,"
            ' projectId: $p, storyId: $s, paragraphIndex: 1, resolution: "512x512",'
            ' tags: ["fox", "snow"], theme: "winter"}) { id } }',
            {"p": project, "s": story, "t": f"their video {i}"},
            token=token,
        )


IDS = """
{ viewer { id }
  projects(first: 100) { edges { node { id } } }
  stories(first: 100) { edges { node { id } } }
  videos(first: 100, filter: {includeDeleted: true}) { edges { node { id eventCursor } } }
  tags { id } themes { id } }
"""


def _ids(api: Api, token: str) -> list[str]:
    data = api.ok(IDS, token=token)
    found = [data["viewer"]["id"]]
    for name in ("projects", "stories", "videos"):
        found += [edge["node"]["id"] for edge in data[name]["edges"]]
    found += [row["id"] for row in data["tags"] + data["themes"]]
    return found


def _scalars(real_ids: list[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Ids are mostly REAL ones, of both users, so the fuzzer reaches actual rows."""
    numbers = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64]),
    )
    made_up = st.builds(  # well-formed global ids naming nothing, some beyond any column
        lambda kind, number: str(GlobalID(kind, str(number))),
        st.sampled_from(["Video", "Project", "Story", "Tag", "Theme", "User", "Other"]),
        numbers,
    )
    ids = st.one_of(
        st.sampled_from(real_ids), st.sampled_from(real_ids), st.text(max_size=20), made_up
    ).map(lambda v: graphql.StringValueNode(value=v))
    return {**CUSTOM_SCALARS, "ID": ids}


def _mutation_fields() -> list[str]:
    fields = graphql.build_schema(SCHEMA).mutation_type.fields
    # logout would only end the attacker's own session and leave the rest unauthenticated.
    return sorted(name for name in fields if name != "logout")


def _check(response: httpx.Response, document: str) -> None:
    assert response.status_code < 500, f"{response.status_code} for:\n{document}"
    if response.headers.get("content-type", "").startswith("application/json"):
        for error in response.json().get("errors") or []:
            code = (error.get("extensions") or {}).get("code")
            assert code != "INTERNAL", f"INTERNAL error for:\n{document}\n{error}"
            assert code, f"error without a code for:\n{document}\n{error}"


def _fuzz(api: Api, strategy: st.SearchStrategy[str], token: str, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(document=strategy)
    def run(document: str) -> None:
        _check(api.gql(document, token=token), document)

    run()


def test_fuzzed_queries_and_mutations_are_coded_and_contained(api: Api) -> None:
    victim = _register(api, "victim@example.com")
    _seed(api, victim)
    before = api.ok(SNAPSHOT, token=victim)
    attacker = _register(api, "attacker@example.com")
    _seed(api, attacker)  # so generated ids have real rows of the attacker's to hit

    scalars = _scalars(_ids(api, victim) + _ids(api, attacker))
    fields = _mutation_fields()
    per = max(EXAMPLES // 4, 5)
    _fuzz(api, queries(SCHEMA, custom_scalars=scalars), attacker, per)
    _fuzz(api, mutations(SCHEMA, custom_scalars=scalars, fields=fields), attacker, per)
    _fuzz(api, queries(SCHEMA, custom_scalars=scalars, mode=Mode.NEGATIVE), attacker, per)
    _fuzz(
        api,
        mutations(SCHEMA, custom_scalars=scalars, fields=fields, mode=Mode.NEGATIVE),
        attacker,
        per,
    )
    # The attacker's session must have survived the run (else it proved little).
    assert api.ok("{ viewer { email } }", token=attacker)["viewer"]["email"] == (
        "attacker@example.com"
    )

    after = api.ok(SNAPSHOT, token=victim)
    assert after == before, "the attacker's requests changed the victim's data"
