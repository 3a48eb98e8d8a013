"""The source time a board change may carry (``src``) through feeds and deltas; the fan-out benchmark's
kiosk plan and table."""

from __future__ import annotations

from collections import Counter

from config.directory import Directory
from dashboards.feed import BoardFeed, Delta
from pitstop.bench.fanout import PER_IP, VIEWS, default_procs, plan_kiosks, table


def test_a_delta_keeps_the_oldest_src_of_the_changes_it_coalesces() -> None:
    """src is the minimum over the pending changes that carry one; a flush starts afresh."""
    feed = BoardFeed("b")
    feed.on_change(1, {"S1": 1}, 1_700_000_000_500)
    feed.on_change(2, {"S1": 2})
    feed.on_change(3, {"S2": 1}, 1_700_000_000_400)
    assert feed.flush() == Delta("b", 0, 3, {"S1": 2, "S2": 1}, 1_700_000_000_400)
    feed.on_change(4, {"S1": 3})
    assert feed.flush() == Delta("b", 3, 4, {"S1": 3}, None)


def test_a_snapshot_drops_the_pending_src() -> None:
    feed = BoardFeed("b")
    feed.on_change(1, {"S1": 1}, 1_700_000_000_500)
    feed.on_snapshot(1)
    assert feed.pending_src is None
    feed.on_change(2, {"S1": 2})
    assert feed.flush() == Delta("b", 1, 2, {"S1": 2}, None)


def test_merged_deltas_keep_the_oldest_src() -> None:
    first = Delta("b", 1, 2, {"a": 1}, 900)
    assert first.merge(Delta("b", 2, 3, {"a": 2}, 800)).src == 800
    assert first.merge(Delta("b", 2, 3, {"a": 2})).src == 900
    assert Delta("b", 1, 2, {"a": 1}).merge(Delta("b", 2, 3, {"a": 2}, 700)).src == 700
    assert Delta("b", 1, 2, {"a": 1}).merge(Delta("b", 2, 3, {"a": 2})).src is None


def test_the_kiosk_plan_spreads_views_centres_and_source_addresses(directory: Directory) -> None:
    """Most kiosks on their centre's board, the rest on region and nation; every centre gets kiosks;
    no source address carries more than PER_IP of them; all on loopback, none on 127.0.0.1."""
    specs = plan_kiosks(directory, 10_000, "s" * 40)
    views = Counter(s.view for s in specs)
    for view, share in VIEWS:
        assert abs(views[view] / len(specs) - share / 100) < 0.02
    assert set(Counter(s.centre for s in specs)) == set(directory.centres)
    per_ip = Counter(s.local_ip for s in specs)
    assert max(per_ip.values()) <= PER_IP and "127.0.0.1" not in per_ip
    assert all(ip.startswith("127.0.0.") for ip in per_ip)
    assert len({s.token for s in specs}) == len(specs)  # one token per kiosk


def test_client_processes_grow_with_the_kiosks() -> None:
    assert default_procs(500) == 1
    assert default_procs(2000) == 2
    assert default_procs(10_000) == 4


def test_the_table_has_a_row_per_count() -> None:
    row = {
        "kiosks": 10,
        "connected": 10,
        "connect_s": 0.1,
        "connect_p99_ms": 5.0,
        "deltas": 3,
        "p50_ms": 40.0,
        "p95_ms": 80.0,
        "p99_ms": 90.0,
        "max_ms": 95.0,
        "src_p50_ms": None,
        "src_p99_ms": None,
        "gateway_rss_mb": 50.0,
        "gateway_cpu_pct": 3.0,
        "load_cpu_pct": 1.0,
        "procs": 1,
        "dropped": 0,
    }
    lines = table([row, {**row, "kiosks": 20, "src_p50_ms": 41.0, "src_p99_ms": 91.0}]).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 10 |") and "| 41.0/91.0 |" in lines[3]
