"""Live status at scale: 1,000 subscriptions on ONE API process (uvicorn, Redis bus, PostgreSQL).

What runs:

- a private ``redis-server`` on a free port and a fresh PostgreSQL database (dropped after);
- one API process, ``python -m vidgen.cli serve --no-worker``, on the Redis bus;
- one client process holding ``--sockets`` WebSockets (graphql-transport-ws), each carrying
  ``--per-socket`` ``videoUpdated`` subscriptions (default 100 x 10 = 1,000; the per-socket
  limit is 100), spread evenly over ``--videos`` videos;
- this process as "the worker": it commits status changes through the video lifecycle
  (queued -> processing -> progress ticks -> completed) at ``--rate`` events per second,
  notes the wall-clock time right after each commit, then publishes the event on Redis.

Latency is commit -> receipt of the ``next`` message at every subscriber (both times from
the same machine's wall clock). Throughput is deliveries (event x subscriber) per second
over the driving window. RSS is the API process's resident memory (``/proc``).

Run: ``.venv/bin/python bench/subscriptions_bench.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

PG_ADMIN_URL = os.environ.get("VIDGEN_TEST_PG_URL", "postgres://root@127.0.0.1:5432/test")

WATCH = """
subscription W($id: ID!) { videoUpdated(id: $id) { id status version progress updatedAt } }
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_url(name: str) -> str:
    return f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (``serve --workers N``: the supervisor and N APIs)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
    return pids


def api_rss_mb(pid: int) -> tuple[float, float]:
    """RSS (current, peak) summed over the API's processes."""
    now = peak = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError, KeyError):
            a, b = rss_mb(member)
            now, peak = now + a, peak + b
    return now, peak


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- the client process ------------------------------------------------------------------------


def client_main(args: dict[str, Any], conn: Any) -> None:
    """Open the sockets and subscriptions; report ready; record every receipt; send them."""
    if args.get("client") == "websockets":
        asyncio.run(_clients(args, conn))
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a vidgen dependency
        asyncio.run(_raw_clients(args, conn))
    else:
        uvloop.run(_raw_clients(args, conn))


class _Tally:
    """What every client socket of a process adds to (one client process)."""

    def __init__(self, total: int) -> None:
        self.receipts: list[tuple[str, int, float, int]] = []  # (video, version, time, sub)
        self.out_of_order = 0
        self.ready = 0
        self.done = 0
        self.total = total
        self.all_ready = asyncio.Event()
        self.all_done = asyncio.Event()


class _RawSocket(asyncio.Protocol):
    """One graphql-transport-ws client on a plain TCP socket: the WebSocket handshake, then
    a frame parser for what a server sends (unmasked, unfragmented: uvicorn never fragments;
    anything else fails the run), masked frames out, pongs to the server's pings. Every
    ``next`` is decoded and checked exactly as the ``websockets`` client's loop does."""

    def __init__(self, tally: _Tally, base: int, per_socket: int) -> None:
        self.tally = tally
        self.base = base  # this socket's first subscription number
        self.per_socket = per_socket
        self.buffer = bytearray()
        self.opened = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.first: asyncio.Future[dict] = loop.create_future()  # the connection_ack
        self.finished: asyncio.Future[None] = loop.create_future()
        self.seen_first: set[str] = set()
        self.last: dict[str, int] = {}  # subscription id -> last version received
        self.completed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.handshake, self.first, self.finished):
            if not future.done():
                future.set_exception(ConnectionError(f"socket closed: {exc}"))

    def send(self, message: dict) -> None:
        """One masked text frame (RFC 6455 5.3: every client frame is masked)."""
        data = json.dumps(message).encode()
        key = os.urandom(4)
        n = len(data)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        self.transport.write(head + key + _masked(data, key))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.opened:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.handshake.set_exception(RuntimeError(bytes(buffer[:200]).decode("latin-1")))
                return
            del buffer[: end + 4]
            self.opened = True
            self.handshake.set_result(None)
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            if second & 0x80 or not first & 0x80:
                self._fail(RuntimeError("a masked or fragmented frame from the server"))
                self.transport.close()  # type: ignore[union-attr]
                return
            payload = bytes(buffer[pos + head : end])
            pos = end
            opcode = first & 0x0F
            if opcode == 1:
                self.on_message(payload)
            elif opcode == 9:  # ping: the pong carries its payload back
                key = os.urandom(4)
                frame = bytes((0x8A, 0x80 | len(payload))) + key + _masked(payload, key)
                self.transport.write(frame)  # type: ignore[union-attr]
            elif opcode == 8:
                self.transport.close()  # type: ignore[union-attr]
                break
        del buffer[:pos]

    def on_message(self, raw: bytes) -> None:
        now = time.time()
        message = orjson.loads(raw)
        kind = message["type"]
        tally = self.tally
        if kind == "next":
            data = message["payload"].get("data")
            if not data:
                self._fail(RuntimeError(f"subscription error: {message}"))
                return
            video = data["videoUpdated"]
            op_id = message["id"]
            if video["version"] <= self.last.get(op_id, 0):
                tally.out_of_order += 1
            self.last[op_id] = video["version"]
            if op_id not in self.seen_first:  # the initial state, not an event
                self.seen_first.add(op_id)
                tally.ready += 1
                if tally.ready == tally.total:
                    tally.all_ready.set()
                return
            tally.receipts.append((video["id"], video["version"], now, self.base + int(op_id)))
        elif kind == "complete":
            self.completed += 1
            tally.done += 1
            if tally.done == tally.total:
                tally.all_done.set()
            if self.completed == self.per_socket and not self.finished.done():
                self.finished.set_result(None)
        elif kind == "error":
            self._fail(RuntimeError(f"subscription error: {message}"))
        elif not self.first.done():
            self.first.set_result(message)

    def _fail(self, exc: Exception) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)


