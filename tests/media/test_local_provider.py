from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vidgen.media.probe import probe
from vidgen.providers.base import (
    GenerationRequest,
    InputImage,
    PollResult,
    PredictionLost,
    Provider,
    ProviderError,
    State,
    WebhookRejected,
)
from vidgen.providers.local import LocalProvider
from vidgen.settings import Settings

from .conftest import image_bytes


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    settings = Settings(data_dir=tmp_path / "data", render_workers=2, local_frame_rate=12)
    local = LocalProvider(settings, storage_tmp=tmp_path / "renders")
    yield local
    await local.aclose()


def _output(result: PollResult) -> Path:
    return Path(str(result.extra["path"]))


def _request(**overrides: object) -> GenerationRequest:
    values: dict[str, object] = {
        "prompt": "paper boats sailing on a river of ink",
        "resolution": "256x256",
        "output_format": "mp4",
        "duration_seconds": 2.0,
        "seed": 11,
    }
    values.update(overrides)
    return GenerationRequest(**values)  # type: ignore[arg-type]


async def _wait(provider: LocalProvider, prediction_id: str) -> tuple[PollResult, list[float]]:
    progress: list[float] = []
    for _ in range(600):
        result = await provider.poll(prediction_id)
        if result.progress is not None:
            progress.append(result.progress)
        if result.state in (State.SUCCEEDED, State.FAILED, State.CANCELED):
            return result, progress
        await asyncio.sleep(0.01)
    raise AssertionError("the render did not finish")


def test_capabilities(provider: LocalProvider) -> None:
    assert isinstance(provider, Provider)
    assert provider.name == "local" and provider.available
    caps = provider.capabilities
    assert caps.text_to_video and caps.image_to_video
    assert caps.output_formats == ("mp4", "webm")
    assert (caps.min_duration_seconds, caps.max_duration_seconds, caps.durations) == (1, 30, None)
    assert caps.default_resolution == "1024x1024"
    for preset in ("256x256", "1024x1024", "1280x720", "720x1280", "1920x1080", "1080x1920"):
        assert preset in caps.resolutions
    assert caps.max_prompt_length == 2000
    assert caps.models == ("scene-v1",)
    assert caps.min_poll_interval <= 0.2


async def test_text_to_video_end_to_end(provider: LocalProvider, tmp_path: Path) -> None:
    submission = await provider.submit(_request(duration_seconds=3.0))
    assert submission.state is State.QUEUED
    result, progress = await _wait(provider, submission.prediction_id)
    assert result.state is State.SUCCEEDED, result.error
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len(set(progress)) > 2  # it moved through intermediate values
    dest = tmp_path / "stored" / "video.mp4"
    assert await provider.download(result, dest, max_bytes=50_000_000) == "video/mp4"
    assert not _output(result).exists()
    info = probe(dest)
    assert (info.codec, info.width, info.height) == ("h264", 256, 256)
    assert info.duration_seconds == pytest.approx(3.0, abs=0.05)
    assert info.frame_rate == 12
    # downloaded renders are forgotten
    with pytest.raises(PredictionLost):
        await provider.poll(submission.prediction_id)


async def test_image_to_video_webm(provider: LocalProvider, tmp_path: Path) -> None:
    image = InputImage(data=image_bytes("JPEG", (300, 200)), content_type="image/jpeg")
    submission = await provider.submit(
        _request(
            resolution="480x854",
            output_format="webm",
            duration_seconds=1.0,
            frame_rate=8,
            input_image=image,
        )
    )
    result, _ = await _wait(provider, submission.prediction_id)
    assert result.state is State.SUCCEEDED, result.error
    assert result.extra["content_type"] == "video/webm"
    dest = tmp_path / "out.webm"
    assert await provider.download(result, dest, max_bytes=50_000_000) == "video/webm"
    info = probe(dest)
    assert (info.codec, info.width, info.height, info.frame_rate) == ("vp9", 480, 854, 8)


