"""KPIs by event time: what each event contributes, how a window's contributions sum up, and which
windows a day belongs to. Pure (no Redis, no clock).

An event contributes one small record to a bucket per person on it and one to its centre's bucket, for
the day it happened in the centre's time zone (:func:`contribution_of`). A window (a day, an ISO week, a
month, or the 30 days ending on a day) is a set of such days; its KPIs are :func:`summarize` over the
records of its days. A survey answered again (same ``survey_id``, later time) counts once per window:
its newest answer within the window. So what a window holds depends only on events inside it; an
answer after the window's end never changes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from agents.rules import event_facts
from streams.contract import ROLLING_DAYS, WINDOW_KINDS, kpi_fact
from streams.events import Event, parse_time

# --- windows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """The days ``start``..``end`` (inclusive) of one window, local to a centre."""

    end: date
    kind: str
    start: date

    @classmethod
    def of(cls, kind: str, day: date) -> Window:
        """The window of ``kind`` holding ``day`` (for ``30d``: the 30 days ending on ``day``)."""
        if kind == "day":
            return cls(day, kind, day)
        if kind == "week":
            monday = day - timedelta(days=day.isoweekday() - 1)
            return cls(monday + timedelta(days=6), kind, monday)
        if kind == "month":
            first = day.replace(day=1)
            return cls((first + timedelta(days=32)).replace(day=1) - timedelta(days=1), kind, first)
        if kind == "30d":
            return cls(day, kind, day - timedelta(days=ROLLING_DAYS - 1))
        raise ValueError(f"unknown window kind {kind!r}")

    @property
    def id(self) -> str:
        if self.kind == "week":
            year, week, _ = self.end.isocalendar()
            return f"week:{year}-W{week:02d}"
        if self.kind == "month":
            return f"month:{self.end:%Y-%m}"
        return f"{self.kind}:{self.end.isoformat()}"

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def end_moment(self, tz: ZoneInfo) -> datetime:
        """The window's last second, in the centre's time zone (the time its awards carry)."""
        return datetime.combine(self.end, time(23, 59, 59), tz)


def windows_ending(after: date, through: date, kinds: Iterable[str]) -> list[Window]:
    """The windows of these kinds whose last day is in (``after``, ``through``], in order."""
    wanted = set(kinds)
    found: list[Window] = []
    day = after + timedelta(days=1)
    while day <= through:
        for kind in WINDOW_KINDS:
            if kind in wanted and Window.of(kind, day).end == day:
                found.append(Window.of(kind, day))
        day += timedelta(days=1)
    return found


def closed_windows_holding(day: date, closed_through: date, kinds: Iterable[str]) -> list[Window]:
    """The windows of these kinds that hold ``day`` and were closed by ``closed_through``."""
    found: list[Window] = []
    for kind in kinds:
        if kind == "30d":
            end = day
            while end <= closed_through and end < day + timedelta(days=ROLLING_DAYS):
                found.append(Window.of(kind, end))
                end += timedelta(days=1)
        elif (window := Window.of(kind, day)).end <= closed_through:
            found.append(window)
    return sorted(found)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def closed_through(stream_time_ms: int, tz: ZoneInfo, lateness: timedelta) -> date:
    """The last day of a centre whose end plus the allowed lateness the stream time has passed."""
    horizon = datetime.fromtimestamp(stream_time_ms / 1000, tz) - lateness
    return horizon.date() - timedelta(days=1)


# --- what an event contributes ---------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class Contribution:
    """One event's record for the buckets of its day: ``field`` within each bucket, ``value`` (JSON)."""

    day: date
    field: str
    value: bytes


def contribution_of(event: Event, tz: ZoneInfo, repeat_within: timedelta) -> Contribution | None:
    """What ``event`` adds to its people's and its centre's KPIs; None for events that add nothing."""
    data = event.data
    day = local_day(event.occurred_at, tz)
    record: list[Any]
    if event.type == "jobcard.closed":
        facts = event_facts(event)
        ftf, on_time = int(data["first_time_fix"]), int(facts["on_time"])
        # Short on purpose: a bucket's values stay under Redis's 64-byte listpack limit (313 bytes of Redis
        # an event; 508 with the event id and milliseconds in it; docs/benchmarks.md).
        at = int(event.occurred_at.timestamp())
        record = [
            "j",
            facts["turnaround_minutes"],
            ftf,
            on_time,
            data["jobcard_id"],
            int(bool(data.get("flawless"))),
            at,
        ]
    elif event.type == "jobcard.reopened":
        repeat = event.occurred_at - parse_time(data["closed_at"]) <= repeat_within
        record = ["r", int(repeat)]
    elif event.type in ("survey.csat", "survey.nps"):
        value = data["rating"] if event.type == "survey.csat" else data["score"]
        at = int(event.occurred_at.timestamp() * 1000)
        record = ["c" if event.type == "survey.csat" else "n", value, at, event.event_id, data["survey_id"]]
    elif event.type == "sale.upsell":
        record = ["u", str(data["amount"]), data.get("jobcard_id")]
    elif event.type == "sale.refunded":
        record = ["f", str(data["amount"])]
    elif event.type == "sale.vehicle":
        record = ["v"]
    elif event.type == "ticket.resolved":
        record = ["t", int(event_facts(event)["within_sla"])]
    elif event.type == "ticket.first_response":
        record = ["a", int(event_facts(event)["responded_in_time"])]
    else:
        return None
    return Contribution(day, f"e:{event.event_id}", orjson.dumps(record))


