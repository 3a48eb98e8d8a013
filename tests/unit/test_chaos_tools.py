"""The pure parts of the chaos harness: the G2 step plan and the G5 leak finder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pitstop.fuzz import find_planted
from pitstop.rebalance import FREEZE_ATTEMPTS, Feed, plan_steps, refused_commits


def test_g2_plan_alternates_workers_and_spreads_bounces() -> None:
    """10 stop/start steps alternate a, a, b, b...; 4 bounces alternate SIGTERM/SIGKILL; one freeze after
    the first restart (both workers in the group)."""
    steps = plan_steps(10, 4)
    moves = [(s.action, s.worker) for s in steps if s.action in ("stop", "start")]
    assert moves == [("stop", "a"), ("start", "a"), ("stop", "b"), ("start", "b")] * 2 + [("stop", "a"), ("start", "a")]
    assert [s.action for s in steps if s.action.startswith("bounce")] == [
        "bounce-term",
        "bounce-kill",
        "bounce-term",
        "bounce-kill",
    ]
    actions = [s.action for s in steps]
    assert actions.count("freeze") == 1 and actions.index("freeze") == 2
    assert actions[-1] != "stop"  # never ends with a worker down


def test_g2_feed_holds_back_a_share_per_freeze_attempt_and_loses_nothing() -> None:
    """The freeze's events come from the end of the plan, one share per attempt; main stream plus shares
    is the plan, in order, so the oracle's expectations do not change."""
    records = [("t", str(i).encode(), b"v") for i in range(1001)]
    feed, main = Feed.hold_back("localhost:9092", records, rate=100.0)
    assert len(feed.shares) == FREEZE_ATTEMPTS
    assert main + [r for share in feed.shares for r in share] == records
    assert 200 <= sum(map(len, feed.shares)) <= 300
    tiny, rest = Feed.hold_back("localhost:9092", records[:2], rate=100.0)
    assert rest + [r for share in tiny.shares for r in share] == records[:2]


def test_refused_commits_are_counted_in_their_time_window(tmp_path: Path) -> None:
    """Only coordinator refusals inside the window count; a commit lost to a broker that is down does not."""
    log = tmp_path / "worker.log"
    log.write_text(
        "[2026-11-23 20:56:48,380] [1] [ERROR] OffsetCommit failed for group g due to group error "
        "([Error 25] UnknownMemberIdError: g), will rejoin\n"
        "[2026-11-23 20:56:49,375] [1] [ERROR] OffsetCommit failed for group g due to group error "
        "([Error 22] IllegalGenerationError: g), will rejoin\n"
        "[2026-11-23 20:56:50,000] [1] [ERROR] Error sending OffsetCommitRequest to node 1 [KafkaConnectionError]\n"
        "[2026-11-23 21:30:00,000] [1] [ERROR] OffsetCommit failed for group g due to group error "
        "([Error 27] RebalanceInProgressError: g), will rejoin\n"
    )
    start = time.mktime(time.strptime("2026-11-23 20:56:48", "%Y-%m-%d %H:%M:%S"))
    assert refused_commits(log, start, start + 15) == 2
    assert refused_commits(log, 0, start + 7200) == 3


def test_find_planted_sees_numbers_through_separators_but_not_across_lines() -> None:
    planted = {"9876543210", "7012345678"}
    assert find_planted("call +91 98765 43210 now", planted) == {"9876543210"}
    assert find_planted("x 70123-45678.", planted) == {"7012345678"}
    assert find_planted("98765\n43210", planted) == set()
    assert find_planted("[redacted] 1763913456789", planted) == set()


def test_kafka_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with '-' is read by the storage tool as an option; such draws are redrawn."""
    import uuid

    from pitstop.apache_kafka import _random_cluster_id

    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x00" * 16)])  # '-' first, then 'A'
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert _random_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
