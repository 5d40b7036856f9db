"""The GraphQL API over HTTP, beside a hand-written Starlette + asyncpg endpoint.

    .venv/bin/python -m bench.api_bench [--quick] [--json] [--profile DIR]

On its own PostgreSQL database (created here, dropped at the end; admin URL from
VIDGEN_BENCH_PG_URL, default postgres://root@127.0.0.1:5432/test), seeded through vidgen's
services with one user and token, projects, stories with paragraphs, themes, tags and 240
videos (each with a theme, 2-3 tags, a project and a story):

- list page: ``videos(first: 50)`` with id, prompt, status, createdAt, owner, project,
  story, theme and tags, POSTed to vidgen under uvicorn (one process, ``--factory
  vidgen.web.app:app_from_env``, no worker, Redis bus when reachable) vs ``GET /list`` of
  :mod:`bench.bare_app` under uvicorn (one process), which returns the identical JSON
  (checked here before measuring). Requests per second; target vidgen/bare >= 1/3.
- enqueue: ``generateVideo`` (provider local, a project, a story, a theme, 2-3 tags, a unique
  prompt and idempotency key per request; no worker runs, so the jobs just queue) vs
  ``POST /enqueue`` of the bare app, which inserts the same rows (video, first status-history
  row, tag links) in one transaction. Rows per second; target >= 1/3.
- statements per request: SQL statements vidgen sends for one list request with first 10,
  50 and 100 (and for one enqueue), counted in-process (httpx.ASGITransport) from Tortoise's
  statement log, like tests/api. Constant in the page size means no N+1.
- random documents: 12 list documents drawn at random (:mod:`bench.documents`; the seed is
  printed, a new one each run unless ``--seed`` is given) from Video's fields, ``cursor``,
  ``pageInfo``, ``totalCount`` and the relations, each against the bare app's ``POST /page``
  answering the same document with the same bytes (checked before measuring). The median
  and the worst ratio; targets median >= 1/2, worst >= 1/3.
- ``videos(first: 50) { edges { node { id } } }`` vs ``GET /ids`` (target >= 1/2) and
  ``{ viewer { id } }`` vs ``GET /viewer`` (target >= 2/3): the smallest list and the floor
  of an authenticated request.

Load: the same generator for both, a minimal asyncio HTTP/1.1 client (keep-alive, N
connections, one request in flight each) in this process: warm-up, then a fixed measuring
window; rounds alternate which server goes first and the best round of each counts. The
servers' and the client's CPU use in the window is reported, so a client-bound run shows.

``--profile DIR`` runs the app in-process under pyinstrument for a few hundred list, enqueue
and ``{ viewer { id } }`` requests and writes ``DIR/list.html``, ``DIR/list.txt`` and the
same for ``enqueue`` and ``viewer``.
With ``--json`` the last line printed is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("VIDGEN_BENCH_PG_URL", "postgres://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VIDGEN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TARGET = 1 / 3
ENQUEUE_TARGET = 1 / 2
IDS_QUERY = "{ videos(first: 50) { edges { node { id } } } }"
VIEWER_QUERY = "{ viewer { id } }"
VIDEOS = 240

LIST_QUERY = """query List($first: Int!) {
  videos(first: $first) {
    edges { node {
      id prompt status createdAt
      owner { id email }
      project { id name }
      story { id title }
      theme { name }
      tags { name }
    } }
  }
}"""

GENERATE_MUTATION = """mutation Generate($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id status createdAt }
}"""

PROMPTS = (
    "a lighthouse on a cliff in a storm, waves crashing, gulls circling at dusk",
    "a paper boat drifting down a rain-soaked city street at night, neon reflections",
    "time-lapse of a desert bloom after the first rain, wide shot, golden hour",
    "an old fox walking through a snowy birch forest, soft morning light",
    "a busy night market in Taipei, steam rising from food stalls, handheld camera",
    "a hot-air balloon rising over terraced rice fields at sunrise, drone shot",
)
THEMES = ("Cinematic", "Documentary", "Anime", "Noir", "Watercolor")
TAGS = (
    "ocean", "night", "city", "forest", "sunrise", "storm", "animals", "aerial",
    "people", "food", "winter", "travel",
)  # fmt: skip


def db_url(name: str) -> str:
    return f"{ADMIN_URL.rpartition('/')[0]}/{name}"


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- seed ---------------------------------------------------------------------------------


@dataclass
class Seed:
    token: str
    email: str
    projects: list[str]  # global ids
    stories: dict[str, list[str]]  # project global id -> story global ids
    themes: list[str]
    tags: list[str]


def _gid(type_name: str, node_id: int) -> str:
    from strawberry.relay import to_base64

    return to_base64(type_name, node_id)


async def seed(runtime: Any) -> Seed:
    """One user with a token and a realistic library, made through vidgen's services."""
    from vidgen.models import Video, VideoStatus
    from vidgen.services import catalog, users, videos

    user = await users.create_user(email="bench@example.com", password="bench-password")
    token, _ = await users.issue_token(user=user, name="bench")
    rng = random.Random(8)
    projects, stories = [], {}
    for p in range(4):
        project = await catalog.create_project(
            viewer=user, name=f"Project {p + 1}", description=f"Benchmark project {p + 1}"
        )
        projects.append(project)
        stories[project.id] = [
            await catalog.create_story(
                viewer=user,
                title=f"Story {p + 1}.{s + 1}",
                project_id=project.id,
                paragraphs=[f"Paragraph {i + 1}: {rng.choice(PROMPTS)}" for i in range(6)],
            )
            for s in range(2)
        ]
    for i in range(VIDEOS):
        project = projects[i % len(projects)]
        story = stories[project.id][i % 2]
        await videos.generate_video(
            runtime=runtime,
            viewer=user,
            prompt=f"{PROMPTS[i % len(PROMPTS)]} (take {i})",
            provider="local",
            project_id=project.id,
            story_id=story.id,
            paragraph_index=i % 6,
            theme=THEMES[i % len(THEMES)],
            tags=rng.sample(TAGS, 2 + i % 2),
            caption=f"Clip {i}",
        )
    # A library in use: most videos done, a few failed or canceled, some still queued.
    ids = [v for v in await Video.all().order_by("id").values_list("id", flat=True)]
    for status, share in ((VideoStatus.COMPLETED, 0.7), (VideoStatus.FAILED, 0.05)):
        chosen = ids[: int(len(ids) * share)]
        ids = ids[len(chosen) :]
        await Video.filter(id__in=chosen).update(status=status, progress=1.0)
    return Seed(
        token=token,
        email=user.email,
        projects=[_gid("Project", p.id) for p in projects],
        stories={
            _gid("Project", pid): [_gid("Story", s.id) for s in rows]
            for pid, rows in stories.items()
        },
        themes=list(THEMES),
        tags=list(TAGS),
    )


