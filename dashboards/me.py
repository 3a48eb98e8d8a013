"""What a person's own page shows about them (the ``me`` message), from data the gateway reads:
points today and this month, rank and neighbours at their centre, progress to the next tier, and their
KPIs this month against their role's targets. Pure: unit-tested on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from config.programme import Tier
from streams.contract import KPI_METRICS

LOWER_IS_BETTER = frozenset({"turnaround_mean", "turnaround_p90", "repeat_complaints", "repeat_complaint_rate"})
POINT_KINDS = ("award", "retraction", "correction")  # the entries that move points (not caps or refusals)


def summary(
    staff_id: str,
    *,
    rows: Sequence[tuple[str, int]],
    names: Mapping[str, str],
    recent: Sequence[Mapping[str, Any]],
    today: date,
    zone: ZoneInfo,
    tiers: Sequence[Tier],
    kpis: Mapping[str, int | float | None],
    targets: Mapping[str, float],
) -> dict[str, Any]:
    ranked = sorted(rows, key=lambda r: (-r[1], r[0]))
    points = dict(ranked).get(staff_id, 0)
    index = next((i for i, (s, _) in enumerate(ranked) if s == staff_id), None)
    rank = None if index is None else 1 + sum(1 for _, p in ranked if p > points)
    around = ranked[max(0, (index or 0) - 2) : (index or 0) + 3] if index is not None else []
    on_day = [a for a in recent if _local_day(a.get("occurred_at"), zone) == today and a.get("type") in POINT_KINDS]
    complete = len(recent) < 50 or _local_day(recent[-1].get("occurred_at"), zone) != today
    above = [t for t in tiers if t.promote_at > points]
    held = [t for t in tiers if t.promote_at <= points]
    return {
        "type": "me",
        "month_points": points,
        "rank": rank,
        "of": len(ranked),
        "neighbours": [{"staff_id": s, "name": names.get(s, s), "points": p, "me": s == staff_id} for s, p in around],
        "today_points": sum(int(a.get("points") or 0) for a in on_day),
        "today_complete": complete,  # False: more awards today than the recent list holds (at least this many)
        "tier": held[-1].name if held else None,
        "next_tier": (
            {"name": above[0].name, "at": above[0].promote_at, "left": above[0].promote_at - points} if above else None
        ),
        "kpis": [
            {
                "metric": metric,
                "label": KPI_METRICS[metric],
                "value": kpis.get(metric),
                "target": target,
                "met": _met(metric, kpis.get(metric), target),
            }
            for metric, target in targets.items()
        ],
    }


def _met(metric: str, value: int | float | None, target: float) -> bool | None:
    if value is None:
        return None  # nothing to measure yet this month
    return value <= target if metric in LOWER_IS_BETTER else value >= target


def _local_day(stamp: object, zone: ZoneInfo) -> date | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).astimezone(zone).date()
    except ValueError:
        return None
