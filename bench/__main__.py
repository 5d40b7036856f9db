"""Run every benchmark and print one table: ``python -m bench [--quick] [--only api,engine]``.

Each benchmark runs as its own subprocess (a crash or a timeout in one shows up as a row
saying so, and the others still run); its figures are read from the JSON line it ends with
(``--json``) or, for benchmarks that only print text, from that text. Every figure in the
table is a ratio against a baseline measured in the same subprocess, seconds apart, on the
same machine: absolute numbers on a shared 2-core box move, ratios much less.

The table is Markdown, followed by the machine and the command, ready for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("VIDGEN_BENCH_PG_URL", "postgres://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VIDGEN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Bench:
    name: str
    module: str  # bench.<module>, run with -m
    args: list[str]
    quick_args: list[str]
    timeout: float  # seconds


BENCHES = (
    Bench("render", "render_bench", [], ["--frames", "48", "--repeat", "1"], 180),
    Bench("engine", "engine_bench", [], ["--jobs", "300", "--rounds", "1"], 240),
    Bench("capacity", "capacity_bench", [], ["--quick"], 600),
    Bench(
        "subscriptions",
        "subscriptions_bench",
        [],
        ["--quick", "--steady", "5", "--burst", "8"],
        300,
    ),
    Bench("api", "api_bench", ["--json"], ["--json", "--quick"], 300),
    Bench("film", "film_bench", ["--json"], ["--json", "--rounds", "1"], 600),
    Bench("ws_compression", "ws_compression_bench", ["--json"], ["--json", "--quick"], 120),
    Bench(
        "storage",
        "storage_bench",
        ["--clients"],
        ["--jobs", "5", "--rounds", "1", "--size-mb", "20"],
        600,
    ),
)


@dataclass
class Row:
    benchmark: str
    vidgen: str = "—"
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    result: str = "—"


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


_HELP: dict[str, str] = {}


def help_of(module: str) -> str:
    """``bench.<module> --help`` (cached): which flags it knows."""
    if module not in _HELP:
        try:
            done = subprocess.run(
                [sys.executable, "-m", f"bench.{module}", "--help"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            _HELP[module] = done.stdout
        except (OSError, subprocess.TimeoutExpired):
            _HELP[module] = ""
    return _HELP[module]


def usable_args(module: str, wanted: list[str]) -> list[str]:
    """``wanted`` without the flags (and their values) that the benchmark does not know:
    the benchmarks are written by different people and grow options at their own pace."""
    known = help_of(module)
    result, i = [], 0
    while i < len(wanted):
        flag = wanted[i]
        value = wanted[i + 1 : i + 2]
        if value and value[0].startswith("--"):
            value = []
        if re.search(re.escape(flag) + r"\b", known):
            result += [flag, *value]
        i += 1 + len(value)
    return result


# --- parsers: one per benchmark, each returns table rows and extra lines -----------------


def parse_render(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    rows = []
    pattern = re.compile(r"^(\w+)\s+(\d+x\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", re.M)
    for fmt_, size, ours, ffmpeg, ratio in pattern.findall(stdout):
        rows.append(
            Row(
                f"render {fmt_} {size} (frames/s; baseline FFmpeg encode-only)",
                fmt(float(ours)),
                fmt(float(ffmpeg)),
                f"{float(ratio):.2f}",
                "—",
                "reported",
            )
        )
    return rows, []


def parse_engine(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    if not (data and data.get("name") == "engine" and "vidgen" in data and "baseline" in data):
        return [], []
    ours, bare = float(data["vidgen"]), float(data["baseline"])
    ratio = float(data.get("ratio", ours / bare))  # its median round's
    target = float(data.get("target", 0.40))
    rounds = data.get("ratio_rounds") or []
    note = f" (rounds: {', '.join(f'{r:.2f}' for r in rounds)})" if len(rounds) > 1 else ""
    rows = [
        Row(
            "job engine, instant provider, output already stored"
            " (jobs/s; baseline asyncpg SKIP LOCKED loop)",
            fmt(ours),
            fmt(bare),
            f"{ratio:.2f}",
            f"≥ {target:.2f}",
            ("pass" if data.get("passed", ratio >= target) else "FAIL") + note,
        )
    ]
    # Context rows (no target), each from its own median round: the engine with its media
    # stage against the same loop doing the same media work and against the bare loop, the
    # media stage's own ceiling right after that, and the engine against the media alone.
    labels = {
        "bare_media": "job engine with its media stage (jobs/s; baseline the same loop doing"
        " the same media work)",
        "full": "job engine with its media stage (jobs/s; baseline the bare loop, no media)",
        "ceiling": "media stage alone (jobs/s; baseline the bare loop): the ceiling of the"
        " row above",
        "media_only": "job engine with its media stage (jobs/s; baseline the media stage"
        " alone, no database)",
    }
    context = data.get("context") or {}
    for name, label in labels.items():
        row = context.get(name)
        if isinstance(row, dict) and {"rate", "baseline", "ratio"} <= row.keys():
            rows.append(Row(label, fmt(row["rate"]), fmt(row["baseline"]), f"{row['ratio']:.2f}"))
    # The headline's pair at other concurrencies, and each side at its best one.
    level = data.get("concurrency", 8)
    for sweep_level, row in (data.get("sweep") or {}).items():
        if isinstance(row, dict) and {"rate", "baseline", "ratio"} <= row.keys():
            label = (
                "job engine, output already stored, both at concurrency"
                f" {sweep_level} (headline: {level}; jobs/s; baseline the bare loop)"
            )
            rows.append(Row(label, fmt(row["rate"]), fmt(row["baseline"]), f"{row['ratio']:.2f}"))
    peak = data.get("peak") or {}
    if {"rate", "baseline", "ratio"} <= peak.keys():
        label = (
            "job engine, output already stored, each side at its best concurrency"
            " (jobs/s; baseline the bare loop)"
        )
        rows.append(Row(label, fmt(peak["rate"]), fmt(peak["baseline"]), f"{peak['ratio']:.2f}"))
    return rows, []


def _find(data: Any, *names: str) -> Any:
    """The first value under any of ``names`` anywhere in a nested dict."""
    if isinstance(data, dict):
        for name in names:
            if name in data:
                return data[name]
        for value in data.values():
            found = _find(value, *names)
            if found is not None:
                return found
    return None


def parse_subscriptions(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    subs = 1000
    if data:
        subs = _find(data, "subscriptions", "subscribers") or subs
        rate = _find(data, "events_per_second", "deliveries_per_second", "delivered_per_second")
        base = _find(data, "baseline_per_second", "baseline_events_per_second", "baseline")
        p50 = _find(data, "p50_ms", "latency_p50_ms")
        p99 = _find(data, "p99_ms", "latency_p99_ms")
        rss = _find(data, "rss_mib", "memory_mib", "api_rss_mib", "rss_mb")
        target = _find(data, "target")
        if rate is not None:
            ratio = rate / base if isinstance(base, (int, float)) and base else None
            rows.append(
                Row(
                    f"subscriptions fan-out, {subs:,} subscribers (events delivered/s)",
                    fmt(rate),
                    fmt(base) if isinstance(base, (int, float)) else "—",
                    f"{ratio:.2f}" if ratio else "—",
                    f"≥ {target:.2f}" if isinstance(target, (int, float)) and ratio else "—",
                    ("pass" if ratio >= target else "FAIL")
                    if isinstance(target, (int, float)) and ratio
                    else "reported",
                )
            )
        if p50 is not None:
            rows.append(
                Row(
                    "subscriptions latency, commit → every subscriber (p50 / p99 ms)",
                    f"{fmt(p50)} / {fmt(p99)}",
                    result="reported",
                )
            )
        if rss is not None:
            rows.append(
                Row(
                    f"API memory with {subs:,} subscriptions (RSS MiB)", fmt(rss), result="reported"
                )
            )
        return rows, []
    # Text: the "metric  value" table of bench/subscriptions_bench.py.
    table = dict(
        (m.group(1).strip(), m.group(2).strip())
        for m in re.finditer(r"^(\S[^\n]*?)\s{2,}(\S[^\n]*)$", stdout, re.M)
    )
    count = re.match(r"(\d+)", table.get("subscriptions", ""))
    subs = int(count.group(1)) if count else subs
    for phase in ("steady", "burst"):
        delivered = re.match(r"([\d.]+) deliveries/s", table.get(f"{phase}: delivered", ""))
        events = re.search(r"\((\d+)/s\)", table.get(f"{phase}: events", ""))
        got = re.match(r"(\d+) of (\d+)", table.get(f"{phase}: deliveries", ""))
        latency = re.match(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", table.get(f"{phase}: latency", ""))
        if not delivered:
            continue
        offered = f", {events.group(1)} commits/s offered" if events else ""
        complete = got and got.group(1) == got.group(2)
        rows.append(
            Row(
                f"subscriptions, {subs:,} on one API process, {phase}{offered} "
                "(deliveries/s; p50 / p99 commit → receipt ms)",
                f"{float(delivered.group(1)):,.0f}; "
                + (f"{latency.group(1)} / {latency.group(2)}" if latency else "?"),
                result=(
                    "all delivered"
                    if complete
                    else f"{got.group(1)} of {got.group(2)} delivered"
                    if got
                    else "reported"
                ),
            )
        )
    rss = re.match(r"([\d.]+) MiB(.*)", table.get(f"API RSS, {subs} subs", ""))
    if rss:
        idle = table.get("API RSS idle", "?")
        rows.append(
            Row(
                f"API memory with {subs:,} subscriptions (RSS MiB; idle {idle})",
                rss.group(1) + (f" {rss.group(2).strip()}" if rss.group(2).strip() else ""),
                result="reported",
            )
        )
    return rows, []


def parse_api(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    if not data:
        return [], []
    rows = []
    labels = {
        "list": "list page `videos(first: 50)` + 5 relations (req/s; baseline Starlette+asyncpg)",
        "enqueue": "enqueue `generateVideo` (rows/s; baseline asyncpg INSERTs)",
    }
    labels["ids"] = "`videos(first: 50) { edges { node { id } } }` (req/s; baseline asyncpg)"
    labels["viewer"] = "`{ viewer { id } }` (req/s; baseline: the token check alone)"
    for key in ("list", "enqueue", "ids", "viewer"):
        c = data.get(key)
        if not c:
            continue
        rows.append(
            Row(
                labels[key],
                fmt(c["vidgen"]),
                fmt(c["baseline"]),
                f"{c['ratio']:.2f}",
                f"≥ {c['target']:.2f}",
                "pass" if c["passed"] else "FAIL",
            )
        )
    d = data.get("documents")
    if d:
        rows.append(
            Row(
                f"{len(d['results'])} random list documents (seed {d['seed']}): median / worst",
                ratio=f"{d['median']:.2f} / {d['worst']:.2f}",
                target="≥ 0.50 / ≥ 0.33",
                result="pass" if d["passed"] else "FAIL",
            )
        )
    s = data.get("statements")
    if s:
        counts = f"{s['list_first_10']} / {s['list_first_50']} / {s['list_first_100']}"
        rows.append(
            Row(
                "SQL statements per list request, first 10 / 50 / 100",
                counts,
                "2 (bare, first 50)",
                target="constant",
                result="pass" if s["constant"] else "FAIL",
            )
        )
        rows.append(Row("SQL statements per `generateVideo`", str(s["enqueue"]), result="reported"))
    notes = []
    if "list" in data:
        cpu = [r["server_cpu"] for r in data["list"]["rounds"] if r["target"] == "vidgen"]
        notes.append(
            f"api: {data['connections']} keep-alive connections, best of {data['rounds']} "
            f"rounds of {data['duration_s']:g}s after {data['warmup_s']:g}s warm-up; bus "
            f"{data['bus']}; vidgen server CPU during list rounds: "
            + ", ".join(f"{c:.2f}" for c in cpu)
            + " cores"
        )
    return rows, notes


def parse_storage(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    if not (data and data.get("name") == "storage"):
        return [], []
    rows = []
    ingest = data.get("ingest") or {}
    if {"s3", "file", "ratio"} <= ingest.keys():
        rounds = ingest.get("ratio_rounds") or []
        note = f" (rounds: {', '.join(f'{r:.2f}' for r in rounds)})" if len(rounds) > 1 else ""
        rows.append(
            Row(
                f"store a finished output ({ingest['output_bytes'] / 2**20:.1f} MiB: download,"
                " probe + thumbnail, store) through S3 (outputs/s; baseline the local folder)",
                fmt(ingest["s3"], 2),
                fmt(ingest["file"], 2),
                f"{ingest['ratio']:.2f}",
                result="reported" + note,
            )
        )
    size = data.get("size_mb", 50)
    for row in data.get("throughput") or []:
        name = row.get("client", "?")
        label = "vidgen's S3 backend" if name == "vidgen" else f"{name} alone"
        if "error" in row:
            rows.append(Row(f"{size} MB through {label}", result=f"failed: {row['error'][:200]}"))
            continue
        rows.append(
            Row(
                f"{size} MB through {label} (upload / download MB/s; RSS with the client up /"
                " peak MiB)",
                f"{row['up_bytes_per_s'] / 1e6:.0f} / {row['down_bytes_per_s'] / 1e6:.0f}; "
                f"{row['setup_rss_mib']:.0f} / {row['peak_rss_mib']:.0f}",
                result="reported",
            )
        )
    return rows, []


def parse_film(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    if not (data and data.get("name") == "film"):
        return [], []
    rows = []
    labels = {
        "cut": "stitch a {n}-clip 1280x720 film, mixed sizes and rates, cut (s; baseline PyAV"
        " re-encoding the same frames alone)",
        "captions+crossfade": "the same film with captions and crossfades (s; same baseline)",
    }
    for key, label in labels.items():
        row = data.get(key)
        if isinstance(row, dict) and {"stitch_s", "baseline_s", "ratio"} <= row.keys():
            rows.append(
                Row(
                    label.format(n=data.get("clips", 10)),
                    fmt(row["stitch_s"], 2),
                    fmt(row["baseline_s"], 2),
                    f"{row['ratio']:.2f}",
                    result=f"reported (worst round {row.get('worst', row['ratio']):.2f})",
                )
            )
    rss = data.get("rss_mib") or {}
    if {"floor", "clips", "double"} <= rss.keys():
        rows.append(
            Row(
                "stitcher peak RSS, {n} clips / the same twice (MiB; baseline the process's"
                " imports alone)".format(n=data.get("clips", 10)),
                f"{rss['clips']:.0f} / {rss['double']:.0f}",
                f"{rss['floor']:.0f}",
                result="reported",
            )
        )
    return rows, [f"film: seed {data.get('seed')}"]


def parse_ws_compression(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    if not (data and data.get("name") == "ws_compression"):
        return [], []
    return [
        Row(
            f"permessage-deflate, CPU per delivery (us; baseline plain framing; seed "
            f"{data['seed']}, worst round x{data['cpu_ratio_worst']:.1f})",
            fmt(data["deflate_us"], 2),
            fmt(data["plain_us"], 2),
            f"{data['cpu_ratio']:.1f}",
            "decides the default",
            "off by default",
        ),
        Row(
            "permessage-deflate, bytes per delivery (baseline plain); zlib KiB per socket",
            f"{data['bytes_deflate']:.0f}; {data['kib_per_socket']:.1f}",
            f"{data['bytes_plain']:.0f}",
            f"{data['bytes_ratio']:.2f}",
            "—",
            "reported",
        ),
    ], []


def parse_capacity(stdout: str, data: dict[str, Any] | None) -> tuple[list[Row], list[str]]:
    if not (data and data.get("name") == "capacity"):
        return [], []
    checks = data.get("checks") or {}
    jobs, seconds = data["jobs"], data["seconds"]

    def verdict(name: str) -> str:
        return "pass" if checks.get(name) else "FAIL"

    rows = [
        Row(
            f"{jobs:,} remote jobs of {seconds:g} s on one worker: wall (s; baseline the ideal,"
            f" {seconds:g} s + the enqueues; seed {data['seed']})",
            fmt(data["wall_seconds"]),
            fmt(data["ideal_seconds"]),
            f"{data['wall_ratio']:.2f}",
            "≤ 1.20",
            verdict("wall_ratio"),
        ),
        Row(
            "the same: worker statements per in-flight job-minute (baseline: job-minutes)",
            fmt(data["statements"], 0),
            fmt(data["job_minutes"]),
            f"{data['statements_per_job_minute']:.2f}",
            "≤ 2",
            verdict("statements_per_job_minute"),
        ),
        Row(
            "the same: worker RSS per in-flight job (KB; baseline the idle worker's MB)",
            fmt(data["rss_kb_per_job"]),
            fmt(data["rss_idle_kb"] / 1024),
            "—",
            "≤ 50 KB",
            verdict("rss_kb_per_job"),
        ),
        Row(
            "the same: worker CPU ms per job; jobs submitted twice",
            fmt(data["worker_cpu_ms_per_job"]),
            str(data["submitted_twice"]),
            "—",
            "0 twice",
            verdict("no_second_submit"),
        ),
    ]
    return rows, []


PARSERS = {
    "ws_compression": parse_ws_compression,
    "render": parse_render,
    "engine": parse_engine,
    "subscriptions": parse_subscriptions,
    "api": parse_api,
    "capacity": parse_capacity,
    "storage": parse_storage,
    "film": parse_film,
}


def run_bench(bench: Bench, quick: bool) -> tuple[list[Row], list[str], str]:
    script = ROOT / "bench" / f"{bench.module}.py"
    if not script.exists():
        return [Row(f"{bench.name}", result="missing (no bench/" + script.name + ")")], [], ""
    args = usable_args(bench.module, bench.quick_args if quick else bench.args)
    if "--json" not in args and "--json" in help_of(bench.module):
        args.append("--json")
    command = [sys.executable, "-m", f"bench.{bench.module}", *args]
    started = time.perf_counter()
    print(f"[bench] {bench.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=bench.timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        rows, notes = _parse(bench, out)
        return rows or [Row(bench.name, result=f"timeout after {bench.timeout:.0f}s")], notes, out
    elapsed = time.perf_counter() - started
    print(
        f"[bench] {bench.name}: exit {done.returncode} in {elapsed:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    rows, notes = _parse(bench, done.stdout)
    if not rows:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        detail = " | ".join(tail)[:300]
        failed = Row(bench.name, result=f"failed (exit {done.returncode}): {detail}")
        return [failed], [], done.stdout
    if done.returncode != 0 and bench.name != "api":
        notes.append(f"{bench.name} exited with {done.returncode}")
    return rows, notes, done.stdout


def _parse(bench: Bench, stdout: str) -> tuple[list[Row], list[str]]:
    try:
        return PARSERS[bench.name](stdout, last_json(stdout))
    except Exception as exc:  # noqa: BLE001 - one bad parse must not sink the table
        return [Row(bench.name, result=f"unparsed output ({type(exc).__name__}: {exc})")], []


# --- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    info = {"python": platform.python_version(), "cores": str(os.cpu_count())}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor() or "unknown"
    info["postgresql"] = _postgres_version()
    info["redis"] = _redis_version()
    info["os"] = f"{platform.system()} {platform.release()}"
    return info


def _postgres_version() -> str:
    try:
        import asyncio

        import asyncpg

        async def version() -> str:
            conn = await asyncpg.connect(PG_URL, timeout=5)
            try:
                return await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()

        return asyncio.run(version())
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})"


def _redis_version() -> str:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})"


def render_table(rows: list[Row]) -> str:
    header = ("benchmark", "vidgen", "baseline", "ratio", "target", "result")
    align = ["---", "--:", "--:", "--:", "--:", "---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for r in rows:
        lines.append(
            f"| {r.benchmark} | {r.vidgen} | {r.baseline} | {r.ratio} | {r.target} | {r.result} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute)")
    parser.add_argument(
        "--only", help="comma-separated subset: " + ",".join(b.name for b in BENCHES)
    )
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    for bench in chosen:
        bench_rows, bench_notes, _ = run_bench(bench, args.quick)
        rows += bench_rows
        notes += bench_notes
    elapsed = time.perf_counter() - started
    info = machine()
    command = "python -m bench" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    print(render_table(rows))
    print()
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, "
        f"PostgreSQL {info['postgresql']}, Redis {info['redis']}."
    )
    print(f"Command: `{command}` ({elapsed:.0f}s, {time.strftime('%Y-%m-%d')}).")
    for note in notes:
        print(f"- {note}")
    if args.json:
        print(json.dumps({"rows": [r.__dict__ for r in rows], "machine": info, "notes": notes}))
    return 1 if any(r.result.startswith(("FAIL", "failed", "timeout")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
