"""A person's own standing (dashboards.me): today and month points, rank with ties, neighbours, next
tier, and KPIs against targets (lower is better for turnaround and repeat complaints)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from config.programme import Tier
from dashboards.me import summary

IST = ZoneInfo("Asia/Kolkata")
TIERS = (Tier("Silver", 400, 300, ()), Tier("Gold", 900, 700, ()))
ROWS = [("S1", 950), ("S2", 500), ("S3", 500), ("S4", 420), ("S5", 100), ("S6", 90)]


def test_standing_today_month_rank_neighbours_and_tier() -> None:
    recent = [
        {"type": "award", "points": 25, "occurred_at": "2026-12-01T10:00:00+05:30"},
        {"type": "retraction", "points": -10, "occurred_at": "2026-12-01T11:00:00+05:30"},
        {"type": "refusal", "points": 0, "occurred_at": "2026-12-01T11:30:00+05:30"},
        {"type": "award", "points": 40, "occurred_at": "2026-11-30T23:59:00+05:30"},  # yesterday, local time
    ]
    me = summary(
        "S3",
        rows=ROWS,
        names={"S3": "Simran"},
        recent=recent,
        today=date(2026, 12, 1),
        zone=IST,
        tiers=TIERS,
        kpis={},
        targets={},
    )
    assert (me["month_points"], me["rank"], me["of"]) == (500, 2, 6)  # tied with S2 at 500: both second
    assert [n["staff_id"] for n in me["neighbours"]] == ["S1", "S2", "S3", "S4", "S5"]
    assert me["today_points"] == 15 and me["today_complete"] is True
    assert me["tier"] == "Silver" and me["next_tier"] == {"name": "Gold", "at": 900, "left": 400}


def test_someone_without_points_yet_and_a_full_recent_list() -> None:
    full = [{"type": "award", "points": 1, "occurred_at": "2026-12-01T09:00:00+05:30"}] * 50
    me = summary(
        "S9", rows=ROWS, names={}, recent=full, today=date(2026, 12, 1), zone=IST, tiers=TIERS, kpis={}, targets={}
    )
    assert (me["month_points"], me["rank"], me["neighbours"]) == (0, None, [])
    assert me["today_points"] == 50 and me["today_complete"] is False  # at least 50: the list holds no more
    assert me["tier"] is None and me["next_tier"]["left"] == 400


def test_kpis_against_targets() -> None:
    me = summary(
        "S1",
        rows=ROWS,
        names={},
        recent=[],
        today=date(2026, 12, 1),
        zone=IST,
        tiers=TIERS,
        kpis={"csat_mean": 4.6, "first_time_fix_rate": 0.8, "turnaround_mean": 190.0, "on_time_rate": None},
        targets={"csat_mean": 4.5, "first_time_fix_rate": 0.9, "turnaround_mean": 240, "on_time_rate": 0.85},
    )
    assert [(k["metric"], k["met"]) for k in me["kpis"]] == [
        ("csat_mean", True),
        ("first_time_fix_rate", False),
        ("turnaround_mean", True),  # lower is better
        ("on_time_rate", None),  # nothing measured yet this month
    ]
    assert me["next_tier"] is None and me["tier"] == "Gold"
