"""A manager's KPI dashboard (the ``kpis`` message): for the centres a manager covers, this month so far
and the last 14 days, by event time, from the KPI records the scorer keeps (state.kpi):

- CSAT trend: the mean rating per day over the centres (weighted by answers);
- per centre: turnaround (mean minutes), repeat-complaint rate, upsell revenue and conversion, CSAT,
  and league participation (the share of its staff, managers aside, with points this month);
- technician quality: first-time-fix rate and job cards closed, per technician, most jobs first.

Every record is read in three Lua calls (centre days, technician days), however many centres."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from agents.kpi import summarize
from config.directory import Directory
from state.kpi import Bucket, KpiStore
from state.league import League, board_key

TREND_DAYS = 14
CENTRE_KPIS = ("jobs", "turnaround_mean", "repeat_complaint_rate", "upsell_revenue", "upsell_conversion", "csat_mean")


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def manager_kpis(
    kpi: KpiStore, league: League, directory: Directory, centres: Iterable[str], today: date
) -> dict[str, Any]:
    ids = sorted(centres)
    month_days = _days(today.replace(day=1), today)
    trend_days = _days(today - timedelta(days=TREND_DAYS - 1), today)
    days = sorted(set(month_days) | set(trend_days))
    found = await kpi.records(Bucket("c", c, d) for c in ids for d in days)
    by_centre_month: dict[str, list[list[Any]]] = defaultdict(list)
    by_day: dict[date, list[list[Any]]] = defaultdict(list)
    for bucket, records in found.items():
        if bucket.day in month_days:
            by_centre_month[bucket.id] += records
        if bucket.day in trend_days:
            by_day[bucket.day] += records
    trend = []
    for day in trend_days:
        summary = summarize(by_day.get(day, []))
        trend.append({"day": day.isoformat(), "csat_mean": summary["csat_mean"], "csat_count": summary["csat_count"]})

    season = today.strftime("%Y-%m")
    sites = []
    for centre_id in ids:
        centre = directory.centres[centre_id]
        summary = summarize(by_centre_month.get(centre_id, []))
        _, rows = await league.board(board_key(season, "centre", centre_id), limit=10_000)
        with_points = {s for s, p in rows if p > 0}
        staff = [s for s in directory.staff.values() if s.centre_id == centre_id and s.role != "manager"]
        participation = sum(1 for s in staff if s.id in with_points) / len(staff) if staff else None
        sites.append(
            {
                "id": centre_id,
                "name": centre.name,
                **{k: summary[k] for k in CENTRE_KPIS},
                "participation": participation,
            }
        )

    technicians = [s for s in directory.staff.values() if s.centre_id in ids and s.role == "technician"]
    people = await kpi.records(Bucket("p", s.id, d) for s in technicians for d in month_days)
    per_person: dict[str, list[list[Any]]] = defaultdict(list)
    for bucket, records in people.items():
        per_person[bucket.id] += records
    quality = []
    for person in technicians:
        summary = summarize(per_person.get(person.id, []))
        if summary["jobs"]:
            quality.append(
                {
                    "staff_id": person.id,
                    "name": person.name,
                    "centre_id": person.centre_id,
                    "jobs": summary["jobs"],
                    "first_time_fix_rate": summary["first_time_fix_rate"],
                }
            )
    quality.sort(key=lambda q: (-int(q["jobs"] or 0), q["staff_id"]))
    return {
        "type": "kpis",
        "month": season,
        "today": today.isoformat(),
        "csat_trend": trend,
        "sites": sites,
        "technicians": quality[:20],
    }
