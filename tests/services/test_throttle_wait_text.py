"""The wait a RATE_LIMITED message names, in words: "1 second", never "1 seconds" (or
"0 seconds" for a wait under one)."""

from __future__ import annotations

import pytest

from vidgen.services.throttle import _wait_text


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.0, "1 second"),
        (0.2, "1 second"),
        (1.0, "1 second"),
        (1.01, "2 seconds"),
        (59.5, "60 seconds"),
        (119.5, "120 seconds"),
        (120.0, "2 minutes"),
        (900.0, "15 minutes"),
        (901.0, "16 minutes"),
    ],
)
def test_the_wait_is_said_in_words(seconds: float, words: str) -> None:
    assert _wait_text(seconds) == words
