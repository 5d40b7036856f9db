"""Engine capacity: thousands of remote generations in flight on ONE worker process.

    .venv/bin/python -m bench.capacity_bench [--jobs 2000] [--seconds 60] [--seed N] [--quick]

``--jobs`` remote jobs that each take ``--seconds`` at the provider run on one ``vidgen
worker`` process (its own process, as deployed; ``VIDGEN_WORKER_MAX_IN_FLIGHT`` set to
``--in-flight``, default ``--jobs``) against a provider simulator (its own process, serving
Runway's task API over real HTTP: the real ``runway`` adapter submits, polls every 5 s or
more with its backoff, and downloads a small real MP4 that the worker probes and
thumbnails). PostgreSQL (a fresh database on VIDGEN_BENCH_PG_URL, dropped after) and Redis
(VIDGEN_BENCH_REDIS_URL: the API's wake-ups reach the worker) as in production. This process
plays the API: it queues the jobs through the videos service (``generateVideo``'s own code),
for owners drawn at random from the printed seed, as fast as it can.

Measured, each against a baseline from the same run:

- wall: from the first enqueue until the last job completed, against the ideal (the job's
  time at the provider plus the time the enqueues took). Target <= 1.2.
- statements per in-flight job-minute: every statement the worker process sent to
  PostgreSQL (counted inside it, at asyncpg's connection methods: each statement of a
  pipelined batch counts, as do BEGIN and COMMIT), over the minutes its jobs were in flight
  (each attempt's start to end, from the attempt rows). Heartbeats, claims, sweeps, the
  webhook outbox's polls, progress: everything. Target <= 2. Printed by kind as well.
- RSS per in-flight job: the worker's peak resident memory while the most jobs were in
  flight, less its resident memory just before the first enqueue, over that many jobs.
  Target <= 50 KB.
- CPU: the worker's CPU seconds (user + system, all threads) over the run, per job, and
  that of its media processes (its child processes: probe + thumbnail,
  ``VIDGEN_MEDIA_PROCESSES``) apart.
- submissions: the simulator counts the submissions of each job; more than one is a
  second payment (must be 0).
- where the time goes: each job's time split into phases (its enqueue from the first,
  enqueue → claim, claim → the provider's task, the task's end → the poll that saw it,
  that poll → the download, the download → the completing write), as percentiles over all
  jobs and for the 20 that ended last (they set the wall time).

- cores over the ends: from the first job's end at the provider to the last completion, the
  cores used by the worker's event-loop thread, its other threads (downloads' files, fsyncs,
  waiting on the media processes), its media processes (probe + thumbnail), the simulator
  and everything else on the machine (from ``/proc``): a worker short of its
  own CPU shows its loop near 1.0, one starved by other work shows the rest high.

``--quick``: 300 jobs of 20 s. ``--worker-env KEY=VALUE`` (repeatable): a setting for the
worker process, e.g. ``VIDGEN_PROVIDER_MAX_CONNECTIONS=100``. ``--profile FILE``: cProfile
of the worker's event-loop thread (its CPU time) from the first job's completion to the end,
the top functions printed (``--sort``). The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import json
import os
import pstats
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ADMIN_URL = os.environ.get("VIDGEN_BENCH_PG_URL", "postgres://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VIDGEN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"wall_ratio": 1.2, "statements_per_job_minute": 2.0, "rss_kb_per_job": 50.0}


# --- the provider simulator (its own process) -------------------------------------------
def simulator_app(seconds: float) -> Any:
    """Runway's task API, every task succeeding ``seconds`` after its creation."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from vidgen.providers.testing import tiny_video

    video = tiny_video("mp4")
    created: dict[str, float] = {}
    submissions: collections.Counter[str] = collections.Counter()
    polls = [0]
    seen_done: dict[str, float] = {}
    # per task, for the phase breakdown: prompt, created, first seen done (epoch seconds)
    tasks: dict[str, dict[str, Any]] = {}

    async def create(request: Request) -> Response:
        body = await request.json()
        task_id = uuid.uuid4().hex
        created[task_id] = time.monotonic()
        submissions[str(body.get("promptText"))] += 1
        tasks[task_id] = {"prompt": str(body.get("promptText")), "created": time.time()}
        return JSONResponse({"id": task_id})

    async def task(request: Request) -> Response:
        polls[0] += 1
        task_id = request.path_params["id"]
        if task_id not in created:
            return JSONResponse({"error": "Task not found"}, status_code=404)
        elapsed = time.monotonic() - created[task_id]
        tasks[task_id]["polls"] = tasks[task_id].get("polls", 0) + 1
        body: dict[str, Any] = {"id": task_id, "createdAt": "2026-01-01T00:00:00Z"}
        if elapsed < seconds:
            body.update(status="RUNNING", progress=round(elapsed / seconds, 2))
            tasks[task_id]["before"] = seconds - elapsed  # the last look before the end
        else:
            if task_id not in seen_done:
                seen_done[task_id] = elapsed - seconds  # how late the first look came
                tasks[task_id]["seen"] = time.time()
            base = f"{request.url.scheme}://{request.url.netloc}"
            body.update(status="SUCCEEDED", output=[f"{base}/files/{task_id}.mp4"])
        return JSONResponse(body)

    async def delete(request: Request) -> Response:
        created.pop(request.path_params["id"], None)
        return Response(status_code=204)

    async def file(request: Request) -> Response:
        task_id = request.path_params["name"].partition(".")[0]
        if task_id in tasks:
            tasks[task_id].setdefault("fetched", time.time())
        return Response(video, media_type="video/mp4")

    async def stats(request: Request) -> Response:
        twice = sum(1 for n in submissions.values() if n > 1)
        late = sorted(seen_done.values()) or [0.0]
        return JSONResponse(
            {
                "submissions": sum(submissions.values()),
                "twice": twice,
                "polls": polls[0],
                "seen_late_median": late[len(late) // 2],
                "seen_late_max": late[-1],
            }
        )

    async def task_log(request: Request) -> Response:
        return JSONResponse(list(tasks.values()))

    return Starlette(
        routes=[
            Route("/v1/text_to_video", create, methods=["POST"]),
            Route("/v1/tasks/{id}", task, methods=["GET"]),
            Route("/v1/tasks/{id}", delete, methods=["DELETE"]),
            Route("/files/{name}", file),
            Route("/stats", stats),
            Route("/tasks", task_log),
        ]
    )


def serve_simulator(port: int, seconds: float) -> None:
    import uvicorn

    uvicorn.run(
        simulator_app(seconds),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


# --- the worker process: vidgen worker, with its statements counted ----------------------
def statement_kind(query: str) -> str:
    words = " ".join(query.split())
    if words.upper().startswith("WITH"):  # name the CTE statement by what it changes
        for verb, what in (
            ("SET prediction_id", "a prediction id"),
            ("unnest($1::varchar[]", "prediction ids"),
            ("jprogress", "progress"),
            ("FOR UPDATE SKIP LOCKED", "claim"),
            ("SET status", "a transition"),
            ("UPDATE videos", "videos"),
            ("UPDATE video_attempts", "attempts"),
        ):
            if verb in words:
                return f"WITH … ({what})"
    return words[:40]


def run_worker_process(counts_file: Path) -> None:
    """``vidgen worker`` in this process, with every statement it sends counted into
    ``counts_file`` (rewritten every 0.5 s)."""
    import asyncpg.connection

    from vidgen import eventloop, logs
    from vidgen.jobs.worker import run_worker
    from vidgen.settings import Settings

    counts: collections.Counter[str] = collections.Counter()
    many = {"executemany", "fetchmany"}

    def wrap(name: str) -> None:
        original = getattr(asyncpg.connection.Connection, name)

        async def counted(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            n = len(args[0]) if name in many and args else 1
            counts[statement_kind(query)] += n
            counts["(round trips)"] += 1
            return await original(self, query, *args, **kwargs)

        setattr(asyncpg.connection.Connection, name, counted)

    for name in ("execute", "fetch", "fetchrow", "fetchval", "executemany", "fetchmany"):
        if hasattr(asyncpg.connection.Connection, name):
            wrap(name)

    def dump() -> None:
        while True:
            tmp = counts_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(dict(counts)))
            tmp.replace(counts_file)
            time.sleep(0.5)

    threading.Thread(target=dump, daemon=True).start()
    # --profile: cProfile of the event loop's thread (CPU time, not wall time), switched on
    # by SIGUSR1 (sent when the first job completed: the jobs' ends) and written at exit.
    profile_to = os.environ.get("VIDGEN_BENCH_PROFILE")
    profiler = cProfile.Profile(time.thread_time) if profile_to else None
    if profiler is not None:
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    settings = Settings()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    eventloop.run(run_worker(settings), settings.event_loop)
    counts_file.write_text(json.dumps(dict(counts)))
    if profiler is not None and profile_to:
        profiler.disable()
        profiler.dump_stats(profile_to)


# --- the run --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """A process's CPU seconds (all its threads), or one thread's (``thread``: its id)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """The CPU seconds of a process's live child processes (the worker's media processes)."""
    total = 0.0
    for children in Path(f"/proc/{pid}").glob("task/*/children"):
        with contextlib.suppress(OSError):
            for child in children.read_text().split():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += proc_cpu_seconds(int(child))
    return total


def children_rss_kb(pid: int) -> int:
    total = 0
    for children in Path(f"/proc/{pid}").glob("task/*/children"):
        with contextlib.suppress(OSError):
            for child in children.read_text().split():
                with contextlib.suppress(OSError, ValueError):
                    total += proc_rss_kb(int(child))
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cores_used(
    samples: list[tuple[float, float, float, float, float, float]], start: float, end: float
) -> dict[str, float]:
    """Cores used between ``start`` and ``end`` (monotonic): the worker's event-loop thread,
    the worker's other threads, its media processes, the simulator, and everything else on
    the machine."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return {}
    (t0, l0, w0, s0, m0, c0), (t1, l1, w1, s1, m1, c1) = inside[0], inside[-1]
    span = t1 - t0
    loop, worker, sim, machine, media = (
        (l1 - l0) / span,
        (w1 - w0) / span,
        (s1 - s0) / span,
        (m1 - m0) / span,
        max(0.0, c1 - c0) / span,
    )
    return {
        "seconds": round(span, 1),
        "worker_loop": round(loop, 2),
        "worker_threads": round(worker - loop, 2),
        "worker_media_processes": round(media, 2),
        "simulator": round(sim, 2),
        "rest": round(max(0.0, machine - worker - media - sim), 2),
        "idle": round(max(0.0, os.cpu_count() or 1) - machine, 2),
    }


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def read_counts(path: Path) -> collections.Counter[str]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return collections.Counter(json.loads(path.read_text()))
    return collections.Counter()


async def wait_http(url: str, seconds: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg
    import httpx

    from vidgen import db as vdb
    from vidgen.models import User, Video, VideoAttempt, VideoStatus
    from vidgen.runtime import Runtime
    from vidgen.services import videos
    from vidgen.settings import Settings

    rng = random.Random(args.seed)
    name = f"vidgen_capacity_{uuid.uuid4().hex[:8]}"
    url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f"CREATE DATABASE {name}")
    scratch = Path(tempfile.mkdtemp(prefix="vidgen-capacity-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await vdb.migrate_database(url)
        port = free_port()
        sim_url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
        env.update(
            VIDGEN_DATABASE_URL=url,
            VIDGEN_REDIS_URL=REDIS_URL,
            VIDGEN_REDIS_NAMESPACE=name,
            VIDGEN_DATA_DIR=str(scratch / "data"),
            VIDGEN_MEDIA_ROOT=str(scratch / "media"),
            VIDGEN_SECRET_KEY="capacity-bench",
            VIDGEN_RUNWAY_API_KEY="sim-key",
            VIDGEN_RUNWAY_BASE_URL=sim_url,
            VIDGEN_WORKER_MAX_IN_FLIGHT=str(args.in_flight or args.jobs),
            VIDGEN_LOG_LEVEL="WARNING",
            VIDGEN_LOG_JSON="true",
        )
        for pair in args.worker_env:  # e.g. VIDGEN_PROVIDER_MAX_CONNECTIONS=100
            key, _, value = pair.partition("=")
            env[key] = value
        if args.profile:
            env["VIDGEN_BENCH_PROFILE"] = args.profile
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
                [sys.executable, "-m", "bench.capacity_bench", "--serve-simulator", str(port)]
                + ["--seconds", str(args.seconds)],
                cwd=ROOT,
                env=env,
            )
        )
        await wait_http(f"{sim_url}/stats")
        counts_file = scratch / "statements.json"
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
            [sys.executable, "-m", "bench.capacity_bench", "--worker-process", str(counts_file)],
            cwd=ROOT,
            env=env,
            stderr=(scratch / "worker.log").open("wb"),
        )
        procs.append(worker)

        settings = Settings(
            _env_file=None,
            database_url=url,
            redis_url=REDIS_URL,
            redis_namespace=name,
            data_dir=scratch / "api",
            media_root=scratch / "media",
            secret_key="capacity-bench",
            runway_api_key="sim-key",
            runway_base_url=sim_url,
            embedded_worker=False,
        )
        await vdb.init(settings)
        runtime = await Runtime.start(settings)
        try:
            owners = [
                await User.create(email=f"owner{i}@example.com", password_hash="x")
                for i in range(args.owners)
            ]
            await asyncio.sleep(3.0)  # the worker starts, connects, runs its first loops
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited: see {scratch / 'worker.log'}")
            rss_idle = proc_rss_kb(worker.pid)
            cpu_start = proc_cpu_seconds(worker.pid)
            media_cpu_start = children_cpu_seconds(worker.pid)
            loop_cpu_start = proc_cpu_seconds(worker.pid, thread=worker.pid)
            sim_cpu_start = proc_cpu_seconds(procs[0].pid)
            counts_start = read_counts(counts_file)
            peak = {"in_flight": 0, "rss": rss_idle, "rss_at_peak": rss_idle}
            done = asyncio.Event()

            # CPU over time: (monotonic, worker loop thread, worker all, simulator, machine busy,
            # the worker's media processes)
            cpu_samples: list[tuple[float, float, float, float, float, float]] = []

            async def sample() -> None:
                while not done.is_set():
                    cpu_samples.append(
                        (
                            time.monotonic(),
                            proc_cpu_seconds(worker.pid, thread=worker.pid),
                            proc_cpu_seconds(worker.pid),
                            proc_cpu_seconds(procs[0].pid),
                            machine_busy_seconds(),
                            children_cpu_seconds(worker.pid),
                        )
                    )
                    n = await Video.filter(status=VideoStatus.PROCESSING).count()
                    rss = proc_rss_kb(worker.pid)
                    peak["rss"] = max(peak["rss"], rss)
                    peak["media_rss"] = max(peak.get("media_rss", 0), children_rss_kb(worker.pid))
                    if n >= peak["in_flight"]:
                        peak["in_flight"], peak["rss_at_peak"] = n, max(rss, peak["rss_at_peak"])
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 0.5)

            sampler = asyncio.create_task(sample())
            started = time.monotonic()
            started_wall = time.time()
            ids = []
            for i in range(args.jobs):
                owner = rng.choice(owners)
                words = " ".join(rng.choice(WORDS) for _ in range(6))
                video = await videos.generate_video(
                    runtime=runtime, viewer=owner, prompt=f"{words} #{i}", provider="runway"
                )
                ids.append(video.id)
            enqueued = time.monotonic() - started
            ideal = args.seconds + enqueued
            profiling = False
            while True:
                completed = await Video.filter(status=VideoStatus.COMPLETED).count()
                if completed and args.profile and not profiling:
                    worker.send_signal(signal.SIGUSR1)  # the jobs' ends: profile from here
                    profiling = True
                if completed == args.jobs:
                    break
                if time.monotonic() - started > 3 * ideal + 60:
                    errors = collections.Counter(
                        await Video.exclude(error_message=None).values_list(
                            "error_message", flat=True
                        )
                    )
                    for message, n in errors.most_common(5):
                        print(f"{n:>6}  {message[:200]}")
                    raise RuntimeError(f"only {completed} of {args.jobs} completed")
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited: see {scratch / 'worker.log'}")
                await asyncio.sleep(0.2)
            wall = time.monotonic() - started
            done.set()
            await sampler
            cpu = proc_cpu_seconds(worker.pid) - cpu_start
            media_cpu = children_cpu_seconds(worker.pid) - media_cpu_start
            loop_cpu = proc_cpu_seconds(worker.pid, thread=worker.pid) - loop_cpu_start
            sim_cpu = proc_cpu_seconds(procs[0].pid) - sim_cpu_start
            await asyncio.sleep(1.0)  # the counts file catches up
            counts = read_counts(counts_file)
            counts.subtract(counts_start)
            spans = await VideoAttempt.filter(video_id__in=ids).values_list(
                "started_at", "finished_at"
            )
            job_minutes = sum((end - start).total_seconds() for start, end in spans if end) / 60
            lags = sorted(
                (claimed - created).total_seconds()
                for created, claimed in await VideoAttempt.filter(video_id__in=ids).values_list(
                    "video__created_at", "started_at"
                )
            )
            async with httpx.AsyncClient() as client:
                sim = (await client.get(f"{sim_url}/stats")).json()
                task_log = (await client.get(f"{sim_url}/tasks")).json()
            rows = await VideoAttempt.filter(video_id__in=ids).values_list(
                "video__prompt", "video__created_at", "started_at", "finished_at"
            )
            phases = phase_breakdown(
                rows, task_log, start=started_wall, seconds=args.seconds, enqueued=enqueued
            )
            # From the first job's end at the provider to the last job's completion.
            ends = cores_used(cpu_samples, started + args.seconds, started + wall)
        finally:
            await runtime.close()
            await vdb.close()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with contextlib.suppress(Exception):
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()

    statements = sum(n for kind, n in counts.items() if kind != "(round trips)")
    per_job_minute = statements / job_minutes
    rss_kb = (peak["rss_at_peak"] - rss_idle) / max(1, peak["in_flight"])
    return {
        "name": "capacity",
        "seed": args.seed,
        "jobs": args.jobs,
        "seconds": args.seconds,
        "in_flight_cap": args.in_flight or args.jobs,
        "enqueue_seconds": round(enqueued, 2),
        "wall_seconds": round(wall, 2),
        "ideal_seconds": round(ideal, 2),
        "wall_ratio": round(wall / ideal, 3),
        "peak_in_flight": peak["in_flight"],
        "statements": statements,
        "round_trips": counts["(round trips)"],
        "job_minutes": round(job_minutes, 1),
        "statements_per_job_minute": round(per_job_minute, 3),
        "statements_by_kind": dict(
            (k, n) for k, n in counts.most_common(12) if k != "(round trips)"
        ),
        "rss_idle_kb": rss_idle,
        "rss_peak_kb": peak["rss_at_peak"],
        "rss_kb_per_job": round(rss_kb, 1),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_ms_per_job": round(cpu / args.jobs * 1e3, 2),
        "worker_loop_cpu_seconds": round(loop_cpu, 2),
        "media_processes_cpu_seconds": round(media_cpu, 2),
        "media_processes_rss_kb": peak.get("media_rss", 0),
        "simulator_cpu_seconds": round(sim_cpu, 2),
        "claim_lag_median": round(lags[len(lags) // 2], 2),
        "claim_lag_max": round(lags[-1], 2),
        "seen_late_median": round(sim["seen_late_median"], 2),
        "seen_late_max": round(sim["seen_late_max"], 2),
        "submissions": sim["submissions"],
        "submitted_twice": sim["twice"],
        "provider_polls_per_job": round(sim["polls"] / args.jobs, 2),
        "phases": phases,
        "cores_over_the_ends": ends,
    }


PHASES = ("enqueue", "claim", "submit", "late", "fetch", "store")


def phase_breakdown(
    rows: list[tuple[str, Any, Any, Any]],
    task_log: list[dict[str, Any]],
    *,
    start: float,
    seconds: float,
    enqueued: float,
) -> dict[str, Any]:
    """Where each job's time went, in seconds: ``enqueue`` (its enqueue, from the first),
    ``claim`` (enqueue → claimed), ``submit`` (claimed → the provider's task created),
    ``late`` (the task done → its first poll that saw it done), ``fetch`` (that poll → the
    output's download started), ``store`` (→ the completing write); ``before``: how long
    before the task's end its last poll that saw it running came (one closer than the
    provider's floor makes the next one late). A job's end less the
    ideal is ``enqueue - enqueued + claim + submit + late + fetch + store``; the excess of
    the run is that of the job that ended last. Percentiles over all jobs, and the phases of
    the last 20 jobs to end (median), which set the wall time."""
    by_prompt = {t["prompt"]: t for t in task_log}
    jobs = []
    for prompt, created, claimed, finished in rows:
        task = by_prompt.get(prompt)
        if task is None or finished is None or "seen" not in task:
            continue
        fetched = task.get("fetched", task["seen"])
        jobs.append(
            {
                "enqueue": created.timestamp() - start,
                "claim": (claimed - created).total_seconds(),
                "submit": task["created"] - claimed.timestamp(),
                "late": task["seen"] - task["created"] - seconds,
                "fetch": fetched - task["seen"],
                "store": finished.timestamp() - fetched,
                "before": task.get("before", 0.0),
                "end": finished.timestamp() - start,
                "polls": task.get("polls", 0),
            }
        )
    if not jobs:
        return {}

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    out: dict[str, Any] = {}
    for phase in (*PHASES, "before", "polls"):
        values = [j[phase] for j in jobs]
        out[phase] = {"p50": pct(values, 0.5), "p90": pct(values, 0.9), "max": pct(values, 1.0)}
    last = sorted(jobs, key=lambda j: j["end"])[-20:]
    out["last_20"] = {phase: pct([j[phase] for j in last], 0.5) for phase in (*PHASES, "end")}
    ideal = seconds + enqueued
    out["excess"] = round(max(j["end"] for j in jobs) - ideal, 2)
    # the ends' spread: how many jobs completed in the last 5 s and 10 s of the run
    end = max(j["end"] for j in jobs)
    out["ended_last_5s"] = sum(1 for j in jobs if j["end"] > end - 5)
    out["ended_last_10s"] = sum(1 for j in jobs if j["end"] > end - 10)
    return out


WORDS = (
    "fox snow lighthouse dusk river city night rain forest drone orbit desert neon"
    " harbor storm meadow glacier market train bridge"
).split()


def report(result: dict[str, Any]) -> None:
    checks = {
        "wall_ratio": result["wall_ratio"] <= TARGETS["wall_ratio"],
        "statements_per_job_minute": result["statements_per_job_minute"]
        <= TARGETS["statements_per_job_minute"],
        "rss_kb_per_job": result["rss_kb_per_job"] <= TARGETS["rss_kb_per_job"],
        "no_second_submit": result["submitted_twice"] == 0
        and result["submissions"] == result["jobs"],
    }
    print(f"seed {result['seed']}: {result['jobs']} remote jobs of {result['seconds']:g} s")
    print(
        f"wall {result['wall_seconds']:.1f} s against the ideal {result['ideal_seconds']:.1f} s"
        f" ({result['seconds']:g} s + {result['enqueue_seconds']:.1f} s of enqueues):"
        f" {result['wall_ratio']:.3f} (target <= 1.2)"
    )
    print(
        f"statements {result['statements']} ({result['round_trips']} round trips) over"
        f" {result['job_minutes']:.0f} in-flight job-minutes:"
        f" {result['statements_per_job_minute']:.3f} per job-minute (target <= 2)"
    )
    for kind, n in result["statements_by_kind"].items():
        print(f"    {n:>7}  {kind}")
    print(
        f"RSS {result['rss_idle_kb'] / 1024:.1f} MB idle, {result['rss_peak_kb'] / 1024:.1f} MB"
        f" with {result['peak_in_flight']} in flight: {result['rss_kb_per_job']:.1f} KB per job"
        " (target <= 50)"
    )
    print(
        f"from enqueue to claim: median {result['claim_lag_median']:.2f} s, worst"
        f" {result['claim_lag_max']:.2f} s; a finished prediction first seen: median"
        f" {result['seen_late_median']:.1f} s late, worst {result['seen_late_max']:.1f} s"
    )
    print(
        f"worker CPU {result['worker_cpu_seconds']:.1f} s ({result['worker_cpu_ms_per_job']:.1f}"
        f" ms per job, {result['worker_loop_cpu_seconds']:.1f} s on the event loop's thread;"
        f" its media processes {result['media_processes_cpu_seconds']:.1f} s more, RSS"
        f" {result['media_processes_rss_kb'] / 1024:.0f} MB;"
        f" the simulator's {result['simulator_cpu_seconds']:.1f} s);"
        f" provider polls per job {result['provider_polls_per_job']};"
        f" submissions {result['submissions']}, of a job twice: {result['submitted_twice']}"
    )
    phases = result.get("phases") or {}
    if phases:
        print(f"excess over the ideal {phases['excess']:.1f} s; per job (p50 / p90 / max, s):")
        for phase in (*PHASES, "before", "polls"):
            q = phases[phase]
            print(f"    {phase:<8} {q['p50']:>7.2f} {q['p90']:>7.2f} {q['max']:>7.2f}")
        print(
            "    the last 20 jobs to end (median): "
            + ", ".join(f"{k} {v:.2f}" for k, v in phases["last_20"].items())
        )
        print(
            f"    jobs ending in the run's last 5 s: {phases['ended_last_5s']},"
            f" last 10 s: {phases['ended_last_10s']}"
        )
    ends = result.get("cores_over_the_ends") or {}
    if ends:
        print(
            f"cores used over the ends ({ends['seconds']:.0f} s from the first job's end at the"
            f" provider): worker event loop {ends['worker_loop']:.2f}, worker's other threads"
            f" {ends['worker_threads']:.2f}, its media processes"
            f" {ends['worker_media_processes']:.2f}, simulator {ends['simulator']:.2f},"
            f" everything else {ends['rest']:.2f}, idle {ends['idle']:.2f}"
        )
    result["passed"] = all(checks.values())
    result["checks"] = checks
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="300 jobs of 20 s")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="cProfile the worker's event-loop thread (its CPU time) from the first job's"
        " completion to the end; write the stats to FILE and print the top functions",
    )
    parser.add_argument("--sort", default="tottime", help="the profile's order (pstats keys)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the worker process (repeatable), e.g."
        " VIDGEN_PROVIDER_MAX_CONNECTIONS=100",
    )
    parser.add_argument("--serve-simulator", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-process", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator is not None:
        serve_simulator(args.serve_simulator, args.seconds)
        return
    if args.worker_process is not None:
        run_worker_process(args.worker_process)
        return
    if args.quick:
        args.jobs, args.seconds = 300, 20.0
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    if args.profile:
        args.profile = os.path.abspath(args.profile)  # the worker runs in another directory
    report(asyncio.run(run(args)))
    if args.profile:
        stats = pstats.Stats(args.profile)
        stats.sort_stats(args.sort).print_stats(40)


if __name__ == "__main__":
    main()
