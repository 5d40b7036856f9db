"""Small helpers shared by the provider tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import httpx

from vidgen.providers.base import PollResult, Provider, State

TERMINAL = (State.SUCCEEDED, State.FAILED, State.CANCELED)


async def poll_to_end(
    provider: Provider, prediction_id: str, *, max_polls: int = 30
) -> tuple[list[PollResult], PollResult]:
    """Poll until a terminal state (no sleeping: simulators advance per poll)."""
    seen: list[PollResult] = []
    for _ in range(max_polls):
        result = await provider.poll(prediction_id)
        seen.append(result)
        if result.state in TERMINAL:
            return seen, result
    raise AssertionError(f"still {seen[-1].state} after {max_polls} polls")


def assert_playable(path: Path) -> None:
    """The file is a real video: a frame decodes."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.width > 0 and frame.height > 0


async def send_raw(provider: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A request straight to a simulator with the adapter's own client (its key, version
    headers): how a test shows what the simulator itself refuses, past the adapter's checks."""
    return await provider.client.request(method, url, **kwargs)
