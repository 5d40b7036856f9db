"""Local simulators of the providers' documented HTTP APIs (see docs/providers.md).

Each is a small Starlette app with scriptable behaviour; run one with
:func:`tests.simulators.server.serve` (or ``aserve``) on a free port. The table of vendors
the tests drive is :mod:`tests.simulators.vendors`.
"""

from tests.simulators.common import Scenario, Simulator
from tests.simulators.fal import FalSimulator
from tests.simulators.google import GoogleSimulator
from tests.simulators.luma import LumaSimulator
from tests.simulators.openai import OpenAISimulator
from tests.simulators.replicate import ReplicateSimulator
from tests.simulators.runway import RunwaySimulator
from tests.simulators.stability import StabilitySimulator

__all__ = [
    "FalSimulator",
    "GoogleSimulator",
    "LumaSimulator",
    "OpenAISimulator",
    "ReplicateSimulator",
    "RunwaySimulator",
    "Scenario",
    "Simulator",
    "StabilitySimulator",
]
