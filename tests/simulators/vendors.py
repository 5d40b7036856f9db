"""The one table of the HTTP providers the tests drive against simulators.

Per vendor: its simulator, a key in the vendor's real shape (so the scrubbing of messages is
tested on realistic values), a request it accepts, and what it offers (a cancel route,
callbacks). tests/providers, tests/jobs and tests/e2e all read it, so a new provider is one
row here and one simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.simulators.common import Simulator
from tests.simulators.fal import FalSimulator
from tests.simulators.google import GoogleSimulator
from tests.simulators.luma import LumaSimulator
from tests.simulators.openai import SORA, OpenAISimulator
from tests.simulators.replicate import ReplicateSimulator
from tests.simulators.runway import RunwaySimulator
from tests.simulators.stability import StabilitySimulator
from vidgen.settings import Settings

# VIDGEN_OPENAI_MODELS for a gateway that routes Sora (the example in docs/providers.md).
SORA_MODELS = {
    name: {"sizes": list(sizes), "seconds": [int(s) for s in seconds]}
    for name, (sizes, seconds) in SORA.items()
}


@dataclass(frozen=True)
class Vendor:
    """One HTTP provider as the tests see it.

    ``cancel_route``: the (method, path with ``{id}``) a cancel must reach; None: the vendor
    has no cancel. ``callbacks``: it POSTs status callbacks to the app; ``per_request``: the
    callback URL goes with each submission (OpenAI's is configured per project).
    ``rejected_key_status``: what it answers a wrong key (Google: 400, not 401).
    """

    name: str
    simulator: type[Simulator]
    key: str
    resolution: str
    duration_seconds: float
    cancel_route: tuple[str, str] | None = None
    callbacks: bool = False
    per_request: bool = False
    takes_prompt: bool = True
    text_to_video: bool = True
    image_by_url_only: bool = False
    reports_progress: bool = False
    # Its status tells queued from running (Stability's 202 and Google's operation do not).
    shows_queue: bool = True
    rejected_key_status: int = 401
    settings: Mapping[str, Any] = field(default_factory=dict)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        """The settings that point this vendor's adapter at a simulator on ``base_url``."""
        values = {
            f"{self.name}_api_key": self.key,
            f"{self.name}_base_url": base_url,
            **self.settings,
        }
        if self.name == "fal":
            values["fal_jwks_url"] = f"{base_url}/.well-known/jwks.json"
        return values

    def simulator_for(self, **kwargs: Any) -> Simulator:
        return self.simulator(**{"api_key": self.key, **kwargs})


VENDORS: dict[str, Vendor] = {
    vendor.name: vendor
    for vendor in (
        Vendor(
            name="runway",
            simulator=RunwaySimulator,
            key="key_" + "0123456789abcdef" * 8,
            resolution="1280x720",
            duration_seconds=5,
            cancel_route=("DELETE", "/v1/tasks/{id}"),
            reports_progress=True,
        ),
        Vendor(
            name="replicate",
            simulator=ReplicateSimulator,
            key="r8_SimulatedReplicateToken0123456789",
            resolution="1280x720",
            duration_seconds=6,
            cancel_route=("POST", "/v1/predictions/{id}/cancel"),
            callbacks=True,
            per_request=True,
            reports_progress=True,
        ),
        Vendor(
            name="stability",
            simulator=StabilitySimulator,
            key="sk-SimulatedStabilityKey0123456789",
            resolution="1024x576",
            duration_seconds=4,
            takes_prompt=False,
            text_to_video=False,
            shows_queue=False,
        ),
        Vendor(
            name="openai",
            simulator=OpenAISimulator,
            key="sk-proj-SimulatedOpenAIKey0123456789",
            resolution="1280x720",
            duration_seconds=4,
            cancel_route=("DELETE", "/v1/videos/{id}"),
            callbacks=True,
            reports_progress=True,
            settings={"openai_models": SORA_MODELS},
        ),
        Vendor(
            name="fal",
            simulator=FalSimulator,
            key="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:feedfacecafebeef0123456789abcdef",
            resolution="1280x720",
            duration_seconds=5,
            cancel_route=("PUT", "/fal-ai/kling-video/requests/{id}/cancel"),
            callbacks=True,
            per_request=True,
        ),
        Vendor(
            name="google",
            simulator=GoogleSimulator,
            key="AIzaSyD-SimulatedGoogleKey0123456789ab",
            resolution="1280x720",
            duration_seconds=8,
            shows_queue=False,
            rejected_key_status=400,
        ),
        Vendor(
            name="luma",
            simulator=LumaSimulator,
            key="luma-0123456789abcdef0123456789abcdef0123456789abcdef",
            resolution="1280x720",
            duration_seconds=5,
            cancel_route=("DELETE", "/v1/generations/{id}"),
            callbacks=True,
            per_request=True,
            image_by_url_only=True,
        ),
    )
}
NAMES = tuple(VENDORS)
CALLBACK_NAMES = tuple(name for name, vendor in VENDORS.items() if vendor.callbacks)
# The adapters' client timeout in tests: a simulated "hang" outlasts it (0.4 s was too short:
# a connect to the local simulator timed out once under a loaded CI run).
CLIENT_TIMEOUT = 1.0


def adapter_settings(name: str, base_url: str, **overrides: Any) -> Settings:
    """Settings with the ``name`` adapter pointed at a simulator on ``base_url`` (a short
    client timeout, Runway's poll floor lowered), plus ``overrides``."""
    values: dict[str, Any] = {
        "provider_timeout_seconds": CLIENT_TIMEOUT,
        "runway_poll_seconds": 0.01,
        **VENDORS[name].settings_for(base_url),
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
