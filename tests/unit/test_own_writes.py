"""The score step's memory of its own league writes, which the project step checks instead of applying."""

from __future__ import annotations

from agents.worker import OwnWrites
from state.league import AppliedEntry, LedgerEntry


def _entry(partition: int, offset: int) -> LedgerEntry:
    return LedgerEntry(partition, offset, {"award_id": f"a{offset}", "season": "2026-12"})


def test_a_record_is_taken_once_at_its_place_with_its_bytes() -> None:
    own = OwnWrites()
    own.add(_entry(0, 5), b"five")
    own.add(_entry(0, 6), b"six")
    assert own.take(0, 5, b"five", 123) == AppliedEntry(0, 5, "a5", "2026-12", b"five", 123)
    assert own.take(0, 5, b"five", 123) is None  # taken already
    assert own.take(1, 6, b"six", None) is None  # another partition
    assert own.size == 1


def test_other_bytes_at_the_place_are_not_taken_and_passed_places_are_forgotten() -> None:
    own = OwnWrites()
    for offset in (3, 4, 7):
        own.add(_entry(2, offset), f"r{offset}".encode())
    assert own.take(2, 4, b"something else", None) is None  # offset 3 passed, 4 does not match
    assert own.size == 1
    assert own.take(2, 8, b"r7", None) is None and own.size == 0


def test_it_is_bounded_and_forgets_partitions() -> None:
    own = OwnWrites(limit=2)
    for offset in range(4):
        own.add(_entry(0, offset), b"x")
    assert own.size == 2
    own.add(_entry(1, 0), b"y")
    own.forget([0])
    assert own.size == 0 and own.take(0, 0, b"x", None) is None
