"""Each HTTP adapter wired to its simulator over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from tests.simulators.common import Simulator
from tests.simulators.server import Switch, serve
from tests.simulators.vendors import CLIENT_TIMEOUT, NAMES, VENDORS, adapter_settings
from vidgen.providers.base import GenerationRequest, InputImage
from vidgen.providers.http import HttpProvider
from vidgen.providers.registry import HTTP_PROVIDERS

# Keys in each provider's real shape, so scrubbing is tested on realistic values.
KEYS = {name: vendor.key for name, vendor in VENDORS.items()}
WRONG_KEYS = {name: key[:-6] + "WRONG1" for name, key in KEYS.items()}
PROVIDERS = NAMES
ADAPTERS: dict[str, type[HttpProvider]] = dict(HTTP_PROVIDERS)


def png(width: int = 320, height: int = 200) -> InputImage:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, format="PNG")
    return InputImage(data=out.getvalue(), content_type="image/png")


provider_settings = adapter_settings


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
        vendor = VENDORS[self.name]
        values: dict[str, Any] = {
            "prompt": prompt,
            "output_format": "mp4",
            "resolution": vendor.resolution,
            "duration_seconds": vendor.duration_seconds,
        }
        if not vendor.text_to_video:
            values["input_image"] = png()
        values.update(kw)
        return GenerationRequest(**values)


@pytest.fixture
def make_sim() -> Callable[[str], Simulator]:
    def make(name: str, **kwargs: Any) -> Simulator:
        return VENDORS[name].simulator_for(**kwargs)

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
        sim = sim or VENDORS[name].simulator_for()
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
