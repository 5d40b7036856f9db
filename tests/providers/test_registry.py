"""build_providers / close_providers."""

from __future__ import annotations

from vidgen.providers.base import Provider, unavailable_reason
from vidgen.providers.registry import HTTP_PROVIDERS, build_providers, close_providers
from vidgen.providers.runway import RunwayProvider
from vidgen.settings import PROVIDER_NAMES, Settings

HTTP = list(HTTP_PROVIDERS)


async def test_builds_every_provider_in_order() -> None:
    settings = Settings(_env_file=None, runway_api_key="key_x", fal_api_key="k")  # type: ignore[call-arg]
    providers = build_providers(settings)
    try:
        assert list(providers) == ["local", *HTTP] == list(PROVIDER_NAMES)
        assert HTTP == ["runway", "replicate", "stability", "openai", "fal", "google", "luma"]
        assert all(isinstance(p, Provider) for p in providers.values())
        available = {name for name, p in providers.items() if p.available} - {"local"}
        assert available == {"runway", "fal"}
        clients = {id(p.client) for name, p in providers.items() if name in HTTP}  # type: ignore[attr-defined]
        assert len(clients) == len(HTTP)  # one client per provider
    finally:
        await close_providers(providers)
    assert all(p.client.is_closed for n, p in providers.items() if n in HTTP)  # type: ignore[attr-defined]


async def test_every_unavailable_provider_says_why() -> None:
    providers = build_providers(Settings(_env_file=None))  # type: ignore[call-arg]
    try:
        assert unavailable_reason(providers["local"]) is None
        for name in HTTP:
            reason = unavailable_reason(providers[name])
            assert reason, name
            expected = "VIDGEN_OPENAI_BASE_URL" if name == "openai" else "API_KEY"
            assert expected in reason, (name, reason)
    finally:
        await close_providers(providers)


async def test_extra_providers_are_added_or_replace() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    mine = RunwayProvider(Settings(_env_file=None, runway_api_key="key_y"))  # type: ignore[call-arg]
    providers = build_providers(settings, extra={"runway": mine, "other": mine})
    try:
        assert providers["runway"] is mine and providers["other"] is mine
    finally:
        await close_providers({k: v for k, v in providers.items() if k != "other"})


async def test_test_provider_only_when_enabled() -> None:
    off = build_providers(Settings(_env_file=None))  # type: ignore[call-arg]
    on = build_providers(Settings(_env_file=None, enable_test_provider=True))  # type: ignore[call-arg]
    try:
        assert "test" not in off
        assert list(on)[-1] == "test"
    finally:
        await close_providers(off)
        await close_providers(on)
