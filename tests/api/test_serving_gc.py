"""The collector's set-up while an app serves (vidgen.web.app.serving_gc): start-up objects
frozen, a larger youngest generation, both undone when the last app stops; cycles made
while serving are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tests.conftest import SessionGc
from vidgen.web import app


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def no_app_serving(_cheap_per_test_costs: SessionGc) -> Iterator[None]:
    """The collector of a process where no app serves yet (the session holds an entry)."""
    with _cheap_per_test_costs.paused():
        yield


def test_serving_gc_sets_up_and_restores_the_collector(no_app_serving: None) -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with app.serving_gc():
        assert gc.get_threshold()[0] == max(before[0], app.GC_YOUNG_THRESHOLD)
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen
        with app.serving_gc():  # a second app in the same process (tests)
            assert gc.get_threshold()[0] == max(before[0], app.GC_YOUNG_THRESHOLD)
        assert gc.get_threshold()[0] == max(before[0], app.GC_YOUNG_THRESHOLD)
        assert gc.get_freeze_count() > frozen
        # A cycle made while serving is still found and freed.
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