def enqueue_input(seed: Seed, run: str, i: int) -> dict[str, Any]:
    """The i-th generateVideo input of a run: unique prompt and key, existing grouping."""
    project = seed.projects[i % len(seed.projects)]
    rng = random.Random(i)
    return {
        "prompt": f"{PROMPTS[i % len(PROMPTS)]} ({run} {i})",
        "provider": "local",
        "projectId": project,
        "storyId": seed.stories[project][i % len(seed.stories[project])],
        "theme": seed.themes[i % len(seed.themes)],
        "tags": rng.sample(seed.tags, 2 + i % 2),
        "idempotencyKey": f"{run}-{i}",
    }


# --- statements per request ---------------------------------------------------------------


class StatementCounter(logging.Handler):
    """Counts the SQL statements Tortoise logs (each one, at DEBUG), as tests/api does."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            self.statements.append(message)

    @contextlib.contextmanager
    def counting(self):
        logger = logging.getLogger("tortoise.db_client")
        previous, propagate = logger.level, logger.propagate
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(self)
        self.statements.clear()
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(previous)
            logger.propagate = propagate


@contextlib.asynccontextmanager
async def in_process(settings: Any, runtime: Any) -> AsyncIterator[Any]:
    """An httpx client talking to the app in this process (no lifespan: db already open)."""
    import httpx

    from vidgen.web.app import create_app

    app = create_app(settings, runtime=runtime, manage_database=False, embedded_worker=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        yield client


async def gql(client: Any, seed: Seed, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {seed.token}"},
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL request failed: {response.status_code} {body}")
    return body


async def count_statements(settings: Any, runtime: Any, seed: Seed) -> dict[str, Any]:
    counter = StatementCounter()
    result: dict[str, Any] = {}
    async with in_process(settings, runtime) as client:
        for first in (10, 50, 100):
            await gql(client, seed, LIST_QUERY, {"first": first})  # warm caches
            with counter.counting():
                await gql(client, seed, LIST_QUERY, {"first": first})
            result[f"list_first_{first}"] = len(counter.statements)
            if first == 50:
                result["list_statements"] = [s.split(":")[0][:160] for s in counter.statements]
        await gql(client, seed, GENERATE_MUTATION, {"input": enqueue_input(seed, "count", 0)})
        with counter.counting():
            await gql(client, seed, GENERATE_MUTATION, {"input": enqueue_input(seed, "count", 1)})
        result["enqueue"] = len(counter.statements)
        result["enqueue_statements"] = [s.split(":")[0][:160] for s in counter.statements]
    counts = [result[f"list_first_{n}"] for n in (10, 50, 100)]
    result["constant"] = len(set(counts)) == 1
    return result


async def profile(settings: Any, runtime: Any, seed: Seed, folder: Path, requests: int) -> None:
    """pyinstrument over ``requests`` list, enqueue and viewer requests, 8 at a time, in-process."""
    from pyinstrument import Profiler

    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    async with in_process(settings, runtime) as client:
        for name, make in (
            ("list", lambda i: (LIST_QUERY, {"first": 50})),
            ("enqueue", lambda i: (GENERATE_MUTATION, {"input": enqueue_input(seed, "prof", i)})),
            ("viewer", lambda i: (VIEWER_QUERY, {})),
        ):
            for i in range(20):  # warm-up
                await gql(client, seed, *make(-1 - i if name == "list" else 10_000 + i))
            counter = itertools.count()

            async def worker(
                make: Callable[[int], tuple[str, dict[str, Any]]] = make,
                counter: itertools.count[int] = counter,
            ) -> None:
                while (i := next(counter)) < requests:
                    await gql(client, seed, *make(i))

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            started = time.perf_counter()
            profiler.start()
            await asyncio.gather(*(worker() for _ in range(8)))
            profiler.stop()
            elapsed = time.perf_counter() - started
            (folder / f"{name}.html").write_text(profiler.output_html())
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            (folder / f"{name}.txt").write_text(text)
            log(f"profile {name}: {requests} requests in {elapsed:.2f}s -> {folder}/{name}.*")


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (from /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")


def postgres_cpu_seconds() -> float:
    """User + system CPU of every local ``postgres`` process so far (from /proc; the
    server is shared with whatever else runs, so this is indicative only)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        head, _, rest = text.rpartition(")")
        if head.endswith("(postgres"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def start_server(name: str, app: str, env: dict[str, str], cwd: Path) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", "1",
    ]  # fmt: skip
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **env}
    process = subprocess.Popen(command, env=full_env, cwd=cwd)
    return Server(name, port, process)


