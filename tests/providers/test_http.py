"""The shared client: explicit timeouts and limits, User-Agent, host-scoped credentials."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.providers.conftest import KEYS, provider_settings
from tests.providers.helpers import poll_to_end
from tests.simulators.common import standard_webhook_headers
from tests.simulators.server import aserve
from vidgen import __version__
from vidgen.providers.base import PollResult, PredictionLost, ProviderError, State, WebhookRejected
from vidgen.providers.http import build_client, verify_standard_webhook
from vidgen.providers.runway import RunwayProvider
from vidgen.providers.transport import PooledTransport


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.headers))


async def test_client_is_configured_explicitly() -> None:
    settings = provider_settings("runway", "http://127.0.0.1:1", provider_max_connections=7)
    client = build_client(settings, "runway")
    try:
        assert client.timeout.read == settings.provider_timeout_seconds
        assert client.timeout.connect == min(settings.provider_timeout_seconds, 10.0)
        assert client.headers["user-agent"] == f"vidgen/{__version__}"
        assert str(client.base_url).rstrip("/") == "http://127.0.0.1:1"
        pool = client._transport  # type: ignore[attr-defined]
        assert isinstance(pool, PooledTransport)
        assert pool.max_connections == 7
    finally:
        await client.aclose()


async def test_clients_share_one_verifying_tls_context() -> None:
    """Each client used to parse the CA bundle again (about 20 ms and some MiB apiece)."""
    clients = [
        build_client(provider_settings(name, "https://127.0.0.1:1"), name)
        for name in ("runway", "replicate")
    ]
    try:
        contexts = [c._transport.ssl_context for c in clients]  # type: ignore[attr-defined]
        assert contexts[0] is contexts[1]
        assert contexts[0].verify_mode is ssl.CERT_REQUIRED
        assert contexts[0].check_hostname
        assert contexts[0].cert_store_stats()["x509_ca"] > 0
    finally:
        for client in clients:
            await client.aclose()


async def test_key_goes_only_to_the_providers_own_host() -> None:
    app = Starlette(routes=[Route("/echo", echo)])
    async with aserve(app) as url:
        port = url.rsplit(":", 1)[1]
        provider = RunwayProvider(provider_settings("runway", url))
        try:
            own = (await provider.client.get(f"{url}/echo")).json()
            other = (await provider.client.get(f"http://localhost:{port}/echo")).json()
        finally:
            await provider.aclose()
    assert own["authorization"] == f"Bearer {KEYS['runway']}"
    assert own["x-runway-version"] == "2024-11-06"
    assert "authorization" not in other  # e.g. an output file on a CDN


async def test_downloads_have_their_own_connections(tmp_path: Path) -> None:
    """Outputs come from a file host: a download never waits for one of the API's
    connections, so when many jobs end together their final polls do not queue behind the
    downloads."""

    async def video(request: Request) -> Response:
        return Response(b"v" * 100, media_type="video/mp4")

    app = Starlette(routes=[Route("/files/out.mp4", video)])
    async with aserve(app) as url:
        settings = provider_settings(
            "runway", url, provider_max_connections=1, provider_download_connections=3
        )
        provider = RunwayProvider(settings)
        try:
            assert provider.download_client is not provider.client
            pool = provider.download_client._transport  # type: ignore[attr-defined]
            assert pool.max_connections == 3
            result = PollResult(state=State.SUCCEEDED, output_url=f"{url}/files/out.mp4")
            # Every API connection busy: the download goes all the same.
            async with provider._gate.turn(), asyncio.timeout(10):
                kind = await provider.download(result, tmp_path / "out.mp4", max_bytes=1000)
        finally:
            await provider.aclose()
    assert kind == "video/mp4"
    assert (tmp_path / "out.mp4").read_bytes() == b"v" * 100


# --- webhook signatures: garbage is a rejection, never a crash --------------------------------

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


def verify(headers: dict[str, str], body: bytes, now: float) -> str:
    return verify_standard_webhook(
        headers, body, secret=SECRET, now=now, tolerance=300, provider="replicate"
    )


def test_standard_webhook_rejects_unreadable_headers() -> None:
    body = b'{"id": "p1"}'
    now = int(time.time())
    good = standard_webhook_headers(SECRET, body, msg_id="msg_1", timestamp=now)
    assert verify(good, body, now) == "msg_1"
    signature = good["webhook-signature"]
    hostile = [
        {**good, "webhook-signature": "v1,\u00e9" + signature[4:]},  # non-ASCII
        {**good, "webhook-signature": "v1,\u00e9 " + signature},  # garbage entry first: ok
        {**good, "webhook-timestamp": "9" * 400},  # would overflow float arithmetic
        {**good, "webhook-timestamp": "\u0661\u0662"},  # digits int() accepts
        {**good, "webhook-timestamp": "1_700_000_000"},
    ]
    with pytest.raises(WebhookRejected):
        verify(hostile[0], body, now)
    assert verify(hostile[1], body, now) == "msg_1"  # the valid entry still matches
    for headers in hostile[2:]:
        with pytest.raises(WebhookRejected):
            verify(headers, body, now)


# --- downloads: a file host refusing an output URL ---------------------------------------------


@pytest.mark.parametrize("kind", ["expired", "gone"])
async def test_file_host_refusal_is_a_retryable_expired_output(
    open_harness: Callable[..., Any], tmp_path: Path, kind: str
) -> None:
    fal = await open_harness("fal")
    fal.sim.file_host = "localhost"  # outputs on a CDN, as in production
    submission = await fal.provider.submit(fal.request())
    _, final = await poll_to_end(fal.provider, submission.prediction_id)
    assert final.output_url and "//localhost:" in final.output_url
    fal.sim.scenario.fail_next("download", kind)
    with pytest.raises(ProviderError) as caught:
        await fal.provider.download(final, tmp_path / "out.mp4", max_bytes=10**8)
    error = caught.value
    assert (error.retryable, error.code) == (True, "output_expired")
    assert not isinstance(error, PredictionLost)  # the prediction is fine: no new one
    assert "no longer available" in error.message and "API_KEY" not in error.message
    assert final.output_url not in error.message  # a signed URL is a credential
    assert not (tmp_path / "out.mp4").exists()
    await fal.provider.download(final, tmp_path / "out.mp4", max_bytes=10**8)  # fresh: fine


async def test_the_apis_own_refusals_keep_their_meaning(
    open_harness: Callable[..., Any], tmp_path: Path
) -> None:
    """OpenAI-compatible output is fetched from the API's own ``/content``: a 404 there is a
    video the API no longer knows, not an expired file URL."""
    openai = await open_harness("openai")
    submission = await openai.provider.submit(openai.request())
    _, final = await poll_to_end(openai.provider, submission.prediction_id)
    openai.sim.jobs.clear()  # the video is gone (deleted, or past its expiry)
    with pytest.raises(PredictionLost):
        await openai.provider.download(final, tmp_path / "out.mp4", max_bytes=10**8)
