"""Board feeds: change messages coalesce into sequenced deltas; gaps and stale versions are handled."""

from __future__ import annotations

import pytest

from dashboards.feed import BoardFeed, Delta, accept_delta


def test_nothing_pending_flushes_nothing() -> None:
    """A new feed, or one with nothing received since the last flush, has no delta."""
    feed = BoardFeed("C01")
    assert feed.flush() is None
    assert feed.on_change(5, {"S1": 10})
    assert feed.flush() is not None
    assert feed.flush() is None


def test_changes_between_ticks_coalesce_into_one_delta() -> None:
    """Several changes become one delta with the latest absolute score per person and the right seq range."""
    feed = BoardFeed("C01")
    assert feed.on_change(5, {"S1": 10})
    assert feed.on_change(6, {"S2": 3, "S1": 12})
    assert feed.on_change(7, {"S1": 15})
    assert feed.flush() == Delta("C01", 4, 7, {"S1": 15, "S2": 3})
    assert feed.on_change(8, {"S3": "4"})
    assert feed.flush() == Delta("C01", 7, 8, {"S3": 4})
    assert (feed.version, feed.sent, feed.pending) == (8, 8, {})


def test_stale_versions_are_ignored() -> None:
    """A change at or below the version already held is accepted as known and changes nothing."""
    feed = BoardFeed("C01")
    feed.on_change(5, {"S1": 10})
    assert feed.on_change(5, {"S1": 99})
    assert feed.on_change(3, {"S9": 1})
    assert (feed.version, feed.pending) == (5, {"S1": 10})


def test_version_gap_needs_a_snapshot() -> None:
    """A change that skips a version returns False and is not applied."""
    feed = BoardFeed("C01")
    feed.on_change(5, {"S1": 10})
    assert feed.on_change(7, {"S1": 30}) is False
    assert (feed.version, feed.pending) == (5, {"S1": 10})


def test_snapshot_drops_redundant_pending_changes() -> None:
    """A snapshot at or past the held version clears pending changes and moves version and sent to it."""
    feed = BoardFeed("C01")
    feed.on_change(5, {"S1": 10})
    feed.on_change(6, {"S1": 11})
    feed.on_snapshot(9)
    assert (feed.version, feed.sent, feed.pending) == (9, 9, {})
    assert feed.flush() is None
    assert feed.on_change(10, {"S2": 1})
    assert feed.flush() == Delta("C01", 9, 10, {"S2": 1})


def test_older_snapshot_keeps_newer_pending_changes() -> None:
    """A snapshot older than the held version leaves the feed as it was."""
    feed = BoardFeed("C01")
    feed.on_change(3, {"a": 1})
    feed.on_change(4, {"a": 2})
    feed.on_snapshot(3)
    assert (feed.version, feed.sent, feed.pending) == (4, 2, {"a": 2})


def test_snapshot_first_sets_the_baseline() -> None:
    """A feed that starts from a snapshot accepts the next version and sends a delta from the snapshot."""
    feed = BoardFeed("C01")
    feed.on_snapshot(20)
    assert feed.on_change(21, {"S1": 7})
    assert feed.flush() == Delta("C01", 20, 21, {"S1": 7})


def test_delta_merge() -> None:
    """Merging keeps the earlier prev_seq, the later seq, and later scores win."""
    merged = Delta("C01", 1, 3, {"a": 1, "b": 2}).merge(Delta("C01", 3, 5, {"a": 9}))
    assert merged == Delta("C01", 1, 5, {"a": 9, "b": 2})


@pytest.mark.parametrize(
    ("client", "prev", "seq", "action"),
    [
        (5, 3, 5, "ignore"),  # nothing newer than the client has
        (5, 3, 4, "ignore"),
        (5, 5, 6, "apply"),  # the next delta
        (5, 4, 7, "apply"),  # overlaps: absolute scores make it safe
        (5, 6, 7, "resync"),  # client missed version 6
        (0, 0, 1, "apply"),
    ],
)
def test_accept_delta(client: int, prev: int, seq: int, action: str) -> None:
    """A client applies a delta with prev_seq <= its seq < delta seq, ignores old ones and resyncs on a gap."""
    assert accept_delta(client, prev, seq) == action
