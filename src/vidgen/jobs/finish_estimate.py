"""When will a remote prediction be done? An estimate from the provider's progress reports,
so that a job's last poll lands just after the end instead of up to a floor later.

A provider that reports progress (Runway's ``progress`` 0-1, Sora's percentage, ...) says how
far a prediction got, not when it started: the job only knows when it submitted it or, for
a resumed prediction, when it began waiting, and the submission's own write and the claim
put a second or more between the two under load. An estimate from "progress over the time
since we started waiting" is therefore early by up to that gap, and an early last poll costs
a whole poll floor (5 s at Runway) of lateness. :class:`FinishEstimate` uses the pace
BETWEEN two of its own polls instead, which needs no start time:

    pace = (p_last - p_first) / (t_last - t_first)
    done at  t_last + (1 - p_last) / pace

Each report is dated when its answer arrived. A poll may wait its turn for a connection
(submissions go first, see :class:`vidgen.providers.http.Gate`) for longer than the
provider takes to answer, so the time it was sent says little about when the provider
looked; the answer's arrival is late by the answer's own way back, alike at both ends of
the span. The aim adds the reports' resolution (a percentage, or two decimals: 0.01 of
progress over the span, half of it at the last report) and a margin for the difference
between those ways back. Progress that is not linear makes any estimate wrong; then an
early poll waits the provider's floor, as it would without an estimate.
"""

from __future__ import annotations

RESOLUTION = 0.01  # how finely providers report progress (a percentage, two decimals)
MIN_SPAN = 0.05  # less progress than this between two reports predicts nothing
MARGIN_SECONDS = 0.25  # after the estimated end: the answers' ways back differ


class FinishEstimate:
    """Progress reports of one prediction over time (the event loop's clock) → how long
    until it is done, or None when they say too little."""

    def __init__(self) -> None:
        self._first: tuple[float, float] | None = None  # (answered, progress)
        self._last: tuple[float, float] | None = None

    def observe(self, answered: float, progress: float | None) -> None:
        """A poll's answer arrived at ``answered`` with ``progress`` (0-1)."""
        if progress is None or progress <= 0.0:
            return
        if self._first is None or progress < self._first[1]:
            # The first report of progress, or the provider started over: measure from here.
            self._first = (answered, progress)
        self._last = (answered, progress)

    def seconds_left(self, now: float) -> float | None:
        """Seconds from ``now`` until the last poll should be sent (the estimated end, its
        uncertainty and the margin), at least 0; None without two reports far enough
        apart."""
        if self._first is None or self._last is None:
            return None
        (t0, p0), (t1, p1) = self._first, self._last
        span, elapsed = p1 - p0, t1 - t0
        if span < MIN_SPAN or elapsed <= 0.0:
            return None
        pace = span / elapsed  # progress per second
        left = (1.0 - p1) / pace  # from the last report
        uncertainty = left * (RESOLUTION / span) + (RESOLUTION / 2) / pace
        return max(0.0, t1 + left + uncertainty + MARGIN_SECONDS - now)
