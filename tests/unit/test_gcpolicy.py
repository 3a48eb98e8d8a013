"""The long-running processes' garbage-collector settings take effect, and cycles are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agents.gcpolicy import GC_THRESHOLD, tune_gc


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
