"""The micro-benchmark runs (small) and reports every step; it asserts no times."""

from __future__ import annotations

from pitstop.bench.micro import run_micro, table


def test_micro_benchmark_reports_each_step() -> None:
    report = run_micro(events=300, runs=1)
    assert report["events"] == 300
    assert report["awards"] > 0
    assert set(report["us"]) == {"decode", "score", "ledger_encode", "ledger_decode", "league_payload"}
    assert all(us > 0 for us in report["us"].values())
    assert "| score |" in table(report)
