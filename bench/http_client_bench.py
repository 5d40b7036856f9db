"""The provider clients' CPU per request: httpx's default transport against vidgen's
(:mod:`vidgen.providers.transport`).

    .venv/bin/python -m bench.http_client_bench [--requests 3000] [--rounds 2]

A job's end at a remote provider is two requests: the poll that sees it done (a small JSON
answer) and the download of its output (here 1.9 KB, streamed). This runs that pair for
``--requests`` jobs, 20 at a time through the provider's :class:`~vidgen.providers.http.Gate`
(as the worker does), against a Starlette app under uvicorn in its own process, on the event
loop the worker uses, and reports the CPU time of this process's thread per request. The
transports alternate, ``--rounds`` times each; the figure is each one's best round (other
work on the machine only adds to CPU time). The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx

from bench.capacity_bench import free_port, wait_http

CONNECTIONS = 20


def serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from vidgen.providers.testing import tiny_video

    video = tiny_video("mp4")

    async def task(request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(
            {
                "id": request.path_params["id"],
                "status": "SUCCEEDED",
                "output": [f"{base}/files/{request.path_params['id']}.mp4"],
            }
        )

    async def file(request: Request) -> Response:
        return Response(video, media_type="video/mp4")

    app = Starlette(routes=[Route("/v1/tasks/{id}", task), Route("/files/{name}", file)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def one_round(kind: str, base_url: str, jobs: int) -> float:
    """CPU seconds of this thread per request, for ``jobs`` poll + download pairs."""
    from vidgen.providers.http import Gate
    from vidgen.providers.transport import PooledTransport

    limits = httpx.Limits(
        max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS, keepalive_expiry=30
    )
    transport = None
    if kind == "vidgen":
        transport = PooledTransport(max_connections=CONNECTIONS, keepalive_expiry=30.0)
    client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, transport=transport)
    gate = Gate(CONNECTIONS)

    async def job(i: int) -> None:
        async with gate.turn():
            answer = (await client.get(f"/v1/tasks/{i:032x}")).json()
        async with gate.turn(), client.stream("GET", answer["output"][0]) as response:
            async for _ in response.aiter_bytes(64 * 1024):
                pass

    try:
        await asyncio.gather(*(job(i) for i in range(200)))  # connections open, warm
        started = time.thread_time()
        await asyncio.gather(*(job(i) for i in range(jobs)))
        return (time.thread_time() - started) / (2 * jobs)
    finally:
        await client.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, "-m", "bench.http_client_bench", "--serve", str(port)]
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_http(f"{base_url}/files/x.mp4")
        rounds: dict[str, list[float]] = {"httpx": [], "vidgen": []}
        for _ in range(args.rounds):
            for kind in rounds:
                rounds[kind].append(await one_round(kind, base_url, args.requests))
    finally:
        server.terminate()
        server.wait(timeout=10)
    best = {kind: min(values) for kind, values in rounds.items()}
    return {
        "name": "http_client",
        "requests": 2 * args.requests,
        "cpu_us_per_request": {k: round(v * 1e6) for k, v in best.items()},
        "rounds_us": {k: [round(v * 1e6) for v in values] for k, values in rounds.items()},
        "ratio": round(best["vidgen"] / best["httpx"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="poll + download pairs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    from vidgen import eventloop

    result = eventloop.run(run(args))
    us = result["cpu_us_per_request"]
    print(
        f"CPU per request on the client's thread (best of {args.rounds} rounds, "
        f"{result['requests']} requests each): httpx's transport {us['httpx']} us, "
        f"vidgen's {us['vidgen']} us ({result['ratio']:.2f} of it)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
