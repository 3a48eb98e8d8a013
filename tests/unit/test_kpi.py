"""KPIs by event time, pure: windows, the close horizon, each event's record, a window's KPIs, rules on
windows (loading, refusals with their messages, evaluation and eligibility)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from agents.kpi import (
    Window,
    closed_through,
    closed_windows_holding,
    contribution_of,
    summarize,
    windows_ending,
)
from agents.rules import load_rule_pack
from agents.windows import correction, evaluate_window, settle_cap, window_award
from config.directory import Directory, load_directory
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from state.kpi import Result
from streams.contract import KPI_METRICS, window_rule_facts
from streams.events import decode_event
from streams.examples import EXAMPLES
from tests.unit.conftest import pack_from_text, pack_refusal

IST = ZoneInfo("Asia/Kolkata")
D = date


@pytest.mark.parametrize(
    ("kind", "day", "start", "end", "window_id"),
    [
        ("day", D(2026, 11, 20), D(2026, 11, 20), D(2026, 11, 20), "day:2026-11-20"),
        ("week", D(2026, 11, 20), D(2026, 11, 16), D(2026, 11, 22), "week:2026-W47"),
        ("week", D(2026, 12, 31), D(2026, 12, 28), D(2027, 1, 3), "week:2026-W53"),  # ISO: 2026 has 53 weeks
        ("week", D(2027, 1, 4), D(2027, 1, 4), D(2027, 1, 10), "week:2027-W01"),
        ("month", D(2027, 2, 14), D(2027, 2, 1), D(2027, 2, 28), "month:2027-02"),
        ("month", D(2026, 12, 1), D(2026, 12, 1), D(2026, 12, 31), "month:2026-12"),
        ("30d", D(2026, 11, 20), D(2026, 10, 22), D(2026, 11, 20), "30d:2026-11-20"),
    ],
)
def test_windows(kind: str, day: date, start: date, end: date, window_id: str) -> None:
    window = Window.of(kind, day)
    assert (window.start, window.end, window.id) == (start, end, window_id)
    assert len(window.days()) == (end - start).days + 1
    assert window.end_moment(IST).isoformat() == f"{end.isoformat()}T23:59:59+05:30"


def test_windows_ending_in_a_range_in_order() -> None:
    found = windows_ending(D(2026, 11, 28), D(2026, 12, 1), ["day", "week", "month", "30d"])
    assert [w.id for w in found] == [
        "day:2026-11-29",
        "week:2026-W48",  # Sunday
        "30d:2026-11-29",
        "day:2026-11-30",
        "month:2026-11",
        "30d:2026-11-30",
        "day:2026-12-01",
        "30d:2026-12-01",
    ]
    assert windows_ending(D(2026, 11, 28), D(2026, 12, 1), ["month"]) == [Window.of("month", D(2026, 11, 30))]
    assert windows_ending(D(2026, 12, 1), D(2026, 12, 1), ["day"]) == []


def test_closed_windows_holding_a_day() -> None:
    held = closed_windows_holding(D(2026, 11, 27), D(2026, 11, 30), ["week", "month", "30d", "day"])
    assert [w.id for w in held] == [  # by last day
        "30d:2026-11-27",
        "day:2026-11-27",
        "30d:2026-11-28",
        "30d:2026-11-29",
        "week:2026-W48",
        "30d:2026-11-30",
        "month:2026-11",
    ]
    assert closed_windows_holding(D(2026, 11, 27), D(2026, 11, 28), ["week", "month"]) == []


@pytest.mark.parametrize(
    ("stream_time", "through"),
    [
        ("2026-12-03T00:00:00+05:30", D(2026, 11, 30)),  # Nov 30 ended 48 h ago
        ("2026-12-02T23:59:59+05:30", D(2026, 11, 29)),
        ("2026-12-02T18:30:00+00:00", D(2026, 11, 30)),  # the same moment in UTC
    ],
)
def test_a_day_closes_when_the_stream_time_passes_its_end_plus_the_lateness(stream_time: str, through: date) -> None:
    ms = int(datetime.fromisoformat(stream_time).timestamp() * 1000)
    assert closed_through(ms, IST, timedelta(hours=48)) == through


def _event(kind: str, **changes: Any) -> Any:
    return decode_event(orjson.dumps(EXAMPLES[kind] | changes), now=datetime(2030, 1, 1, tzinfo=UTC))


def _record(kind: str, **changes: Any) -> list[Any]:
    contribution = contribution_of(_event(kind, **changes), IST, timedelta(days=30))
    assert contribution is not None
    return list(orjson.loads(contribution.value))


def test_each_event_type_contributes_its_record() -> None:
    closed = _event("jobcard.closed")
    contribution = contribution_of(closed, IST, timedelta(days=30))
    assert contribution is not None
    assert contribution.day == closed.occurred_at.astimezone(IST).date()
    assert contribution.field == f"e:{closed.event_id}"
    at = int(closed.occurred_at.timestamp())
    data = EXAMPLES["jobcard.closed"]
    assert _record("jobcard.closed")[0] == "j"
    assert _record("jobcard.closed")[4:] == [data["jobcard_id"], int(data["flawless"]), at]
    assert _record("survey.csat")[:2] == ["c", EXAMPLES["survey.csat"]["rating"]]
    assert _record("survey.nps")[0] == "n"
    assert _record("sale.upsell")[:2] == ["u", str(EXAMPLES["sale.upsell"]["amount"])]
    assert _record("sale.refunded")[0] == "f"
    assert _record("ticket.resolved")[0] == "t"
    assert _record("ticket.first_response")[0] == "a"
    assert contribution_of(_event("ticket.opened"), IST, timedelta(days=30)) is None
    assert contribution_of(_event("recognition.given"), IST, timedelta(days=30)) is None


def test_a_reopening_is_a_repeat_complaint_only_within_the_period() -> None:
    reopened = EXAMPLES["jobcard.reopened"]
    at = datetime.fromisoformat(str(reopened["occurred_at"]))
    assert _record("jobcard.reopened", closed_at=(at - timedelta(days=30)).isoformat()) == ["r", 1]
    assert _record("jobcard.reopened", closed_at=(at - timedelta(days=30, seconds=1)).isoformat()) == ["r", 0]


def test_a_window_s_kpis() -> None:
    turnaround = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    records: list[list[Any]] = [["j", t, int(t <= 30), int(t <= 80), f"JC-{t}"] for t in turnaround]
    records += [["r", 1], ["r", 0]]
    records += [["c", 5, 1, "e1", "s1"], ["c", 2, 2, "e2", "s1"], ["c", 4, 1, "e3", "s2"]]  # s1 answered again
    records += [["n", 10, 1, "n1", "p1"], ["n", 9, 1, "n2", "p2"], ["n", 3, 1, "n3", "p3"], ["n", 7, 1, "n4", "p4"]]
    records += [["u", "1000.50", "JC-10"], ["u", "499.50", "JC-10"], ["u", "250", None], ["f", "250"]]
    records += [["v"], ["t", 1], ["t", 1], ["t", 0], ["a", 1]]
    kpis = summarize(records)
    assert set(kpis) == set(KPI_METRICS)
    assert kpis == {
        "jobs": 10,
        "turnaround_mean": 55.0,
        "turnaround_p90": float(np.percentile(turnaround, 90)),  # 91.0, linear between 90 and 100
        "first_time_fix_rate": 0.3,
        "on_time_rate": 0.8,
        "flawless_run": 0,  # records of this shape (from before runs were counted) count in no run
        "repeat_complaints": 1,
        "repeat_complaint_rate": 0.1,
        "csat_count": 2,
        "csat_mean": 3.0,  # s1's newer answer (2) and s2 (4)
        "five_star_run": 0,  # s1's five stars were answered again with 2
        "nps_count": 4,
        "nps": 25.0,  # 2 promoters - 1 detractor of 4
        "upsells": 3,
        "upsell_conversion": 0.1,  # one job card of ten had an upsell line
        "upsell_revenue": 1500.0,
        "vehicles_sold": 1,
        "tickets_resolved": 3,
        "sla_compliance": 0.6667,
        "responses": 1,
        "response_in_time_rate": 1.0,
    }
    empty = summarize([])
    assert empty["jobs"] == 0 and empty["turnaround_mean"] is None and empty["csat_mean"] is None
    assert empty["sla_compliance"] is None and empty["upsell_revenue"] == 0.0


def test_an_answer_tie_is_broken_by_event_id_whatever_the_order() -> None:
    a, b = ["c", 5, 7, "e-a", "s"], ["c", 1, 7, "e-b", "s"]
    assert summarize([a, b])["csat_mean"] == summarize([b, a])["csat_mean"] == 1.0


# --- rules on windows ------------------------------------------------------------------------------

WINDOW_RULE = """pack: test
version: 1
rules:
  - id: kpi.star
    version: 1
    event: window.month
    roles: [technician]
    when: "kpi.csat_count_month >= 2 and kpi.csat_mean_30d >= 4.5"
    points: "min(kpi.csat_count_month * 10, 50)"
    why: "Star of {window}: {kpi.csat_mean_30d:.1f} over {kpi.csat_count_month}"
