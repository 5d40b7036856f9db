"""The estimate of a prediction's end from its progress reports (no database)."""

from __future__ import annotations

import pytest

from vidgen.jobs.finish_estimate import FinishEstimate


def _reports(estimate: FinishEstimate, *points: tuple[float, float]) -> None:
    for at, progress in points:
        estimate.observe(at + 0.05, progress)


def test_one_report_or_too_little_progress_says_nothing() -> None:
    estimate = FinishEstimate()
    assert estimate.seconds_left(0.0) is None
    estimate.observe(5.1, None)
    estimate.observe(5.1, 0.0)  # queued: no progress yet
    _reports(estimate, (10.0, 0.10))
    assert estimate.seconds_left(10.1) is None
    _reports(estimate, (11.0, 0.12))  # 0.02 of progress: too little to go by
    assert estimate.seconds_left(11.1) is None


@pytest.mark.parametrize("offset", [0.0, 1.5, 4.0])
def test_the_pace_between_two_polls_needs_no_start_time(offset: float) -> None:
    # A prediction of 60 s created ``offset`` seconds before the job began waiting (its
    # claim and its id's write): progress rounded to two decimals, as Runway's.
    def progress(t: float) -> float:
        return round((t + offset) / 60.0, 2)

    estimate = FinishEstimate()
    for t in (5.0, 12.5, 23.7, 40.6 - offset):
        estimate.observe(t + 0.05, progress(t))
    now = 40.7 - offset
    end = 60.0 - offset
    poll_at = now + estimate.seconds_left(now)
    assert end <= poll_at <= end + 1.5  # never before the end, at most 1.5 s after


def test_a_provider_starting_over_is_measured_from_its_new_start() -> None:
    estimate = FinishEstimate()
    _reports(estimate, (5.0, 0.5), (10.0, 0.9), (15.0, 0.1), (25.0, 0.3))
    left = estimate.seconds_left(25.05)
    assert left is not None and 35.0 <= left <= 40.0  # 0.02/s from 0.1 at 15 s


def test_done_by_its_progress_but_still_running_polls_now() -> None:
    estimate = FinishEstimate()
    _reports(estimate, (5.0, 0.5), (10.0, 1.0))
    assert estimate.seconds_left(30.0) == 0.0
