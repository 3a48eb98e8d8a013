"""The long-running processes' garbage-collector settings take effect, and cycles are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agents.gcpolicy import BATCH_THRESHOLD, GC_THRESHOLD, BetweenBatches, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds(restored_gc: None) -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_cycles_made_afterwards_are_still_collected(restored_gc: None) -> None:
    tune_gc()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    kept = [[] for _ in range(2 * GC_THRESHOLD[0])]  # enough live containers for a young collection to run
    assert gone() is None
    assert len(kept) == 2 * GC_THRESHOLD[0]


def test_between_batches_collects_young_then_middle_then_all(monkeypatch: pytest.MonkeyPatch) -> None:
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: collected.append(generation) or 0)
    collect = BetweenBatches(middle_every=3, full_every=6)
    for _ in range(12):
        collect()
    assert collected == [0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0, 2]


def test_between_batches_refuses_a_cadence_that_cannot_hold() -> None:
    with pytest.raises(ValueError, match="middle_every"):
        BetweenBatches(middle_every=0)
    with pytest.raises(ValueError, match="full_every"):
        BetweenBatches(middle_every=20, full_every=10)


def test_with_the_batch_threshold_a_batch_is_not_collected_until_it_is_over(restored_gc: None) -> None:
    """What the worker relies on: a batch's worth of live containers does not start a collection."""
    tune_gc(BATCH_THRESHOLD)
    before = gc.get_stats()[0]["collections"]
    batch = [{"n": n} for n in range(100_000)]
    assert gc.get_stats()[0]["collections"] == before
    del batch
    BetweenBatches()()
    assert gc.get_stats()[0]["collections"] == before + 1
