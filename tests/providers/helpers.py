"""Small helpers shared by the provider tests."""

from __future__ import annotations

from pathlib import Path

import av

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
