"""The scaled layout end to end: an API process and a worker process, each with its own data
folder (two machines), sharing only PostgreSQL, Redis and one bucket of an S3 server.

Text→video and image→video (an uploaded image) complete with the worker's real renders,
and every media URL the API returns answers 200, and 206 to a range request: from an API
that streams the objects through, and from one that redirects to the store's presigned URL.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.live.processes import ApiProcess, WorkerProcess, process_env
from tests.live.redis_server import RedisServer
from tests.media.conftest import image_bytes
from tests.s3_server import S3Server, aws_env, new_bucket_name
from vidgen.media.storage.s3 import S3Storage
from vidgen.services import users
from vidgen.settings import Settings

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

GENERATE = """
mutation G($input: GenerateVideoInput!) { generateVideo(input: $input) { id } }
"""
VIDEO = """
query V($id: ID!) {
  video(id: $id) { status errorMessage videoUrl thumbnailUrl inputImageUrl }
}
"""
URL_FIELDS = ("videoUrl", "thumbnailUrl", "inputImageUrl")


async def _post(api: ApiProcess, token: str, **kwargs) -> dict:
    headers = {"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.post("/graphql", headers=headers, **kwargs)
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


async def _completed(api: ApiProcess, token: str, video_id: str, within: float = 90) -> dict:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        video = (await _post(api, token, json={"query": VIDEO, "variables": {"id": video_id}}))[
            "video"
        ]
        if video["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            assert video["status"] == "COMPLETED", video
            return video
        assert asyncio.get_running_loop().time() < deadline, f"not completed: {video}"
        await asyncio.sleep(0.2)


def _media_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and "media" in p.parts]


async def test_api_and_worker_on_two_machines_share_only_the_bucket(
    db: Settings,
    redis_server: RedisServer,
    s3_server: S3Server,
    aws_credentials: dict[str, str],
    tmp_path: Path,
) -> None:
    bucket = new_bucket_name()
    store = S3Storage(bucket, endpoint_url=s3_server.url, scratch_dir=tmp_path / "scratch")
    assert await store.create_bucket()
    await store.close()
    user = await users.create_user(email="split@example.com")
    token, _ = await users.issue_token(user=user, name="test")

    def env(machine: str, **extra: str) -> dict:
        return process_env(
            database_url=db.resolved_database_url,
            redis_url=redis_server.url,
            data_dir=tmp_path / machine,
            VIDGEN_STORAGE_URL=f"s3://{bucket}/media",
            VIDGEN_S3_ENDPOINT_URL=s3_server.url,
            **aws_env(),
            **extra,
        )

    streaming = ApiProcess(env("api"), tmp_path, "api")
    redirecting = ApiProcess(env("api2", VIDGEN_MEDIA_REDIRECT="true"), tmp_path, "api2")
    worker = WorkerProcess(env("worker"), tmp_path)
    processes = [streaming, redirecting, worker]
    try:
        await asyncio.gather(*(asyncio.to_thread(api.wait_ready) for api in processes[:2]))
        text = {"prompt": "a lighthouse at dusk", "resolution": "256x256", "durationSeconds": 1}
        first = await _post(
            streaming, token, json={"query": GENERATE, "variables": {"input": text}}
        )
        image = {**text, "prompt": "the same, moving", "inputImage": None}
        second = await _post(
            streaming,
            token,
            data={
                "operations": json.dumps({"query": GENERATE, "variables": {"input": image}}),
                "map": json.dumps({"0": ["variables.input.inputImage"]}),
            },
            files={"0": ("in.png", image_bytes("PNG", (128, 96)), "image/png")},
        )
        ids = [first["generateVideo"]["id"], second["generateVideo"]["id"]]

        for api in (streaming, redirecting):
            for video_id in ids:
                video = await _completed(api, token, video_id)
                urls = [video[f] for f in URL_FIELDS if video[f]]
                assert len(urls) == (3 if video_id == ids[1] else 2), video
                async with httpx.AsyncClient(timeout=30, follow_redirects=True) as http:
                    for url in urls:
                        assert url.startswith(api.url)
                        whole = await http.get(url)
                        assert whole.status_code == 200 and whole.content, url
                        part = await http.get(url, headers={"Range": "bytes=0-99"})
                        assert part.status_code == 206, url
                        assert part.content == whole.content[:100]
                        redirected = [r.status_code for r in whole.history]
                        assert redirected == ([302] if api is redirecting else [])
    finally:
        for process in processes:
            process.stop()
        logs = "\n".join(f"--- {p.log.name}\n{p.output()[-3000:]}" for p in processes)
        print(logs)
    # Neither machine kept a media file: everything is in the bucket.
    for machine in ("api", "api2", "worker"):
        assert _media_files(tmp_path / machine) == [], machine