# --- a window's KPIs -------------------------------------------------------------------------------


def summarize(records: Iterable[list[Any]]) -> dict[str, int | float | None]:
    """The KPIs of a window from its records; a rate or mean with nothing to divide by is None."""
    turnaround: list[float] = []
    ftf = on_time = repeats = upsells = vehicles = resolved = in_sla = responses = responded = 0
    answers: dict[tuple[str, str], tuple[int, str, int]] = {}  # (kind, survey) -> newest (ms, event id, value)
    revenue = Decimal(0)
    upsold: set[str] = set()
    closed: set[str] = set()
    closings: list[tuple[int, str, bool]] = []  # (seconds, job card, flawless) of each job card closed
    for record in records:
        kind = record[0]
        if kind == "j":
            turnaround.append(float(record[1]))
            ftf += record[2]
            on_time += record[3]
            closed.add(record[4])
            if len(record) > 5:  # records written before runs were counted have no time: they count in no run
                closings.append((record[6], record[4], bool(record[5])))
        elif kind == "r":
            repeats += record[1]
        elif kind in ("c", "n"):
            answer = (record[2], record[3], record[1])
            key = (kind, record[4])
            if key not in answers or answers[key] < answer:
                answers[key] = answer
        elif kind == "u":
            upsells += 1
            revenue += Decimal(record[1])
            if record[2]:
                upsold.add(record[2])
        elif kind == "f":
            revenue -= Decimal(record[1])
        elif kind == "v":
            vehicles += 1
        elif kind == "t":
            resolved += 1
            in_sla += record[1]
        elif kind == "a":
            responses += 1
            responded += record[1]
    csat = [value for (kind, _), (_, _, value) in answers.items() if kind == "c"]
    csat_in_order = sorted(answer for (kind, _), answer in answers.items() if kind == "c")
    nps = [value for (kind, _), (_, _, value) in answers.items() if kind == "n"]
    jobs = len(turnaround)
    tat = np.sort(np.asarray(turnaround, dtype=np.float64))
    return {
        "jobs": jobs,
        "turnaround_mean": round(float(tat.mean()), 2) if jobs else None,
        "turnaround_p90": round(float(np.percentile(tat, 90)), 2) if jobs else None,
        "first_time_fix_rate": _rate(ftf, jobs),
        "on_time_rate": _rate(on_time, jobs),
        "flawless_run": _longest_run(flawless for _, _, flawless in sorted(closings)),
        "repeat_complaints": repeats,
        "repeat_complaint_rate": _rate(repeats, jobs),
        "csat_count": len(csat),
        "csat_mean": round(sum(csat) / len(csat), 4) if csat else None,
        "five_star_run": _longest_run(value == 5 for _, _, value in csat_in_order),
        "nps_count": len(nps),
        "nps": round(100 * (sum(s >= 9 for s in nps) - sum(s <= 6 for s in nps)) / len(nps), 2) if nps else None,
        "upsells": upsells,
        "upsell_conversion": _rate(len(upsold & closed), jobs),
        "upsell_revenue": float(revenue.quantize(Decimal("0.01"))),
        "vehicles_sold": vehicles,
        "tickets_resolved": resolved,
        "sla_compliance": _rate(in_sla, resolved),
        "responses": responses,
        "response_in_time_rate": _rate(responded, responses),
    }


def _longest_run(flags: Iterable[bool]) -> int:
    """The most ``True`` in a row."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def kpi_facts(by_kind: dict[str, dict[str, int | float | None]]) -> dict[str, int | float | None]:
    """``{"month": summary, ...}`` -> ``{"kpi.jobs_month": ..., ...}``, the facts a window rule reads."""
    return {kpi_fact(metric, kind): value for kind, summary in by_kind.items() for metric, value in summary.items()}


def decode_records(fields: Iterable[bytes | str]) -> Iterator[list[Any]]:
    for value in fields:
        yield orjson.loads(value)