def _masked(data: bytes, key: bytes) -> bytes:
    n = len(data)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ mask).to_bytes(n, "big")


async def _raw_clients(args: dict[str, Any], conn: Any) -> None:
    """The sockets of ``_clients`` on :class:`_RawSocket`: the same checks, a fraction of
    the client CPU (the load generator should leave the cores to the server)."""
    total = args["sockets"] * args["per_socket"]
    tally = _Tally(total)
    host, port = args["ws_url"].split("/")[2].split(":")
    loop = asyncio.get_running_loop()

    async def one_socket(index: int) -> None:
        per_socket = args["per_socket"]
        transport, proto = await loop.create_connection(
            lambda: _RawSocket(tally, index * per_socket, per_socket), host, int(port)
        )
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            transport.write(
                (
                    f"GET /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws"
                    "\r\n\r\n"
                ).encode()
            )
            await proto.handshake
            proto.send(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {args['token']}"},
                }
            )
            assert (await proto.first)["type"] == "connection_ack"
            for k in range(per_socket):
                n = index * per_socket + k
                video = args["videos"][n % len(args["videos"])]
                payload = {"query": WATCH, "variables": {"id": video}}
                proto.send({"id": str(k), "type": "subscribe", "payload": payload})
            await proto.finished
        finally:
            transport.close()

    first = args.get("first_socket", 0)
    tasks = [asyncio.create_task(one_socket(i)) for i in range(first, first + args["sockets"])]
    try:
        async with asyncio.timeout(120):
            await tally.all_ready.wait()
        conn.send(("ready", total))
        async with asyncio.timeout(args["timeout"]):
            await tally.all_done.wait()
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("receipts", tally.receipts, tally.done, tally.out_of_order))


async def _clients(args: dict[str, Any], conn: Any) -> None:
    from websockets.asyncio.client import connect

    receipts: list[tuple[str, int, float, int]] = []  # (video, version, time, subscription)
    out_of_order = 0
    ready = 0
    done = 0
    total = args["sockets"] * args["per_socket"]
    all_ready = asyncio.Event()
    all_done = asyncio.Event()

    async def one_socket(index: int) -> None:
        nonlocal ready, done, out_of_order
        async with connect(
            args["ws_url"], subprotocols=["graphql-transport-ws"], open_timeout=60, max_queue=None
        ) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {args['token']}"},
                    }
                )
            )
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            for k in range(args["per_socket"]):
                n = index * args["per_socket"] + k
                video = args["videos"][n % len(args["videos"])]
                payload = {"query": WATCH, "variables": {"id": video}}
                await ws.send(json.dumps({"id": str(k), "type": "subscribe", "payload": payload}))
            seen_first: set[str] = set()
            last: dict[str, int] = {}  # subscription id -> last version received
            completed = 0
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                kind = message["type"]
                if kind == "next":
                    data = message["payload"].get("data")
                    if not data:
                        raise RuntimeError(f"subscription error: {message}")
                    video = data["videoUpdated"]
                    if video["version"] <= last.get(message["id"], 0):
                        out_of_order += 1
                    last[message["id"]] = video["version"]
                    if message["id"] not in seen_first:  # the initial state, not an event
                        seen_first.add(message["id"])
                        ready += 1
                        if ready == total:
                            all_ready.set()
                        continue
                    sub = index * args["per_socket"] + int(message["id"])
                    receipts.append((video["id"], video["version"], now, sub))
                elif kind == "complete":
                    completed += 1
                    done += 1
                    if done == total:
                        all_done.set()
                    if completed == args["per_socket"]:
                        return
                elif kind == "error":
                    raise RuntimeError(f"subscription error: {message}")

    first = args.get("first_socket", 0)
    tasks = [asyncio.create_task(one_socket(i)) for i in range(first, first + args["sockets"])]
    try:
        await asyncio.wait_for(all_ready.wait(), 120)
        conn.send(("ready", total))
        await asyncio.wait_for(all_done.wait(), args["timeout"])
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("receipts", receipts, done, out_of_order))