"""


def test_a_window_rule_loads_and_reads_its_kpis(tmp_path: Path) -> None:
    pack = pack_from_text(tmp_path, WINDOW_RULE)
    (rule,) = pack.rules_for("window.month")
    assert pack.window_kinds == {"month"}
    assert rule.reads() == ("kpi.csat_count_month", "kpi.csat_mean_30d", "window")
    assert "kpi.turnaround_p90_day" in window_rule_facts("window.month")
    assert "kpi.turnaround_p90_week" not in window_rule_facts("window.month")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            ("event: window.month", "event: survey.csat"),
            "rule kpi.star: 'when': kpi.csat_count_month is a KPI; KPIs are read by rules on a window closing "
            "(event: window.day, window.week, window.month or window.30d), because an event's own rules are "
            "scored when it arrives, before its windows are complete",
        ),
        (
            ("event: window.month", "event: window.week"),
            "rule kpi.star: 'when': kpi.csat_count_month is not complete when this window closes (this rule reads "
            "kpi.csat_count_day, kpi.csat_count_week, kpi.csat_count_30d)",
        ),
        (
            ("kpi.csat_count_month >= 2", "kpi.happiness_month >= 2"),
            "rule kpi.star: 'when': unknown KPI 'kpi.happiness_month': write kpi.<metric>_<window>, metric one of "
            f"{', '.join(KPI_METRICS)}; window one of day, month, 30d",
        ),
        (
            ("kpi.csat_count_month >= 2", "kpis.csat_count_month >= 2"),
            "rule kpi.star: 'when': attribute access (a.b) not allowed in a rule expression (only kpi.NAME): "
            "kpis.csat_count_month >= 2 and kpi.csat_mean_30d >= 4.5",
        ),
        (
            ("{kpi.csat_count_month}", "{kpi.csat_count_week}"),
            "rule kpi.star: 'why' uses {kpi.csat_count_week}, which is not a fact of window.month",
        ),
        (
            ("    why:", "    retracted_by: [jobcard.reopened]\n    why:"),
            "rule kpi.star: 'retracted_by': jobcard.reopened cannot take back a window.month award (nothing takes "
            "back an award of this event type)",
        ),
        (
            ("event: window.month", "event: window.year"),
            None,
        ),
    ],
)
def test_invalid_window_rules_are_refused_with_the_reason(
    tmp_path: Path, change: tuple[str, str], reason: str | None
) -> None:
    line, message = pack_refusal(tmp_path, WINDOW_RULE.replace(*change))
    assert line == 4
    if reason is None:
        assert message.startswith("rule kpi.star: 'event' must be an event type") and "window.30d" in message
    else:
        assert message == reason


def test_evaluating_a_window_for_a_person(tmp_path: Path) -> None:
    pack = pack_from_text(tmp_path, WINDOW_RULE)
    directory = load_directory(DEFAULT_DIRECTORY)
    centre = directory.centres["C01"]
    window = Window.of("month", D(2026, 11, 30))
    answers = {D(2026, 11, 3): [["c", 4, 1, "e1", "s1"]], D(2026, 11, 29): [["c", 4, 2, "e2", "s2"]]}

    def records(staff_id: str, day: date) -> list[list[Any]]:
        return answers.get(day, []) if staff_id == "S0001" else []

    (nothing,) = evaluate_window(centre, window, "S0001", pack, directory, records)
    assert nothing.outcome is None and nothing.inputs["kpi.csat_mean_30d"] == 4.0
    answers[D(2026, 11, 29)] = [["c", 5, 2, "e2", "s2"], ["c", 5, 3, "e3", "s3"]]
    (fired,) = evaluate_window(centre, window, "S0001", pack, directory, records)
    assert fired.outcome is not None and fired.outcome.points == 30
    award = window_award(centre, window, fired)
    assert (award.event_type, award.season) == ("window.month", "2026-11")
    assert award.why == "Star of month:2026-11: 4.7 over 3"
    # the same with the person suspended at the window's end: nothing (a correction would take it back)
    since = datetime(2026, 11, 15, tzinfo=UTC)
    staff_list = [replace(s, suspended_from=since) if s.id == "S0001" else s for s in directory.staff.values()]
    suspended = Directory(directory.centres.values(), staff_list)
    (now,) = evaluate_window(centre, window, "S0001", pack, suspended, records)
    assert now.outcome is None
    entry, after = correction(centre, window, now, Result(30, 0))
    assert (entry.kind, entry.points, entry.retracts, after) == ("correction", -30, award.award_id, Result(0, 1))
    # a service advisor: the rule is for technicians only
    assert evaluate_window(centre, window, "S0009", pack, directory, records) == []


def test_the_default_pack_s_window_rules() -> None:
    pack = load_rule_pack(DEFAULT_RULES)
    assert [r.id for r in pack.rules_for("window.month")] == [
        "kpi.csat_star",
        "kpi.zero_comebacks",
        "kpi.flawless_five",
    ]
    assert [r.id for r in pack.rules_for("window.week")] == ["kpi.sla_keeper"]


CAPPED = """pack: test
version: 1
rules:
  - id: survey.five
    version: 1
    event: survey.csat
    roles: [technician]
    when: {rating: 5}
    points: 25
    cap: {day: 50, month: 300}
    why: "Five stars"
