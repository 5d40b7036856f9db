"""Building every provider once per process, and closing them.

Order: local, runway, replicate, stability, openai, fal, google, luma (then ``test`` when
``enable_test_provider``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from vidgen.providers.base import Provider
from vidgen.providers.fal import FalProvider
from vidgen.providers.google import GoogleProvider
from vidgen.providers.local import LocalProvider
from vidgen.providers.luma import LumaProvider
from vidgen.providers.openai import OpenAIProvider
from vidgen.providers.replicate import ReplicateProvider
from vidgen.providers.runway import RunwayProvider
from vidgen.providers.stability import StabilityProvider
from vidgen.providers.testing import TestProvider
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

HTTP_PROVIDERS = {
    "runway": RunwayProvider,
    "replicate": ReplicateProvider,
    "stability": StabilityProvider,
    "openai": OpenAIProvider,
    "fal": FalProvider,
    "google": GoogleProvider,
    "luma": LumaProvider,
}


def build_providers(
    settings: Settings, *, extra: Mapping[str, Provider] | None = None
) -> dict[str, Provider]:
    """Every provider by name, each HTTP adapter with its own shared client.

    Args:
        settings: The process settings.
        extra: Further providers (or replacements, by name), e.g. a test's simulator-backed one.

    Returns:
        Providers in listing order; unusable ones are present with ``available`` False.
    """
    providers: dict[str, Provider] = {"local": LocalProvider(settings)}
    for name, cls in HTTP_PROVIDERS.items():
        providers[name] = cls(settings)
    if settings.enable_test_provider:
        providers["test"] = TestProvider(
            tolerance_seconds=settings.webhook_tolerance_seconds,
            submissions_log=settings.test_provider_log,
        )
    for name, provider in (extra or {}).items():
        providers[name] = provider
    return providers


async def close_providers(providers: Mapping[str, Provider]) -> None:
    """Close every provider's client; one failing close does not stop the others."""
    results = await asyncio.gather(
        *(provider.aclose() for provider in providers.values()), return_exceptions=True
    )
    for name, result in zip(providers, results, strict=True):
        if isinstance(result, Exception):
            logger.warning(
                "closing provider failed",
                extra={"action": "provider.close", "provider": name},
                exc_info=result,
            )