async def wait_ready(server: Server, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} server exited with {server.process.returncode}")
        try:
            status, _ = await one_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
            if status in (200, 404, 503):
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name} server did not start in {within:.0f}s")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


# --- the load generator --------------------------------------------------------------------


def http_request(method: str, path: str, token: str, body: bytes | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            raise RuntimeError("chunked responses are not supported by this client")
    body = await reader.readexactly(length) if length else b""
    return status, body


async def one_request(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()


@dataclass
class Measurement:
    target: str
    requests: int
    seconds: float
    errors: int
    rate: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # cores used by the server process in the window
    db_cpu: float  # cores used by all local postgres processes in the window
    client_cpu: float  # cores used by this (client) process in the window
    first_error: str | None = None


async def load(
    server: Server,
    make_request: Callable[[int], bytes],
    *,
    connections: int,
    warmup: float,
    duration: float,
    ok: Callable[[int, bytes], bool],
) -> Measurement:
    """Closed-loop load: ``connections`` keep-alive connections, one request in flight each."""
    counter = itertools.count()
    start = time.perf_counter()
    measure_from, measure_to = start + warmup, start + warmup + duration
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    marks: dict[str, float] = {}

    async def mark() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        marks["server"], marks["client"] = server.cpu_seconds(), time.process_time()
        marks["db"] = postgres_cpu_seconds()
        await asyncio.sleep(max(0.0, measure_to - time.perf_counter()))
        marks["server_end"], marks["client_end"] = server.cpu_seconds(), time.process_time()
        marks["db_end"] = postgres_cpu_seconds()

    async def worker() -> None:
        nonlocal errors, first_error
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            while True:
                sent = time.perf_counter()
                if sent >= measure_to:
                    return
                writer.write(make_request(next(counter)))
                status, body = await read_response(reader)
                done = time.perf_counter()
                if measure_from <= sent and done <= measure_to:
                    latencies.append(done - sent)
                    if not ok(status, body):
                        errors += 1
                        first_error = first_error or f"{status} {body[:300]!r}"
        finally:
            writer.close()

    await asyncio.gather(mark(), *(worker() for _ in range(connections)))
    latencies.sort()
    n = len(latencies)
    return Measurement(
        target=server.name,
        requests=n,
        seconds=duration,
        errors=errors,
        rate=n / duration,
        p50_ms=1000 * latencies[n // 2] if n else float("nan"),
        p99_ms=1000 * latencies[min(n - 1, int(n * 0.99))] if n else float("nan"),
        server_cpu=(marks["server_end"] - marks["server"]) / duration,
        db_cpu=(marks["db_end"] - marks["db"]) / duration,
        client_cpu=(marks["client_end"] - marks["client"]) / duration,
        first_error=first_error,
    )


def graphql_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"errors"' not in body and body.startswith(b'{"data"')


@dataclass
class Comparison:
    name: str
    unit: str
    vidgen: float = 0.0
    baseline: float = 0.0
    ratio: float = 0.0
    target: float = TARGET
    passed: bool = False
    rounds: list[dict[str, Any]] = field(default_factory=list)


async def compare(
    name: str,
    unit: str,
    servers: dict[str, Server],
    requests: dict[str, Callable[[int], bytes]],
    *,
    rounds: int,
    connections: int,
    warmup: float,
    duration: float,
    target: float = TARGET,
    flip: bool = False,
) -> Comparison:
    result = Comparison(name=name, unit=unit, target=target)
    best: dict[str, Measurement] = {}
    for r in range(rounds):
        order = ["vidgen", "bare"] if (r + flip) % 2 == 0 else ["bare", "vidgen"]
        for target in order:
            m = await load(
                servers[target],
                requests[target],
                connections=connections,
                warmup=warmup,
                duration=duration,
                ok=graphql_ok,
            )
            log(
                f"{name} round {r + 1} {target:>6}: {m.rate:8.1f} {unit}  p50 {m.p50_ms:6.1f} ms"
                f"  p99 {m.p99_ms:6.1f} ms  errors {m.errors}  CPU cores: server {m.server_cpu:.2f}"
                f" postgres {m.db_cpu:.2f} client {m.client_cpu:.2f}"
            )
            if m.errors:
                log(f"  first error: {m.first_error}")
            result.rounds.append({"round": r + 1, **asdict(m)})
            if target not in best or m.rate > best[target].rate:
                best[target] = m
    result.vidgen, result.baseline = best["vidgen"].rate, best["bare"].rate
    result.ratio = result.vidgen / result.baseline if result.baseline else 0.0
    errors = sum(row["errors"] for row in result.rounds)
    result.passed = errors == 0 and result.ratio >= result.target
    return result


# --- the run -------------------------------------------------------------------------------


def redis_reachable(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "use the in-process bus"
        return False


def same_page(vidgen_body: bytes, bare_body: bytes) -> tuple[bool, str]:
    ours, theirs = json.loads(vidgen_body), json.loads(bare_body)
    if ours == theirs:
        edges = ours["data"]["videos"]["edges"]
        return True, f"{len(edges)} identical nodes"
    return False, f"vidgen {json.dumps(ours)[:400]}\nbare   {json.dumps(theirs)[:400]}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from vidgen import db as vdb
    from vidgen.events.memory import MemoryBus
    from vidgen.runtime import Runtime
    from vidgen.settings import Settings

    name = f"vidgen_apibench_{uuid.uuid4().hex[:8]}"
    use_redis = redis_reachable(REDIS_URL)
    out: dict[str, Any] = {
        "benchmark": "api",
        "connections": args.connections,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "videos": VIDEOS,
        "bus": "redis" if use_redis else "memory",
    }
    await admin(f"CREATE DATABASE {name}")
    try:
        url = db_url(name)
        with tempfile.TemporaryDirectory(prefix="vidgen-apibench-") as folder:
            tmp = Path(folder)
            started = time.perf_counter()
            await vdb.migrate_database(url)
            settings = Settings(
                _env_file=None,
                database_url=url,
                data_dir=tmp,
                secret_key="bench-secret",
                redis_url=None,
                embedded_worker=False,
                log_level="WARNING",
            )
            await vdb.init(settings)
            runtime = Runtime.create(settings, bus=MemoryBus())
            await runtime.open()
            try:
                data = await seed(runtime)
                log(f"seeded {VIDEOS} videos in {time.perf_counter() - started:.1f}s ({name})")
                out["statements"] = await count_statements(settings, runtime, data)
                s = out["statements"]
                log(
                    f"statements per list request: first 10 -> {s['list_first_10']}, "
                    f"50 -> {s['list_first_50']}, 100 -> {s['list_first_100']}; "
                    f"per enqueue: {s['enqueue']}"
                )
                if args.profile:
                    await profile(settings, runtime, data, Path(args.profile), args.profile_n)
            finally:
                await runtime.close()
                await vdb.close()
            # The seed's status updates leave dead row versions in the queue's indexes, and
            # its tables have no statistics yet: a deployment's autovacuum takes care of
            # both, so both sides start from the state it leaves.
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("VACUUM (ANALYZE)")
            finally:
                await conn.close()

            env = {
                "VIDGEN_DATABASE_URL": url,
                "VIDGEN_SECRET_KEY": "bench-secret",
                "VIDGEN_EMBEDDED_WORKER": "false",
                "VIDGEN_LOG_LEVEL": "WARNING",
                "VIDGEN_DATA_DIR": str(tmp / "data"),
                "VIDGEN_GRAPHIQL": "false",
            }
            if use_redis:
                env["VIDGEN_REDIS_URL"] = REDIS_URL
                # Its own channels: the shared Redis also carries other processes' events
                # (tests, other benchmarks), which the server would otherwise read and drop.
                env["VIDGEN_REDIS_NAMESPACE"] = name
            else:
                env.pop("VIDGEN_REDIS_URL", None)
                os.environ.pop("VIDGEN_REDIS_URL", None)
            servers = {
                "vidgen": start_server("vidgen", "vidgen.web.app:app_from_env", env, tmp),
                "bare": start_server(
                    "bare", "bench.bare_app:app_from_env", {"BENCH_DATABASE_URL": url}, tmp
                ),
            }
            try:
                await asyncio.gather(*(wait_ready(s) for s in servers.values()))
                token = data.token
                list_body = json.dumps({"query": LIST_QUERY, "variables": {"first": 50}}).encode()
                list_requests = {
                    "vidgen": lambda i: http_request("POST", "/graphql", token, list_body),
                    "bare": lambda i: http_request("GET", "/list?first=50", token),
                }
                _, ours = await one_request(servers["vidgen"].port, list_requests["vidgen"](0))
                _, theirs = await one_request(servers["bare"].port, list_requests["bare"](0))
                same, detail = same_page(ours, theirs)
                out["vidgen_list_bytes"], out["bare_list_bytes"] = len(ours), len(theirs)
                log(f"list page JSON, vidgen vs bare: {'same' if same else 'DIFFERENT'}: {detail}")
                out["same_json"] = same
                if not same:
                    raise RuntimeError("the bare endpoint does not return vidgen's JSON")
                parts = args.parts.split(",")
                out["list"] = (
                    None
                    if "list" not in parts
                    else asdict(
                        await compare(
                            "list page",
                            "req/s",
                            servers,
                            list_requests,
                            rounds=args.rounds,
                            connections=args.connections,
                            warmup=args.warmup,
                            duration=args.duration,
                        )
                    )
                )
                run_id = uuid.uuid4().hex[:6]

                def generate(i: int) -> bytes:
                    variables = {"input": enqueue_input(data, f"v{run_id}", i)}
                    body = {"query": GENERATE_MUTATION, "variables": variables}
                    return http_request("POST", "/graphql", token, json.dumps(body).encode())

                def insert(i: int) -> bytes:
                    body = json.dumps(enqueue_input(data, f"b{run_id}", i)).encode()
                    return http_request("POST", "/enqueue", token, body)

                out["enqueue"] = (
                    None
                    if "enqueue" not in parts
                    else asdict(
                        await compare(
                            "enqueue",
                            "rows/s",
                            servers,
                            {"vidgen": generate, "bare": insert},
                            rounds=args.rounds,
                            connections=args.connections,
                            warmup=args.warmup,
                            duration=args.duration,
                            target=ENQUEUE_TARGET,
                        )
                    )
                )
                out["queued_rows"] = await count_queued(url, run_id)
                await small_requests(out, args, servers, token, parts)
                out["documents"] = (
                    None
                    if "documents" not in parts
                    else await random_documents(args, servers, token)
                )
            finally:
                for server in servers.values():
                    stop_server(server)
    finally:
        await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return out


async def same_bytes(
    servers: dict[str, Server], requests: dict[str, Callable[[int], bytes]], what: str
) -> None:
    """Both servers must answer the very same bytes (status 200, no errors)."""
    _, ours = await one_request(servers["vidgen"].port, requests["vidgen"](0))
    _, theirs = await one_request(servers["bare"].port, requests["bare"](0))
    if ours != theirs or not graphql_ok(200, ours):
        raise RuntimeError(
            f"{what}: vidgen and bare differ\nvidgen {ours[:400]!r}\nbare   {theirs[:400]!r}"
        )


async def small_requests(
    out: dict[str, Any],
    args: argparse.Namespace,
    servers: dict[str, Server],
    token: str,
    parts: list[str],
) -> None:
    """The id-only list and ``{ viewer { id } }`` against their bare endpoints."""
    cases = (
        ("ids", "videos(first: 50) { edges { node { id } } }", IDS_QUERY, "/ids?first=50", 1 / 2),
        ("viewer", "{ viewer { id } }", VIEWER_QUERY, "/viewer", 2 / 3),
    )
    for key, name, query, path, target in cases:
        if key not in parts:
            out[key] = None
            continue
        body = json.dumps({"query": query}).encode()
        requests = {
            "vidgen": lambda i, b=body: http_request("POST", "/graphql", token, b),
            "bare": lambda i, p=path: http_request("GET", p, token),
        }
        await same_bytes(servers, requests, name)
        out[key] = asdict(
            await compare(
                name,
                "req/s",
                servers,
                requests,
                rounds=args.rounds,
                connections=args.connections,
                warmup=args.warmup,
                duration=args.duration,
                target=target,
            )
        )


async def random_documents(
    args: argparse.Namespace, servers: dict[str, Server], token: str
) -> dict[str, Any]:
    """``args.documents`` random list documents, each against the bare ``POST /page``."""
    from bench import documents

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    log(f"random documents: seed {seed} (repeat with --seed {seed})")
    rng = random.Random(seed)
    results = []
    for index in range(args.documents):
        spec = documents.draw(rng)
        text = spec.document()
        body = json.dumps({"query": text}).encode()
        requests = {
            "vidgen": lambda i, b=body: http_request("POST", "/graphql", token, b),
            "bare": lambda i, b=spec.to_json(): http_request("POST", "/page", token, b),
        }
        await same_bytes(servers, requests, f"document {index + 1}: {text}")
        compared = await compare(
            f"document {index + 1}",
            "req/s",
            servers,
            requests,
            rounds=1,
            connections=args.connections,
            warmup=args.doc_warmup,
            duration=args.doc_duration,
            flip=index % 2 == 1,
        )
        log(f"document {index + 1}: ratio {compared.ratio:.2f}: {text}")
        results.append({"document": text, **asdict(compared)})
    ratios = [row["ratio"] for row in results]
    errors = sum(r["errors"] for row in results for r in row["rounds"])
    median, worst = statistics.median(ratios), min(ratios)
    return {
        "seed": seed,
        "median": median,
        "worst": worst,
        "worst_document": results[ratios.index(worst)]["document"],
        "passed": errors == 0 and median >= 1 / 2 and worst >= 1 / 3,
        "results": results,
    }


async def count_queued(url: str, run_id: str) -> dict[str, int]:
    """Rows each side wrote (a sanity check that both really inserted what they claim)."""
    conn = await asyncpg.connect(url)
    try:
        counts = {}
        for side, prefix in (("vidgen", "v"), ("bare", "b")):
            counts[side] = await conn.fetchval(
                "SELECT count(*) FROM videos WHERE idempotency_key LIKE $1", f"{prefix}{run_id}-%"
            )
            counts[f"{side}_tag_links"] = await conn.fetchval(
                "SELECT count(*) FROM video_tags vt JOIN videos v ON v.id = vt.videos_id "
                "WHERE v.idempotency_key LIKE $1",
                f"{prefix}{run_id}-%",
            )
            counts[f"{side}_history"] = await conn.fetchval(
                "SELECT count(*) FROM video_status_events e JOIN videos v ON v.id = e.video_id "
                "WHERE v.idempotency_key LIKE $1",
                f"{prefix}{run_id}-%",
            )
        return counts
    finally:
        await conn.close()


def print_report(out: dict[str, Any]) -> None:
    print(
        f"vidgen API vs bare Starlette+asyncpg, one uvicorn process each, "
        f"{out['connections']} connections, {out['rounds']} x ({out['warmup_s']:g}s warm-up + "
        f"{out['duration_s']:g}s), best round; bus {out['bus']}"
    )
    header = f"{'benchmark':<22} {'vidgen':>10} {'bare':>10} {'ratio':>6} {'target':>7}  result"
    print(header)
    print("-" * len(header))
    for key in ("list", "enqueue", "ids", "viewer"):
        c = out.get(key)
        if c is None:
            continue
        label = f"{c['name']} ({c['unit']})"
        print(
            f"{label:<22} {c['vidgen']:>10.1f} {c['baseline']:>10.1f} {c['ratio']:>6.2f} "
            f"{'>= ' + format(c['target'], '.2f'):>7}  {'pass' if c['passed'] else 'FAIL'}"
        )
    d = out.get("documents")
    if d:
        print(
            f"{len(d['results'])} random list documents (seed {d['seed']}): median ratio "
            f"{d['median']:.2f} (>= 0.50), worst {d['worst']:.2f} (>= 0.33): "
            f"{'pass' if d['passed'] else 'FAIL'}"
        )
        for row in d["results"]:
            print(
                f"  {row['ratio']:.2f}  {row['vidgen']:8.1f} / {row['baseline']:8.1f}  "
                + row["document"]
            )
    s = out["statements"]
    print(
        f"SQL statements per list request: first 10 -> {s['list_first_10']}, "
        f"first 50 -> {s['list_first_50']}, first 100 -> {s['list_first_100']} "
        f"({'constant' if s['constant'] else 'NOT constant'}); per generateVideo: {s['enqueue']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1s + 3s")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="best of N (default 2)")
    parser.add_argument(
        "--parts",
        default="list,enqueue,ids,viewer,documents",
        help="what to measure over HTTP (default: list,enqueue,ids,viewer,documents)",
    )
    parser.add_argument("--seed", type=int, help="the random documents' seed (default: new)")
    parser.add_argument("--documents", type=int, default=12, help="random documents (12)")
    parser.add_argument("--doc-warmup", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--doc-duration", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--profile", metavar="DIR", help="pyinstrument the app in-process")
    parser.add_argument("--profile-n", type=int, default=400, help="requests per profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.duration, args.rounds = 1.0, 3.0, 1
        args.doc_warmup, args.doc_duration = 0.5, 1.5
    try:
        import uvloop

        out = uvloop.run(run(args))
    except ImportError:
        out = asyncio.run(run(args))
    print_report(out)
    if args.json:
        print(json.dumps(out, default=str))
    keys = ("list", "enqueue", "ids", "viewer", "documents")
    failed = any(out.get(key) and not out[key]["passed"] for key in keys)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
