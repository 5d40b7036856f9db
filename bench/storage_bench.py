"""Object storage: a finished output stored through S3 against the same on a local folder,
the 50 MB throughput of vidgen's S3 backend, and the two candidate S3 clients side by side.

    .venv/bin/python -m bench.storage_bench [--jobs 20] [--rounds 3] [--size-mb 50]
        [--clients] [--json]

Everything runs against one moto S3 server (``tests/s3_server.py``, the test suite's) on
127.0.0.1, started and stopped here, so absolute figures are the test server's (a Python
server: its CPU bounds uploads) more than the store's; ratios within one run are the point.

- ingest: the job pipeline's media stage for one finished output, as a worker does it
  (:class:`vidgen.media.ingest.Ingest`): download the file from a local HTTP file host
  standing in for a provider's CDN, probe + thumbnail in one pass, store both. ``--jobs``
  outputs one after the other on each backend, backends alternating per round; the
  figure is outputs/s, the ratio S3 / local folder from the median round. The output is a
  real MP4 of provider size (about 15 MB, :func:`make_output`): on S3 it goes up as a
  two-part multipart upload.
- throughput: vidgen's S3 backend alone, in a child process (so its peak RSS is its own):
  ``save_file`` of a ``--size-mb`` file (multipart, 8 MiB parts, 4 in flight) and
  ``read`` of it back into a file; bytes/s each way, the process's RSS once its client is
  up, and its peak RSS.
- ``--clients``: the same upload and download with each candidate client used directly
  (aiobotocore: multipart, 8 MiB parts, 4 in flight, streamed download; obstore:
  ``put_async`` of the path with 8 MiB chunks and 4 in flight, streamed ``get_async``),
  each in its own child process. obstore is not a vidgen dependency:
  ``pip install -e '.[bench]'`` brings it.

The last line is a JSON summary (``name``: ``storage``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PART = 8 * 1024 * 1024
CONCURRENCY = 4
MIB = 1024 * 1024


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mib() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would keep the parent's across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- children: one transfer each, their own RSS --------------------------------------------


async def _child_vidgen(endpoint: str, bucket: str, src: Path) -> dict[str, float]:
    from vidgen.media.storage.s3 import S3Storage

    storage = S3Storage(bucket, endpoint_url=endpoint, scratch_dir=src.parent / "scratch")
    await storage.save_bytes("warm/up.bin", b"x")
    setup = rss_mib()
    upload = src.with_suffix(".upload")
    shutil.copyfile(src, upload)  # save_file takes the file away
    started = time.perf_counter()
    await storage.save_file("bench/object.bin", upload)
    up = time.perf_counter() - started
    started = time.perf_counter()
    with open(src.with_suffix(".down"), "wb") as out:  # noqa: ASYNC230 - alike in every child
        async for chunk in storage.read("bench/object.bin"):
            out.write(chunk)
    down = time.perf_counter() - started
    await storage.close()
    return {"up": up, "down": down, "setup_mib": setup}


async def _child_aiobotocore(endpoint: str, bucket: str, src: Path) -> dict[str, float]:
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    ) as client:
        await client.put_object(Bucket=bucket, Key="warm", Body=b"x")
        setup = rss_mib()
        started = time.perf_counter()
        upload = await client.create_multipart_upload(Bucket=bucket, Key="object")
        upload_id = upload["UploadId"]
        running: set[asyncio.Task[dict[str, Any]]] = set()
        parts: list[dict[str, Any]] = []

        async def one(number: int, body: bytes) -> dict[str, Any]:
            sent = await client.upload_part(
                Bucket=bucket, Key="object", UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": sent["ETag"]}

        with open(src, "rb") as fh:  # noqa: ASYNC230 - alike in every child
            number = 0
            while body := fh.read(PART):
                number += 1
                running.add(asyncio.ensure_future(one(number, body)))
                if len(running) >= CONCURRENCY:
                    done, running = await asyncio.wait(running, return_when="FIRST_COMPLETED")
                    parts += [t.result() for t in done]
        if running:
            done, _ = await asyncio.wait(running)
            parts += [t.result() for t in done]
        parts.sort(key=lambda p: p["PartNumber"])
        await client.complete_multipart_upload(
            Bucket=bucket, Key="object", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        up = time.perf_counter() - started
        started = time.perf_counter()
        got = await client.get_object(Bucket=bucket, Key="object")
        with open(src.with_suffix(".down"), "wb") as out:  # noqa: ASYNC230
            async for chunk in got["Body"].iter_chunks(256 * 1024):
                out.write(chunk)
        down = time.perf_counter() - started
    return {"up": up, "down": down, "setup_mib": setup}


async def _child_obstore(endpoint: str, bucket: str, src: Path) -> dict[str, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        config={
            "endpoint": endpoint,
            "region": "us-east-1",
            "access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        },
        client_options={"allow_http": True},
    )
    await obstore.put_async(store, "warm", b"x")
    setup = rss_mib()
    started = time.perf_counter()
    await obstore.put_async(store, "object", src, chunk_size=PART, max_concurrency=CONCURRENCY)
    up = time.perf_counter() - started
    started = time.perf_counter()
    got = await obstore.get_async(store, "object")
    with open(src.with_suffix(".down"), "wb") as out:  # noqa: ASYNC230
        async for chunk in got.stream(min_chunk_size=256 * 1024):
            out.write(chunk)
    down = time.perf_counter() - started
    return {"up": up, "down": down, "setup_mib": setup}


CHILDREN = {"vidgen": _child_vidgen, "aiobotocore": _child_aiobotocore, "obstore": _child_obstore}


def child_main(which: str, endpoint: str, bucket: str, src: str) -> None:
    path = Path(src)
    result = asyncio.run(CHILDREN[which](endpoint, bucket, path))
    size = path.stat().st_size
    print(
        json.dumps(
            {
                "client": which,
                "bytes": size,
                "up_bytes_per_s": size / result["up"],
                "down_bytes_per_s": size / result["down"],
                "setup_rss_mib": result["setup_mib"],
                "peak_rss_mib": peak_mib(),
            }
        )
    )


def run_child(which: str, endpoint: str, bucket: str, src: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.storage_bench", "--child", which, endpoint, bucket, str(src)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"client": which, "error": " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the media stage on each backend ---------------------------------------------------------


def make_output(frames: int = 96) -> bytes:
    """A real MP4 the size of a provider's output (about 15 MB: 4 s of 854x480 H.264 whose
    frames are noise, which no encoder can shrink), made once with PyAV."""
    import io

    import av
    from PIL import Image

    width, height = 854, 480
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "28", "preset": "ultrafast"}
        for _ in range(frames):
            image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


async def ingest_round(storage: Any, url: str, jobs: int, first_id: int) -> float:
    """``jobs`` outputs through the media stage, one after the other: outputs/s."""
    import httpx

    from vidgen.media.ingest import Ingest
    from vidgen.providers.errors import ErrorContext
    from vidgen.providers.http import download_to

    errors = ErrorContext("bench", "VIDGEN_BENCH_KEY")
    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        for n in range(jobs):
            job = Ingest(
                storage,
                owner_id=1,
                video_id=first_id + n,
                output_format="mp4",
                thumbnail_width=320,
                thumbnail_format="jpeg",
            )
            dest = await asyncio.to_thread(job.open)
            kind = await download_to(client, url, dest, max_bytes=10**9, errors=errors)
            stored = await asyncio.to_thread(job.finish, kind)
            assert stored is not None and stored.file_size > 0
        return jobs / (time.perf_counter() - started)


async def ingest_compare(
    endpoint: str, work: Path, output: bytes, *, jobs: int, rounds: int
) -> dict[str, Any]:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from tests.s3_server import new_bucket_name
    from tests.simulators.server import aserve
    from vidgen.media.storage import LocalStorage
    from vidgen.media.storage.s3 import S3Storage

    async def file(_request: Any) -> Response:
        return Response(output, media_type="video/mp4")

    app = Starlette(routes=[Route("/output.mp4", file)])
    s3 = S3Storage(new_bucket_name(), endpoint_url=endpoint, scratch_dir=work / "scratch")
    await s3.create_bucket()
    local = LocalStorage(work / "media")
    per_round: list[dict[str, float]] = []
    try:
        async with aserve(app) as base:
            url = f"{base}/output.mp4"
            await ingest_round(local, url, 2, 10**6)  # warm-up: imports, codecs, connections
            await ingest_round(s3, url, 2, 10**6)
            for index in range(rounds):
                rates = {}
                order = [("file", local), ("s3", s3)]
                for name, storage in order if index % 2 == 0 else reversed(order):
                    rates[name] = await ingest_round(storage, url, jobs, 1 + index * jobs)
                per_round.append(rates)
    finally:
        await s3.close()
    ratios = [r["s3"] / r["file"] for r in per_round]
    median = sorted(range(len(ratios)), key=lambda i: ratios[i])[len(ratios) // 2]
    return {
        "s3": per_round[median]["s3"],
        "file": per_round[median]["file"],
        "ratio": ratios[median],
        "ratio_rounds": ratios,
        "output_bytes": len(output),
        "jobs": jobs,
    }


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--child"]:
        child_main(*args_list[1:5])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.storage_bench")
    parser.add_argument("--jobs", type=int, default=20, help="outputs per backend per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=50, help="the throughput object's size")
    parser.add_argument("--clients", action="store_true", help="also compare the S3 clients")
    parser.add_argument("--json", action="store_true", help="end with a JSON line (always)")
    args = parser.parse_args(args_list)

    from tests.s3_server import S3Server, aws_env, new_bucket_name

    os.environ.update(aws_env())
    work = Path(tempfile.mkdtemp(prefix="vidgen-storage-bench-"))
    server = S3Server(work / "moto.log").start()
    summary: dict[str, Any] = {"name": "storage", "size_mb": args.size_mb}
    try:
        output = make_output()
        ingest = asyncio.run(
            ingest_compare(server.url, work, output, jobs=args.jobs, rounds=args.rounds)
        )
        summary["ingest"] = ingest
        print(
            f"media stage, {ingest['output_bytes'] / MIB:.1f} MiB output, {args.jobs} per round:"
            f" S3 {ingest['s3']:.2f}/s, local folder {ingest['file']:.2f}/s,"
            f" ratio {ingest['ratio']:.2f} (rounds: "
            + ", ".join(f"{r:.2f}" for r in ingest["ratio_rounds"])
            + ")"
        )
        src = work / "object.bin"
        with open(src, "wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(MIB))
        which = ["vidgen"] + (["aiobotocore", "obstore"] if args.clients else [])
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in which}
        for index in range(args.rounds):  # clients alternate; each run a fresh bucket
            for name in which if index % 2 == 0 else list(reversed(which)):
                bucket = new_bucket_name()
                problem = run_child_bucket(server.url, bucket)
                result = (
                    {"client": name, "error": problem}
                    if problem
                    else run_child(name, server.url, bucket, src)
                )
                runs[name].append(result)
        summary["throughput"] = []
        for name in which:
            good = [r for r in runs[name] if "error" not in r]
            if not good:
                summary["throughput"].append(runs[name][0])
                print(f"{name}: failed: {runs[name][0]['error']}")
                continue
            row = {
                "client": name,
                "runs": len(good),
                **{
                    field: statistics.median(r[field] for r in good)
                    for field in (
                        "up_bytes_per_s",
                        "down_bytes_per_s",
                        "setup_rss_mib",
                        "peak_rss_mib",
                    )
                },
            }
            summary["throughput"].append(row)
            print(
                f"{name}: {args.size_mb} MB, median of {len(good)}: up"
                f" {row['up_bytes_per_s'] / 1e6:.1f} MB/s, down"
                f" {row['down_bytes_per_s'] / 1e6:.1f} MB/s; RSS with the client up"
                f" {row['setup_rss_mib']:.0f} MiB, peak {row['peak_rss_mib']:.0f} MiB"
                f" (runs up: {', '.join(str(round(r['up_bytes_per_s'] / 1e6)) for r in good)})"
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary["machine_load"] = os.getloadavg()[0]
    print(json.dumps(summary))
    return 0


def run_child_bucket(endpoint: str, bucket: str) -> str | None:
    """Create ``bucket`` (in this process: the children measure only their transfer)."""
    from vidgen.media.storage.s3 import S3Storage

    async def make() -> None:
        storage = S3Storage(bucket, endpoint_url=endpoint, scratch_dir=Path(tempfile.gettempdir()))
        try:
            await storage.create_bucket()
        finally:
            await storage.close()

    try:
        asyncio.run(make())
    except Exception as exc:  # noqa: BLE001 - reported as the row's failure
        return f"{type(exc).__name__}: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
