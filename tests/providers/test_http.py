"""The shared client: explicit timeouts and limits, User-Agent, host-scoped credentials."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.providers.conftest import KEYS, provider_settings
from tests.simulators.server import aserve
from vidgen import __version__
from vidgen.providers.http import build_client
from vidgen.providers.runway import RunwayProvider


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
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 7
    finally:
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