# --- the servers -------------------------------------------------------------------------------


class RedisProcess:
    """The bench's own ``redis-server`` on a free port (never the shared one on 6379), which
    ``--redis-restart`` kills and starts again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.start()

    def start(self) -> None:
        workdir = self.workdir
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start_api(
    env: dict[str, str], port: int, log: Path, processes: int = 1
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "vidgen.cli", "serve", "--no-worker", "--port", str(port)]
    if processes > 1:
        command += ["--workers", str(processes)]
    profile = os.environ.get("BENCH_PROFILE")  # a file: profile the API with pyinstrument
    if profile:
        command[1:3] = [
            "-m",
            "pyinstrument",
            *os.environ.get("BENCH_PROFILE_ARGS", "").split(),
            "-r",
            "text",
            "-o",
            profile,
            "-m",
            "vidgen.cli",
        ]
    return subprocess.Popen(
        command,
        env=env,
        cwd=log.parent,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def api_reconnects(url: str) -> str:
    """The API's ``vidgen_bus_reconnects_total`` (from GET /metrics)."""
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient(timeout=5) as http:
            for line in (await http.get(f"{url}/metrics")).text.splitlines():
                if line.startswith("vidgen_bus_reconnects_total"):
                    return line.split()[-1]
    return "unknown"


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=1) as http:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"API exited; see {log}")
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("API not ready")


# --- the driver --------------------------------------------------------------------------------


def schedule(
    video_ids: list[int], steady: int, burst: int, rng: random.Random
) -> list[tuple[int, str, float, str]]:
    """Every video once per step, in an order drawn from ``rng`` each step: processing and
    progress ticks (the steady phase), more ticks and completed (the burst phase). Items:
    (video, kind, progress, phase)."""
    plan = []
    total = steady + burst
    for step in range(total):
        phase = "steady" if step < steady else "burst"
        order = list(video_ids)
        rng.shuffle(order)
        for video_id in order:
            if step == 0:
                plan.append((video_id, "processing", 0.0, phase))
            elif step == total - 1:
                plan.append((video_id, "completed", 1.0, phase))
            else:
                plan.append((video_id, "progress", step / total, phase))
    return plan


DOWN = asyncio.Event()  # set while the bench's Redis is down
DROP_WHILE_DOWN = False  # --drop-outage: commit() does not publish while DOWN is set


async def restart_redis(redis: RedisProcess, after: float, down: float, into: dict) -> None:
    """Kill the bench's redis-server ``after`` seconds into the steady phase, keep it down
    for ``down`` seconds, start it again on the same port (empty: no saved state)."""
    await asyncio.sleep(after)
    into["killed"] = time.time()
    DOWN.set()
    await asyncio.to_thread(redis.stop)
    await asyncio.sleep(down)
    await asyncio.to_thread(redis.start)
    DOWN.clear()
    into["started"] = time.time()


