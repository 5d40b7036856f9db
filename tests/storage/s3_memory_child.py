"""The child process of ``test_s3_memory.py``: stores and serves one large object through the
S3 backend and prints, per phase, how far its resident memory rose above where it stood when
the phase began (JSON on the last line of stdout).

    python -m tests.storage.s3_memory_child ENDPOINT BUCKET SIZE_BYTES SCRATCH_DIR

The peak of each phase is the kernel's high-water mark (``VmHWM``), reset before the phase
through ``/proc/self/clear_refs``; where the kernel refuses the reset, the mark since the
process began is used, which can only overstate a phase's rise. The object's bytes are never
all in this process: the file is sparse (read back as zeros by the kernel, no disk), the
stream is one random MiB repeated, and the provider output of the ``ingest`` phase (the job
pipeline's media stage: download, probe, thumbnail, store) is a real MP4 of a few frames
followed by a ``free`` box of zeros, served in chunks from this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hashlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

MIB = 1024 * 1024
SECRET = "memory-test-secret"


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Hand memory freed by earlier phases back to the kernel, so that a phase cannot hide
    its own use in what the allocator kept (glibc's ``malloc_trim``)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def _measure(run: Callable[[], Awaitable[object]]) -> dict[str, object]:
    _trim()
    reset = _reset_peak()
    base = _status("VmRSS")
    result = await run()
    return {"base": base, "peak": _status("VmHWM"), "reset": reset, "result": result}


async def _repeated(block: bytes, size: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        chunk = block[: size - sent]
        sent += len(chunk)
        yield chunk


async def _serve_and_download(storage, key: str, size: int) -> dict[str, object]:  # noqa: ANN001
    """The media route (streamed through, as ``VIDGEN_MEDIA_REDIRECT`` off serves it) under
    uvicorn on a real port, and a client in this process reading it and a range of it."""
    import httpx
    import uvicorn
    from starlette.applications import Starlette

    from vidgen.media.signing import signed_url
    from vidgen.web.media import media_routes

    app = Starlette(routes=media_routes(storage, SECRET))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        url = signed_url(base, key, ttl=600, secret=SECRET)
        got = 0
        async with httpx.AsyncClient(timeout=120) as http:
            async with http.stream("GET", url) as response:
                status = response.status_code
                async for chunk in response.aiter_raw():
                    got += len(chunk)
            start = size // 2
            ranged = await http.get(url, headers={"Range": f"bytes={start}-{start + MIB - 1}"})
        return {
            "status": status,
            "bytes": got,
            "range_status": ranged.status_code,
            "range_bytes": len(ranged.content),
        }
    finally:
        server.should_exit = True
        await task
        sock.close()


def _small_mp4() -> bytes:
    """A real MP4 of a few frames (PyAV), the head of the large output."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for n in range(12):
            frame = av.VideoFrame(128, 96, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([n * 20 % 256]) * plane.buffer_size)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _padded(head: bytes, size: int) -> tuple[bytes, int]:
    """``head`` followed by the header of a ``free`` box that fills the output up to
    ``size`` bytes (players and probes skip it): the header, and how many zeros follow."""
    pad = size - len(head)
    return head + pad.to_bytes(4, "big") + b"free", pad - 8


async def _ingest(storage, size: int) -> dict[str, object]:  # noqa: ANN001
    """The job pipeline's media stage for a ``size``-byte output: download it from a file
    host (streamed, served from this process), probe, thumbnail, store in the bucket."""
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from vidgen.media.ingest import Ingest
    from vidgen.providers.errors import ErrorContext
    from vidgen.providers.http import download_to

    head, zeros = _padded(_small_mp4(), size)

    async def body() -> AsyncIterator[bytes]:
        yield head
        block = bytes(MIB)
        left = zeros
        while left > 0:
            yield block[: min(left, MIB)]
            left -= MIB

    async def output(_request):  # noqa: ANN001, ANN202
        headers = {"content-length": str(size)}
        return StreamingResponse(body(), media_type="video/mp4", headers=headers)

    app = Starlette(routes=[Route("/output.mp4", output)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/output.mp4"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        job = Ingest(
            storage,
            owner_id=1,
            video_id=size,
            output_format="mp4",
            thumbnail_width=64,
            thumbnail_format="jpeg",
        )
        dest = await asyncio.to_thread(job.open)
        async with httpx.AsyncClient() as client:
            kind = await download_to(
                client, url, dest, max_bytes=size, errors=ErrorContext("test", "VIDGEN_NONE")
            )
        stored = await asyncio.to_thread(job.finish, kind)
        assert stored is not None
        return {
            "key": stored.video_key,
            "file_size": stored.file_size,
            "stored_size": await storage.size(stored.video_key),
            "thumbnail": await storage.size(stored.thumbnail_key) > 0,
            "probed": [stored.info.width, stored.info.height, stored.info.duration_seconds > 0],
        }
    finally:
        server.should_exit = True
        await task
        sock.close()


async def main(endpoint: str, bucket: str, size: int, scratch: Path) -> dict[str, object]:
    from vidgen.media.storage.s3 import S3Storage

    storage = S3Storage(bucket, prefix="media", endpoint_url=endpoint, scratch_dir=scratch)
    try:
        # Warm up: the client, its connection pool and every import of the phases below.
        assert await storage.create_bucket()
        await storage.save_bytes("warm/up.bin", b"x" * 1024)
        assert await storage.read_bytes("warm/up.bin") == b"x" * 1024
        await _serve_and_download(storage, "warm/up.bin", 1024)
        await _ingest(storage, 12 * MIB)  # two parts: the multipart path, and PyAV loaded

        sparse = scratch / "sparse.bin"
        phases: dict[str, dict[str, object]] = {}
        phases["save_file"] = await _measure(lambda: storage.save_file("big/file.mp4", sparse))
        block = os.urandom(MIB)
        phases["save_stream"] = await _measure(
            lambda: storage.save_stream(
                "big/stream.mp4", _repeated(block, size), max_bytes=size + 1
            )
        )

        async def read_back() -> dict[str, object]:
            digest = hashlib.sha256()
            async for chunk in storage.read("big/stream.mp4"):
                digest.update(chunk)
            expected = hashlib.sha256()
            async for chunk in _repeated(block, size):
                expected.update(chunk)
            return {"same": digest.digest() == expected.digest()}

        phases["read"] = await _measure(read_back)
        phases["serve"] = await _measure(lambda: _serve_and_download(storage, "big/file.mp4", size))
        phases["ingest"] = await _measure(lambda: _ingest(storage, size))
        sizes = {key: await storage.size(key) for key in ("big/file.mp4", "big/stream.mp4")}
        return {"phases": phases, "sizes": sizes, "file_left": sparse.exists()}
    finally:
        await storage.close()


if __name__ == "__main__":
    endpoint, bucket, size, scratch = sys.argv[1:5]
    folder = Path(scratch)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sparse.bin", "wb") as fh:
        fh.truncate(int(size))  # a hole: no disk, read back as zeros
    report = asyncio.run(main(endpoint, bucket, int(size), folder))
    print(json.dumps(report))
