"""Issue 23's mutations fuzzed (hypothesis-graphql) against a real API process whose quotas
and mutation rate limit are ON: ``setUserLimits`` as an admin and as a plain user, and the
mutations the quotas guard (``generateVideo``, ``retryVideo``, ``cancelVideo``), valid and
invalid, with the ids of real users and videos. No answer may be a 500 or carry an
``INTERNAL`` (or uncoded) error, and afterwards every user's limits and usage still read.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis_graphql import Mode, mutations, queries

from tests.faults.conftest import free_port, vidgen_env
from tests.fuzz.test_graphql_fuzz import EXAMPLES, SCHEMA, Api, _fuzz, _ids, _register, _scalars

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LIMITS_ON = {
    "VIDGEN_USER_MAX_ACTIVE_JOBS": "2",
    "VIDGEN_USER_DAILY_VIDEO_SECONDS": "30",
    # High enough that most requests reach the resolvers, low enough that some are refused.
    "VIDGEN_USER_MUTATIONS_PER_MINUTE": "600",
    "VIDGEN_USER_MUTATION_BURST": "40",
    "VIDGEN_ENABLE_TEST_PROVIDER": "true",
}
GUARDED = ["setUserLimits", "generateVideo", "retryVideo", "cancelVideo"]
READ = ["viewer", "node", "video"]
LIMITS_OF = """
query Of($id: ID!) { node(id: $id) { ... on User { id
  limits { maxActiveJobs dailyVideoSeconds exempt mutationsPerMinute
           override { maxActiveJobs dailyVideoSeconds exempt } }
  usage { activeJobs queuedJobs processingJobs videosToday videoSecondsToday
          videoSecondsLeftToday byProvider { provider activeJobs } } } } }
"""


def _env(settings, tmp_path: Path) -> dict[str, str]:
    return vidgen_env(
        VIDGEN_DATABASE_URL=settings.resolved_database_url,
        VIDGEN_SECRET_KEY="fuzz-secret",
        VIDGEN_DATA_DIR=str(tmp_path / "data"),
        VIDGEN_MEDIA_ROOT=str(tmp_path / "media"),
        VIDGEN_EMBEDDED_WORKER="false",
        VIDGEN_LOG_LEVEL="ERROR",
        VIDGEN_LOG_JSON="true",
        **LIMITS_ON,
    )


@pytest.fixture
def api(settings, tmp_path: Path) -> Iterator[Api]:
    """A real API process on the test's database, its limits on (no worker: jobs stay
    queued, so the active-jobs cap holds)."""
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
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
            env=_env(settings, tmp_path),
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
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        yield api
    finally:
        api.client.close()
        proc.terminate()
        proc.wait(timeout=20)
    logged = log_path.read_text()
    assert "unexpected error" not in logged and "Traceback" not in logged, logged[-4000:]


def _admin_token(settings, tmp_path: Path) -> str:
    command = "import sys; from vidgen.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", command, "createuser", "admin@example.com", "--admin"],
        env=_env(settings, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _videos(api: Api, token: str, count: int) -> None:
    for i in range(count):
        body = api.gql(
            'mutation($t: String!) { generateVideo(input: {prompt: $t, provider: "test",'
            " durationSeconds: 5}) { id } }",
            {"t": f"video {i}"},
            token=token,
        ).json()
        assert not body.get("errors"), body


def test_fuzzed_limit_mutations_are_coded(api: Api, settings, tmp_path: Path) -> None:
    admin = _admin_token(settings, tmp_path)
    user = _register(api, "user@example.com")
    _videos(api, user, 2)  # at the active-jobs cap: the next generateVideo is refused
    _videos(api, admin, 1)
    ids = _ids(api, admin) + _ids(api, user)
    assert api.gql("{ viewer { id } }", token=admin).json()["data"]["viewer"]["id"] in ids
    scalars = _scalars(ids)
    per = max(EXAMPLES // 4, 5)
    for token in (admin, user):
        for mode in (Mode.POSITIVE, Mode.NEGATIVE):
            _fuzz(
                api,
                mutations(SCHEMA, custom_scalars=scalars, fields=GUARDED, mode=mode),
                token,
                per,
            )
        _fuzz(api, queries(SCHEMA, custom_scalars=scalars, fields=READ), token, per // 2 + 1)

    # Whatever the fuzzer set, every user's limits and usage still read, for the admin.
    for user_id in {_ids(api, token)[0] for token in (admin, user)}:
        body = api.gql(LIMITS_OF, {"id": user_id}, token=admin).json()
        assert not body.get("errors"), body
        assert body["data"]["node"]["id"] == user_id