async def drive(
    plan, bus, rate: float, writers: int = 1, restart: Any = None
) -> dict[tuple[int, int], tuple[float, str]]:
    """Commit each change, note the time, publish. Steady items are paced at ``rate``;
    burst items go as fast as the database allows, from ``writers`` committers at once
    (each with its own share of the videos, so each video's changes stay in order).
    ``restart``: a coroutine run beside the steady phase (the Redis restart), awaited
    before the burst."""
    commits: dict[tuple[int, int], tuple[float, str]] = {}
    loop = asyncio.get_running_loop()
    start = loop.time()
    steady = [item for item in plan if item[3] == "steady"]
    restarting = asyncio.create_task(restart) if restart is not None else None
    for n, item in enumerate(steady):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await commit(item, bus, commits)
    if restarting is not None:
        await restarting
    burst = [item for item in plan if item[3] != "steady"]
    shares = [[item for item in burst if item[0] % writers == w] for w in range(writers)]

    async def write(share: list) -> None:
        for item in share:
            await commit(item, bus, commits)

    await asyncio.gather(*(write(share) for share in shares))
    return commits


async def commit(item, bus, commits: dict[tuple[int, int], tuple[float, str]]) -> None:
    from vidgen.jobs import lifecycle
    from vidgen.models import VideoStatus

    video_id, kind, progress, phase = item
    if kind == "progress":
        event = await lifecycle.touch(video_id, fields={"progress": progress}, bus=None)
    else:
        _, change = await lifecycle.transition(video_id, VideoStatus(kind), actor="bench", bus=None)
        event = change.event
    commits[(video_id, event.version)] = (time.time(), phase)  # committed: clock starts
    if DROP_WHILE_DOWN and DOWN.is_set():
        return  # a publish lost outright: only the subscribers' RESYNC can bring it
    await lifecycle.publish(bus, [event])


def restart_rows(commits, receipts, by_video, logged, outage, total: int) -> list:
    """What a Redis restart cost, per subscription. A change with a history row (status
    changes here) must reach every subscription, in order; a progress tick has none, so a
    tick published while the bus was away reaches nobody and the RESYNC's current state
    (newer, with the latest progress) stands for it. A missing tick is "represented" when it
    was committed between 1 s before the kill and that subscription's first delivery after
    the restart; any other missing version is lost."""
    if "started" not in outage:
        return [("redis restart", "did not happen (steady phase too short?)")]
    killed, started = outage["killed"], outage["started"]
    versions: dict[int, list[int]] = {}
    for video_id, version in commits:
        versions.setdefault(video_id, []).append(version)
    got: dict[int, list[tuple[int, float]]] = {}
    video_of: dict[int, int] = {}
    for gid, version, at, sub in receipts:
        got.setdefault(sub, []).append((version, at))
        video_of[sub] = by_video[gid]
    logged_expected = logged_missing = ticks_represented = lost = ended_final = 0
    first_after = []
    for sub in range(total):
        video_id = video_of.get(sub)
        if video_id is None:
            lost += 1
            continue
        mine = got[sub]
        seen = {version for version, _ in mine}
        after = [at for _, at in mine if at >= started]
        resumed = min(after) if after else float("inf")
        if after:
            first_after.append(resumed - started)
        if max(seen) == max(versions[video_id]):
            ended_final += 1
        for version in versions[video_id]:
            is_logged = version in logged.get(video_id, ())
            logged_expected += is_logged
            if version in seen:
                continue
            if is_logged:
                logged_missing += 1
            elif killed - 1.0 <= commits[(video_id, version)][0] <= resumed:
                ticks_represented += 1
            else:
                lost += 1
    first_after.sort()
    during = sum(
        1
        for (video_id, version), (at, _) in commits.items()
        if killed <= at <= started and version in logged.get(video_id, ())
    )
    return [
        (
            "redis restart",
            f"killed {killed - min(c for c, _ in commits.values()):.1f} s into the steady phase, "
            f"down {started - killed:.1f} s; first delivery after it at +"
            f"{first_after[0] if first_after else float('nan'):.1f} s, last subscription's "
            f"first at +{first_after[-1] if first_after else float('nan'):.1f} s",
        ),
        (
            "restart: logged versions",
            f"{logged_expected - logged_missing} of {logged_expected} delivered "
            "(every status change with a history row, per subscription); "
            f"{during} of these changes committed while Redis was down",
        ),
        (
            "restart: progress ticks",
            f"{ticks_represented} (subscription x tick) not delivered, each committed around "
            "the outage and superseded by the RESYNC's current state; "
            f"{lost} other versions lost (0 = nothing lost)",
        ),
        ("restart: final state", f"{ended_final}/{total} subscriptions got the final version"),
    ]


