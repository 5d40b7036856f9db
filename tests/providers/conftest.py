"""Each HTTP adapter wired to its simulator over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from tests.simulators import (
    FalSimulator,
    OpenAISimulator,
    ReplicateSimulator,
    RunwaySimulator,
    Simulator,
    StabilitySimulator,
)
from tests.simulators.server import Switch, serve
from vidgen.providers.base import GenerationRequest, InputImage
from vidgen.providers.fal import FalProvider
from vidgen.providers.http import HttpProvider
from vidgen.providers.openai import OpenAIProvider
from vidgen.providers.replicate import ReplicateProvider
from vidgen.providers.runway import RunwayProvider
from vidgen.providers.stability import StabilityProvider
from vidgen.settings import Settings

# Keys in each provider's real shape, so scrubbing is tested on realistic values.
KEYS = {
    "runway": "key_" + "0123456789abcdef" * 8,
    "replicate": "r8_SimulatedReplicateToken0123456789",
    "stability": "sk-SimulatedStabilityKey0123456789",
    "openai": "sk-proj-SimulatedOpenAIKey0123456789",
    "fal": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:feedfacecafebeef0123456789abcdef",
}
WRONG_KEYS = {name: key[:-6] + "WRONG1" for name, key in KEYS.items()}
PROVIDERS = tuple(KEYS)
CLIENT_TIMEOUT = 1.0  # a "hang" in the simulator lasts longer than this (0.4 s: a
# connect to the local simulator timed out once under a loaded CI run)

SIMULATORS: dict[str, type[Simulator]] = {
    "runway": RunwaySimulator,
    "replicate": ReplicateSimulator,
    "stability": StabilitySimulator,
    "openai": OpenAISimulator,
    "fal": FalSimulator,
}
ADAPTERS: dict[str, type[HttpProvider]] = {
    "runway": RunwayProvider,
    "replicate": ReplicateProvider,
    "stability": StabilityProvider,
    "openai": OpenAIProvider,
    "fal": FalProvider,
}
REQUESTS: dict[str, dict[str, Any]] = {
    "runway": {"resolution": "1280x720", "duration_seconds": 5},
    "replicate": {"resolution": "1280x720", "duration_seconds": 6},
    "stability": {"resolution": "1024x576", "duration_seconds": 4},
    "openai": {"resolution": "1280x720", "duration_seconds": 4},
    "fal": {"resolution": "1280x720", "duration_seconds": 5},
}


def png(width: int = 320, height: int = 200) -> InputImage:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, format="PNG")
    return InputImage(data=out.getvalue(), content_type="image/png")


def provider_settings(name: str, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider_timeout_seconds": CLIENT_TIMEOUT,
        "runway_poll_seconds": 0.01,
        f"{name}_api_key": KEYS[name],
        f"{name}_base_url": base_url,
        "fal_jwks_url": f"{base_url}/.well-known/jwks.json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Harness:
    """One adapter talking to one simulator."""

    name: str
    sim: Simulator
    provider: Any
    base_url: str
    make: Callable[..., Any]

    def request(
        self, prompt: str = "a red fox running through snow", **kw: Any
    ) -> GenerationRequest:
        values: dict[str, Any] = {"prompt": prompt, "output_format": "mp4", **REQUESTS[self.name]}
        if self.name == "stability":
            values["input_image"] = png()
        values.update(kw)
        return GenerationRequest(**values)


@pytest.fixture
def make_sim() -> Callable[[str], Simulator]:
    def make(name: str, **kwargs: Any) -> Simulator:
        return SIMULATORS[name](api_key=KEYS[name], **kwargs)

    return make


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, tuple[Switch, str]]]:
    """One uvicorn per provider for the whole session; each test plugs in a fresh simulator."""
    with contextlib.ExitStack() as stack:
        running = {}
        for name in PROVIDERS:
            switch = Switch()
            running[name] = (switch, stack.enter_context(serve(switch)))
        yield running


@pytest.fixture
async def open_harness(
    servers: dict[str, tuple[Switch, str]],
) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await open_harness(name, sim=..., **settings_overrides)``."""
    stack: list[HttpProvider] = []

    async def open_(name: str, *, sim: Simulator | None = None, **overrides: Any) -> Harness:
        sim = sim or SIMULATORS[name](api_key=KEYS[name])
        sim.scenario.hang_seconds = CLIENT_TIMEOUT + 0.4
        switch, base_url = servers[name]
        switch.app = sim.app
        sim.base_url = base_url

        def make(**more: Any) -> Any:
            provider = ADAPTERS[name](provider_settings(name, base_url, **{**overrides, **more}))
            stack.append(provider)
            return provider

        return Harness(name=name, sim=sim, provider=make(), base_url=base_url, make=make)

    yield open_
    for provider in stack:
        await provider.aclose()


@pytest.fixture(params=PROVIDERS)
async def harness(request: pytest.FixtureRequest, open_harness: Callable[..., Any]) -> Harness:
    return await open_harness(request.param)