"""


def test_a_capped_rule_loads_and_its_periods_close(tmp_path: Path) -> None:
    pack = pack_from_text(tmp_path, CAPPED)
    assert pack.rules[0].caps == (("day", 50), ("month", 300))
    assert pack.window_kinds == {"day", "month"} and set(pack.capped) == {"survey.five"}


@pytest.mark.parametrize(
    ("cap", "reason"),
    [
        ("{year: 10}", "'cap' is {day: N, week: N, month: N} (any of them): the most points per person"),
        ("[50]", "'cap' is {day: N, week: N, month: N} (any of them): the most points per person"),
        ("{day: 0}", "'cap': day must be a whole number of points from 1 to 1000000"),
        ("{day: 2.5}", "'cap': day must be a whole number of points from 1 to 1000000"),
        ("{day: true}", "'cap': day must be a whole number of points from 1 to 1000000"),
        ("{day: 100, week: 50}", "'cap': a longer period's cap cannot be lower than a shorter one's"),
        ("{week: 100, month: 300}", "'cap': a week and a month cap cannot be combined (ISO weeks cross months)"),
    ],
)
def test_invalid_caps_are_refused_with_the_reason(tmp_path: Path, cap: str, reason: str) -> None:
    assert pack_refusal(tmp_path, CAPPED.replace("{day: 50, month: 300}", cap)) == (4, f"rule survey.five: {reason}")


def test_a_rule_on_a_window_takes_no_cap(tmp_path: Path) -> None:
    text = WINDOW_RULE.replace("    why:", "    cap: {month: 10}\n    why:")
    assert pack_refusal(tmp_path, text) == (
        4,
        "rule kpi.star: a rule on a window gives once per window: put its limit in 'points', not a cap",
    )


def test_settling_a_cap(tmp_path: Path) -> None:
    pack = pack_from_text(tmp_path, CAPPED)
    directory = load_directory(DEFAULT_DIRECTORY)
    centre, staff, rule = directory.centres["C01"], directory.staff["S0001"], pack.rules[0]
    window = Window.of("day", D(2026, 11, 10))
    awards: list[list[Any]] = [["p", "survey.five", 25], ["p", "survey.five", 25], ["p", "other.rule", 99]]
    under = settle_cap(window, staff, rule, 50, lambda s, d: awards if d == window.end else [])
    assert under.outcome is None and under.inputs == {"cap": 50, "awarded": 50, "window": "day:2026-11-10"}
    awards.append(["p", "survey.five", 25])
    over = settle_cap(window, staff, rule, 50, lambda s, d: awards if d == window.end else [])
    assert over.outcome is not None and over.outcome.points == -25
    entry = window_award(centre, window, over)
    assert (entry.kind, entry.event_type, entry.points, entry.season) == ("cap", "window.day", -25, "2026-11")
    assert entry.award_id != window_award(centre, window, over._replace(cap=False)).award_id


def test_a_month_cap_counts_each_day_after_its_day_cap(tmp_path: Path) -> None:
    """Five days of 75 points under a 50-a-day cap earn 250: the month cap of 300 takes nothing more."""
    pack = pack_from_text(tmp_path, CAPPED)
    staff, rule = load_directory(DEFAULT_DIRECTORY).staff["S0001"], pack.rules[0]
    month = Window.of("month", D(2026, 11, 30))
    busy = {D(2026, 11, d) for d in range(2, 7)}
    three: list[list[Any]] = [["p", "survey.five", 25]] * 3
    settled = settle_cap(month, staff, rule, 300, lambda s, d: three if d in busy else [])
    assert settled.outcome is None and settled.inputs["awarded"] == 250
    busy |= {D(2026, 11, d) for d in range(9, 12)}
    settled = settle_cap(month, staff, rule, 300, lambda s, d: three if d in busy else [])
    assert settled.outcome is not None and (settled.inputs["awarded"], settled.outcome.points) == (400, -100)


def test_runs_follow_event_time_whatever_order_the_records_come_in() -> None:
    """The most flawless job cards and five-star answers in a row, by event time (then job card / event id): any
    other closing or rating ends a run; a survey answered again counts with its latest answer."""
    flags = [1, 1, 0, 1, 1, 1, 1, 0, 1]  # the longest run: 4
    jobs = [["j", 30, 1, 1, f"JC-{n}", flag, n] for n, flag in enumerate(flags)]
    ratings = [5, 5, 5, 4, 5, 5]  # 3 in a row, then 2...
    answers = [["c", r, 1000 * n, f"c{n}", f"s{n}"] for n, r in enumerate(ratings)]
    answers.append(["c", 5, 1000 * 9, "c9", "s3"])  # ...until s3 is answered again with five stars: 6
    for order in (jobs + answers, list(reversed(jobs + answers)), jobs[::2] + answers[::-2] + jobs[1::2] + answers):
        kpis = summarize(order)
        assert (kpis["flawless_run"], kpis["five_star_run"]) == (4, 6)
    tied = [["j", 30, 1, 1, "JC-b", 1, 5], ["j", 30, 1, 1, "JC-a", 0, 5]]
    assert summarize([*tied, ["j", 30, 1, 1, "JC-c", 1, 6]])["flawless_run"] == 2  # JC-a, then JC-b
    assert summarize([])["flawless_run"] == 0
