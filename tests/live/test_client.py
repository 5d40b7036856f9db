"""``vidgen generate``: submit, watch live progress over the WebSocket, print the result."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from PIL import Image

from tests.live.conftest import gid
from vidgen import client, models
from vidgen.jobs.worker import start_embedded


@pytest.fixture(params=["memory"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def worker(live) -> AsyncIterator[None]:
    running = await start_embedded(live.runtime, concurrency=2)
    try:
        yield
    finally:
        await running.stop()


async def vidgen(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgen.cli",
        "generate",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_generate_wait_shows_progress_and_prints_the_video_url(live, accounts, worker):
    alice = await accounts("alice@example.com")
    code, out, err = await vidgen(
        "sleep:0.6 progress succeed",
        "--provider",
        "test",
        "--resolution",
        "64x64",
        "--wait",
        "--url",
        live.url,
        env={"VIDGEN_TOKEN": alice.token},
    )
    assert code == 0, err
    url = urlsplit(out.strip())  # signed against the server's public URL setting
    assert url.scheme == "http" and url.path.startswith("/media/")
    assert (await live.client.get(f"{url.path}?{url.query}")).status_code == 200
    lines = err.splitlines()
    assert lines[0].startswith("submitted ")
    bars = [line for line in lines if line.startswith("[")]
    assert bars[0].endswith("queued") or bars[0].endswith("processing")
    assert bars[-1] == "[" + "#" * 30 + "] 100% completed"
    assert any("processing" in line and "100%" not in line for line in bars)


async def test_generate_wait_reports_a_failure_with_exit_code_1(live, accounts, worker):
    alice = await accounts("alice@example.com")
    code, out, err = await vidgen(
        "fail", "--provider", "test", "--wait", "--url", live.url, "--token", alice.token
    )
    assert code == 1
    assert out == ""
    assert "failed:" in err.splitlines()[-1]


async def test_generate_without_wait_prints_the_id(live, accounts, tmp_path):
    alice = await accounts("alice@example.com")
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
    code, out, err = await vidgen(
        "a drifting red square",
        "--provider",
        "test",
        "--image",
        str(image),
        "--format",
        "webm",
        "--duration",
        "2",
        env={"VIDGEN_TOKEN": alice.token, "VIDGEN_URL": live.url},
    )
    assert code == 0, err
    video = await models.Video.get(owner_id=alice.user.id)
    assert out.strip() == gid("Video", video.id)
    assert video.input_image and video.output_format == "webm" and video.status == "queued"


async def test_generate_refuses_without_or_with_a_bad_token(live, accounts):
    code, _, err = await vidgen("x", "--url", live.url)
    assert code == 2 and "VIDGEN_TOKEN" in err
    code, _, err = await vidgen("x", "--url", live.url, "--token", "vg_bad", "--wait")
    assert code == 2 and "UNAUTHENTICATED" in err


def test_progress_bar_on_a_terminal_redraws_one_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = client.ProgressBar(stream, width=10)
    bar.update("QUEUED", 0)
    bar.update("PROCESSING", 0.5)
    bar.update("PROCESSING", 0.5)  # unchanged: not redrawn
    bar.update("COMPLETED", 1.0)
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "[#####-----]  50% processing" in text


async def test_render_story_wait_follows_the_film_and_prints_its_url(live, accounts, worker):
    from vidgen.services import catalog

    alice = await accounts("alice@example.com")
    story = await catalog.create_story(
        viewer=alice.user, title="Fox", paragraphs=["succeed one", "succeed two"]
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgen.cli",
        "render-story",
        str(story.id),
        "--provider",
        "test",
        "--resolution",
        "64x64",
        "--captions",
        "--crossfade",
        "--wait",
        "--url",
        live.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "VIDGEN_TOKEN": alice.token},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    url = urlsplit(out.decode().strip())
    assert url.path.startswith("/media/")
    assert (await live.client.get(f"{url.path}?{url.query}")).status_code == 200
    film = await models.Video.get(kind=models.VideoKind.FILM)
    assert film.status == models.VideoStatus.COMPLETED and film.story_id == story.id
    assert err.decode().splitlines()[-1].endswith("completed")
