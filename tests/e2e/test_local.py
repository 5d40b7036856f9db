"""The local provider end to end: generateVideo over HTTP → worker → real, playable media.

Runs on both backends (cancellation on one).
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

from tests.api.conftest import LiveServer
from tests.e2e.conftest import (
    CANCEL_VIDEO,
    THUMBNAIL_WIDTH,
    db_id,
    fetch_video,
    generate,
    one_backend,
    png_bytes,
    running_worker,
    wait_for_prediction,
    wait_for_status,
    wait_until,
)
from vidgen.jobs.worker import Worker
from vidgen.models import Video, VideoStatus
from vidgen.providers.base import State
from vidgen.runtime import Runtime

S = VideoStatus
CODECS = {"MP4": ("h264", "video/mp4"), "WEBM": ("vp9", "video/webm")}


def decoded(path: Path) -> tuple[int, int, int, float]:
    """Decode every frame: (frames, width, height, frame rate)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        frames = 0
        for frame in container.decode(stream):
            frames += 1
            size = (frame.width, frame.height)
    return frames, size[0], size[1], rate


async def download(server: LiveServer, url: str) -> tuple[bytes, str]:
    assert url.startswith(f"{server.url}/media/"), url
    response = await server.client.get(url)  # signed: no Authorization header needed
    assert response.status_code == 200, response.text
    return response.content, response.headers["content-type"]


async def check_completed(
    server: LiveServer,
    runtime: Runtime,
    token: str,
    global_id: str,
    *,
    fmt: str,
    size: str,
    seconds: float,
) -> None:
    """Row metadata, the decoded file, the thumbnail and the signed URLs of one video."""
    width, height = (int(v) for v in size.split("x"))
    fps = runtime.settings.local_frame_rate
    video = await fetch_video(server, token, global_id)
    row = await Video.get(id=db_id(global_id))
    assert video["status"] == "COMPLETED", video["errorMessage"]
    assert video["progress"] == 1.0 and row.error_message is None
    assert row.video_file and row.video_file.endswith("." + fmt.lower())
    assert row.thumbnail_file and row.thumbnail_file.endswith(".jpg")
    codec, content_type = CODECS[fmt]
    assert row.codec == codec
    assert (row.width, row.height) == (video["width"], video["height"]) == (width, height)
    assert row.frame_rate == video["frameRate"] == pytest.approx(fps)
    assert video["durationSeconds"] == pytest.approx(seconds, abs=1 / fps)

    path = runtime.storage.path(row.video_file)
    assert row.file_size == video["fileSize"] == path.stat().st_size > 0
    frames, got_w, got_h, rate = decoded(path)
    assert (got_w, got_h) == (width, height)
    assert rate == pytest.approx(fps)
    assert abs(frames - round(seconds * fps)) <= 1, frames
    assert float(Fraction(frames) / Fraction(fps)) == pytest.approx(seconds, abs=1 / fps)

    body, served_type = await download(server, video["videoUrl"])
    assert body == path.read_bytes() and served_type.startswith(content_type)
    thumb, thumb_type = await download(server, video["thumbnailUrl"])
    assert thumb == runtime.storage.path(row.thumbnail_file).read_bytes()
    assert thumb_type.startswith("image/jpeg")
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "JPEG"
        assert image.size == (THUMBNAIL_WIDTH, round(height * THUMBNAIL_WIDTH / width))
        image.load()  # the whole JPEG decodes


async def test_text_to_video_mp4_and_webm(server: LiveServer, runtime: Runtime, token: str) -> None:
    requested = {
        "MP4": ("854x480", 2.0),
        "WEBM": ("256x256", 1.5),
    }
    ids = {}
    for fmt, (size, seconds) in requested.items():
        video = await generate(
            server,
            token,
            prompt=f"a lighthouse at dusk, waves rolling in ({fmt})",
            provider="local",
            resolution=size,
            outputFormat=fmt,
            durationSeconds=seconds,
        )
        assert (video["provider"], video["resolution"], video["outputFormat"]) == (
            "local",
            size,
            fmt,
        )
        ids[fmt] = video["id"]
    assert await Worker(runtime, concurrency=2).run_until_idle() == 2
    for fmt, (size, seconds) in requested.items():
        await check_completed(server, runtime, token, ids[fmt], fmt=fmt, size=size, seconds=seconds)


async def test_image_to_video_with_uploaded_png(
    server: LiveServer, runtime: Runtime, token: str
) -> None:
    video = await generate(
        server,
        token,
        image=png_bytes(400, 300),
        prompt="slow pan over the harbour",
        provider="local",
        resolution="256x256",
        outputFormat="MP4",
        durationSeconds=1.0,
    )
    stored = await Video.get(id=db_id(video["id"]))
    assert stored.input_image and runtime.storage.path(stored.input_image).exists()
    assert await Worker(runtime, concurrency=1).run_until_idle() == 1
    await check_completed(
        server, runtime, token, video["id"], fmt="MP4", size="256x256", seconds=1.0
    )
    fetched = await fetch_video(server, token, video["id"])
    upload, _ = await download(server, fetched["inputImageUrl"])
    assert upload == png_bytes(400, 300)


@one_backend
async def test_cancel_stops_a_running_render(
    server: LiveServer, runtime: Runtime, token: str
) -> None:
    video = await generate(
        server,
        token,
        prompt="a very long sunrise over the mountains",
        provider="local",
        resolution="1920x1080",
        durationSeconds=30.0,
    )
    video_id = db_id(video["id"])
    local = runtime.providers["local"]
    async with running_worker(runtime):
        processing = await wait_for_prediction(video_id)
        assert processing.prediction_id
        body = await server.gql(CANCEL_VIDEO, {"id": video["id"]}, token=token)
        assert "errors" not in body, body
        # A render thread busy beside the loop slows the cancel's path; a lost cancel would
        # end in COMPLETED (or not at all), never in CANCELED.
        done = await wait_for_status(video_id, seconds=30)
        assert done.status == S.CANCELED

        async def render_stopped() -> bool:
            result = await local.poll(processing.prediction_id)  # type: ignore[arg-type]
            return result.state is State.CANCELED

        await wait_until(render_stopped, seconds=15)  # the thread stops before its next frame
    assert done.video_file is None and done.thumbnail_file is None
    tmp = runtime.storage.tmp_dir
    assert not tmp.exists() or not [p for p in tmp.rglob("*") if p.is_file()]