def phase_rows(name: str, plan, commits, receipts, by_video, per_video: int) -> list:
    items = [p for p in plan if p[3] == name]
    mine = []
    for gid, version, at, _sub in receipts:
        committed, phase = commits[(by_video[gid], version)]
        if phase == name:
            mine.append((committed, at))
    if not mine:
        return [(f"{name}: deliveries", "none")]
    latencies = [(at - committed) * 1000 for committed, at in mine]
    first_commit = min(c for c, _ in mine)
    last_commit = max(c for c, _ in mine)
    last_receipt = max(at for _, at in mine)
    window = last_receipt - first_commit
    possible = len(items) * per_video / max(last_commit - first_commit, 1e-9)
    bound = (
        "the driver's"
        if possible < 1.25 * len(mine) / window
        else "the server's (offered well above it)"
    )
    return [
        (
            f"{name}: events",
            f"{len(items)} commits in {last_commit - first_commit:.1f} s "
            f"({len(items) / max(last_commit - first_commit, 1e-9):.0f}/s offered), "
            f"each to {per_video} subscribers: at most "
            f"{len(items) * per_video / max(last_commit - first_commit, 1e-9):,.0f} deliveries/s "
            "possible",
        ),
        (f"{name}: deliveries", f"{len(mine)} of {len(items) * per_video} expected"),
        (
            f"{name}: latency",
            f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
            f"max {max(latencies):.1f} ms (commit -> receipt)",
        ),
        (
            f"{name}: delivered",
            f"{len(mine) / window:.0f} deliveries/s = {len(items) / window:.1f} events/s "
            f"x {per_video} subscribers (first commit -> last receipt {window:.1f} s)"
            + (f"; this rate is {bound}" if name == "burst" else ""),
        ),
    ]


async def sample_cpu(
    client_pids: list[int], api_pids: list[int], into: list[tuple[float, float, float, float]]
) -> None:
    """Every 0.25 s: (wall clock, CPU seconds of the clients, of the API, of this driver)."""
    while True:
        into.append((time.time(), cpu_seconds(client_pids), cpu_seconds(api_pids), process_cpu()))
        await asyncio.sleep(0.25)


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def burst_cpu_row(plan, commits, receipts, by_video, samples, clients: int) -> tuple[str, str]:
    """The cores each side used from the burst's first commit to its last receipt."""
    burst = [
        at for gid, version, at, _ in receipts if commits[(by_video[gid], version)][1] == "burst"
    ]
    starts = [c for c, phase in commits.values() if phase == "burst"]
    if not burst or not starts or len(samples) < 2:
        return ("CPU during the burst", "not measured")
    first, last = min(starts), max(burst)
    inside = [s for s in samples if first - 0.25 <= s[0] <= last + 0.25]
    if len(inside) < 2:
        return ("CPU during the burst", "too short to measure")
    span = inside[-1][0] - inside[0][0]
    share = [(inside[-1][i] - inside[0][i]) / span for i in (1, 2, 3)]
    per_delivery = [(inside[-1][i] - inside[0][i]) / len(burst) * 1e6 for i in (1, 2)]
    return (
        "CPU during the burst",
        f"clients ({clients} processes) {share[0]:.2f} cores, API {share[1]:.2f}, driver "
        f"{share[2]:.2f} (commits and publishes), of {os.cpu_count()}; {span:.1f} s sampled; "
        f"per delivery: API {per_delivery[1]:.0f} µs, clients {per_delivery[0]:.0f} µs",
    )