async def test_unknown_prediction_is_lost(provider: LocalProvider) -> None:
    with pytest.raises(PredictionLost) as info:
        await provider.poll("local-from-a-dead-process")
    assert info.value.retryable


async def test_cancel_stops_a_running_render(provider: LocalProvider) -> None:
    submission = await provider.submit(
        _request(resolution="512x512", duration_seconds=30.0, frame_rate=30)
    )
    for _ in range(500):
        result = await provider.poll(submission.prediction_id)
        if result.state is State.RUNNING and (result.progress or 0) > 0:
            break
        await asyncio.sleep(0.01)
    await provider.cancel(submission.prediction_id)
    result, _ = await _wait(provider, submission.prediction_id)
    assert result.state is State.CANCELED
    assert (result.progress or 0) < 0.9
    assert not any((provider.tmp_dir).glob("*.mp4"))
    await provider.cancel("local-unknown")  # ignored


async def test_cancel_before_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", render_workers=1, local_frame_rate=24)
    local = LocalProvider(settings, storage_tmp=tmp_path / "renders")
    try:
        busy = await local.submit(_request(resolution="512x512", duration_seconds=30.0))
        waiting = await local.submit(_request())
        await local.cancel(waiting.prediction_id)
        assert (await local.poll(waiting.prediction_id)).state is State.CANCELED
        await local.cancel(busy.prediction_id)
        assert (await _wait(local, busy.prediction_id))[0].state is State.CANCELED
    finally:
        await local.aclose()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"output_format": "mov"}, "mp4 or webm"),
        ({"resolution": "100x100"}, "resolution"),
        ({"duration_seconds": 31.0}, "Duration"),
        ({"duration_seconds": 0.5}, "Duration"),
        ({"prompt": "x" * 2001}, "2000"),
        ({"model": "sora"}, "model"),
        ({"frame_rate": 500}, "frame rate"),
    ],
)
async def test_bad_requests_are_permanent_errors(
    provider: LocalProvider, overrides: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.submit(_request(**overrides))
    assert not info.value.retryable
    assert info.value.code == "bad_request"
    assert fragment in info.value.message


async def test_broken_image_fails_permanently(provider: LocalProvider) -> None:
    image = InputImage(data=b"\x89PNG\r\n\x1a\nnope", content_type="image/png")
    submission = await provider.submit(_request(input_image=image, duration_seconds=1.0))
    result, _ = await _wait(provider, submission.prediction_id)
    assert result.state is State.FAILED
    assert result.error is not None and not result.error.retryable


async def test_download_over_limit_is_refused(provider: LocalProvider, tmp_path: Path) -> None:
    submission = await provider.submit(_request(duration_seconds=1.0))
    result, _ = await _wait(provider, submission.prediction_id)
    with pytest.raises(ProviderError) as info:
        await provider.download(result, tmp_path / "x.mp4", max_bytes=100)
    assert info.value.code == "too_large" and not info.value.retryable
    assert not (tmp_path / "x.mp4").exists()
    assert not _output(result).exists()


async def test_download_of_vanished_output_is_lost(provider: LocalProvider, tmp_path: Path) -> None:
    submission = await provider.submit(_request(duration_seconds=1.0))
    result, _ = await _wait(provider, submission.prediction_id)
    _output(result).unlink()
    with pytest.raises(PredictionLost):
        await provider.download(result, tmp_path / "x.mp4", max_bytes=10**9)


async def test_webhooks_are_rejected(provider: LocalProvider) -> None:
    with pytest.raises(WebhookRejected):
        await provider.parse_webhook({}, b"{}", now=0)


async def test_aclose_cancels_in_flight_renders(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", render_workers=1)
    local = LocalProvider(settings, storage_tmp=tmp_path / "renders")
    await local.submit(_request(resolution="512x512", duration_seconds=30.0))
    await local.submit(_request(resolution="512x512", duration_seconds=30.0))
    await asyncio.wait_for(local.aclose(), timeout=10)
    assert not any((tmp_path / "renders").glob("*"))
    with pytest.raises(ProviderError) as info:
        await local.submit(_request())
    assert info.value.retryable