async def run(args: argparse.Namespace) -> None:
    from vidgen import db, models
    from vidgen.events.redis import RedisBus
    from vidgen.jobs import lifecycle
    from vidgen.services import users
    from vidgen.settings import Settings

    total = args.sockets * args.per_socket
    workdir = Path(tempfile.mkdtemp(prefix="vidgen-bench-"))
    redis = RedisProcess(workdir)
    name = f"vg_bench_{uuid.uuid4().hex[:8]}"
    await admin(f"CREATE DATABASE {name}")
    api = None
    clients: list[Any] = []
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    try:
        url = pg_url(name)
        settings = Settings(
            _env_file=None,
            database_url=url,
            redis_url=redis.url,
            secret_key="bench-secret",
            data_dir=workdir / "data",
        )
        await db.migrate_database(url, settings)
        await db.init(settings)
        user = await users.create_user(email="bench@example.com", password="password123")
        token, _ = await users.issue_token(user=user, name="bench")
        video_ids = []
        for i in range(args.videos):
            video = await models.Video.create(
                owner_id=user.id, prompt=f"bench {i}", provider="local", resolution="512x512"
            )
            await lifecycle.record_created(video, actor="bench")
            video_ids.append(video.id)

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
        env.update(
            VIDGEN_DATABASE_URL=url,
            VIDGEN_REDIS_URL=redis.url,
            VIDGEN_SECRET_KEY="bench-secret",
            VIDGEN_DATA_DIR=str(workdir / "data"),
            VIDGEN_LOG_LEVEL="WARNING",
            VIDGEN_GRAPHIQL="false",
            VIDGEN_PUBLIC_URL=f"http://127.0.0.1:{port}",
        )
        log = workdir / "api.log"
        api = start_api(env, port, log, args.api_processes)
        await wait_ready(f"http://127.0.0.1:{port}", api, log)
        await asyncio.sleep(1 if args.api_processes > 1 else 0)  # every process up
        rss_idle, _ = api_rss_mb(api.pid)

        gids = [base64.b64encode(f"Video:{v}".encode()).decode() for v in video_ids]
        pipes = []
        share = -(-args.sockets // args.clients)
        for first in range(0, args.sockets, share):
            parent, child = mp.get_context("spawn").Pipe()
            process = mp.get_context("spawn").Process(
                target=client_main,
                args=(
                    {
                        "ws_url": f"ws://127.0.0.1:{port}/graphql",
                        "token": token,
                        "videos": gids,
                        "first_socket": first,
                        "sockets": min(share, args.sockets - first),
                        "per_socket": args.per_socket,
                        "timeout": args.timeout,
                        "client": args.client,
                    },
                    child,
                ),
            )
            pipes.append((parent, process))
        clients = [process for _, process in pipes]
        subscribed_at = time.monotonic()
        for process in clients:
            process.start()
        for parent, _ in pipes:
            kind, _count = await asyncio.to_thread(parent.recv)
            assert kind == "ready"
        subscribe_seconds = time.monotonic() - subscribed_at
        await asyncio.sleep(1)  # let the server settle before measuring memory
        rss_subscribed, _ = api_rss_mb(api.pid)

        bus = RedisBus(redis.url)
        await bus.start()
        plan = schedule(video_ids, args.steady, args.burst, rng)
        client_pids = [p.pid for p in clients if p.pid is not None]
        api_pids = family(api.pid)
        cpu_before = (cpu_seconds(client_pids), cpu_seconds(api_pids), time.monotonic())
        samples: list[tuple[float, float, float, float]] = []
        sampler = asyncio.create_task(sample_cpu(client_pids, api_pids, samples))
        outage: dict[str, float] = {}
        restart = None
        if args.redis_restart:
            # halfway through the steady phase unless --restart-at says when
            steady_seconds = args.steady * args.videos / args.rate
            at = args.restart_at if args.restart_at is not None else steady_seconds / 2
            restart = restart_redis(redis, at, args.outage, outage)
        commits = await drive(plan, bus, args.rate, args.burst_writers, restart)
        receipts, completed, out_of_order = [], 0, 0
        for parent, _ in pipes:
            _kind, got, done, disorder = await asyncio.to_thread(parent.recv)
            receipts += got
            completed += done
            out_of_order += disorder
        sampler.cancel()
        wall = time.monotonic() - cpu_before[2]
        client_cpu = (cpu_seconds(client_pids) - cpu_before[0]) / wall
        api_cpu = (cpu_seconds(api_pids) - cpu_before[1]) / wall
        rss_after, rss_peak = api_rss_mb(api.pid)
        reconnects = await api_reconnects(f"http://127.0.0.1:{port}")
        logged: dict[int, set[int]] = {}
        for row in await models.VideoStatusEvent.filter(video_id__in=video_ids).values(
            "video_id", "version"
        ):
            logged.setdefault(row["video_id"], set()).add(row["version"])
        await bus.close()
        await db.close()
    finally:
        for process in clients:
            process.join(10)
        if api is not None:
            api.send_signal(2)  # SIGINT: a graceful stop (and a written profile)
            api.wait(15)
        redis.stop()
        await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(workdir, ignore_errors=True)

    by_video = {gid: vid for gid, vid in zip(gids, video_ids, strict=True)}
    per_video = total // args.videos
    rows = [
        ("seed", f"{seed} (the order of the videos in each step)"),
        (
            "API processes",
            f"{args.api_processes} x uvicorn (vidgen serve --no-worker"
            f"{f' --workers {args.api_processes}' if args.api_processes > 1 else ''}), "
            "Redis bus, PostgreSQL",
        ),
        (
            "subscriptions",
            f"{total} videoUpdated = {args.sockets} sockets x {args.per_socket} "
            f"(graphql-transport-ws), {per_video} per video x {args.videos} videos",
        ),
        (
            "driver",
            f"steady {args.rate:g} commits/s paced; burst unpaced from {args.burst_writers} "
            "writers at once (each its own videos)"
            + ("; Redis killed and restarted mid-steady" if args.redis_restart else ""),
        ),
        ("subscribe time", f"{subscribe_seconds:.1f} s for all {total}, connects included"),
        *phase_rows("steady", plan, commits, receipts, by_video, per_video),
        *phase_rows("burst", plan, commits, receipts, by_video, per_video),
        *(
            [
                (
                    "restart: API bus",
                    f"{reconnects} reconnect(s) (vidgen_bus_reconnects_total; each RESYNCs every "
                    "subscription); changes committed while Redis was down: "
                    + (
                        "never published (--drop-outage)"
                        if args.drop_outage
                        else "published late from the driver's outbox"
                    ),
                ),
                *restart_rows(commits, receipts, by_video, logged, outage, total),
            ]
            if args.redis_restart
            else []
        ),
        ("completed", f"{completed}/{total} subscriptions ended after the terminal status"),
        ("in order", f"{out_of_order} deliveries not newer than the one before (0 = in order)"),
        (
            "CPU while driving",
            f"clients ({args.clients} processes) {client_cpu:.2f} cores, API {api_cpu:.2f} "
            f"cores, of {os.cpu_count()}",
        ),
        burst_cpu_row(plan, commits, receipts, by_video, samples, args.clients),
        ("API RSS idle", f"{rss_idle:.0f} MiB"),
        (
            f"API RSS, {total} subs",
            f"{rss_subscribed:.0f} MiB (+{(rss_subscribed - rss_idle) * 1024 / total:.1f} KiB "
            "per subscription)",
        ),
        ("API RSS end / peak", f"{rss_after:.0f} / {rss_peak:.0f} MiB"),
        ("host", f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 72}")
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--per-socket", type=int, default=10, help="at most 100")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--steady", type=int, default=None, help="changes per video, paced")
    parser.add_argument("--burst", type=int, default=None, help="changes per video, unpaced")
    parser.add_argument("--quick", action="store_true", help="shorter phases (5 + 8 changes)")
    parser.add_argument("--rate", type=float, default=10.0, help="steady commits per second")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument(
        "--client",
        choices=("raw", "websockets"),
        default="raw",
        help="the client sockets: a minimal WebSocket frame parser on plain asyncio sockets "
        "(uvloop), or the websockets library's client (several times the client CPU)",
    )
    parser.add_argument("--api-processes", type=int, default=1, help="serve --workers N")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--burst-writers",
        type=int,
        default=16,
        help="burst committers at once (each its own videos, in order per video); enough "
        "that the offered commits x subscribers per video exceed what the server delivers "
        "even on a busy machine (4 offered 194-230 commits/s there, 16 offered 527)",
    )
    parser.add_argument(
        "--redis-restart",
        action="store_true",
        help="kill the bench's own redis-server halfway through the steady phase and start "
        "it again on the same port; then check every subscription got every logged version",
    )
    parser.add_argument("--outage", type=float, default=2.0, help="seconds Redis stays down")
    parser.add_argument(
        "--restart-at",
        type=float,
        default=None,
        help="seconds into the steady phase to kill Redis (default: halfway; the first "
        "step's status changes, queued -> processing, are committed in its first "
        "videos / rate seconds)",
    )
    parser.add_argument(
        "--drop-outage",
        action="store_true",
        help="with --redis-restart: what the driver commits while Redis is down is never "
        "published (not even late from its outbox), so subscribers get it only by RESYNC",
    )
    args = parser.parse_args()
    if args.steady is None:
        args.steady = 5 if args.quick else 10
    if args.burst is None:
        args.burst = 8 if args.quick else 15
    if args.per_socket > 100:
        parser.error("--per-socket: the server allows at most 100 operations per socket")
    global DROP_WHILE_DOWN
    DROP_WHILE_DOWN = args.drop_outage
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
