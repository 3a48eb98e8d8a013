"""SLA policies: business-time arithmetic (hours, closed days, holidays, DST), terms by priority and
channel, the clock ops events make, and every invalid policy refused with file, line and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agents.sla import alert_id, plan
from config.directory import load_directory
from config.loading import ConfigError
from config.settings import DEFAULT_DIRECTORY, DEFAULT_SLA
from config.sla import load_sla_policy, parse_duration
from streams.events import Event, Person

IST = ZoneInfo("Asia/Kolkata")
LONDON = ZoneInfo("Europe/London")
DIRECTORY = load_directory(DEFAULT_DIRECTORY)


def _policy(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "sla.yaml"
    path.write_text(text)
    return load_sla_policy(path)


WEEKDAYS = (
    "policy: t\nversion: 1\n"
    "calendars:\n  office:\n    hours: {mon: '09:00-17:00', tue: '09:00-17:00', wed: '09:00-17:00', "
    "thu: '09:00-17:00', fri: '09:00-12:00,13:00-17:00'}\n    holidays: [2026-12-25]\n"
    "centres:\n  default: {calendar: office}\n  C02: {holidays: [2026-12-02]}\n"
    "tickets:\n  - {priority: P2, first_response: 2h, resolution: 16h}\n"
    "  - {priority: P2, channel: phone, first_response: 30m, resolution: 16h}\n"
    "  - {priority: P1, first_response: 15m, resolution: 4h, calendar: always}\n"
)


def test_the_default_policy_loads() -> None:
    policy = load_sla_policy(DEFAULT_SLA)
    assert (policy.name, policy.version, policy.near_breach) == ("pitstop-default", 1, 0.8)
    assert policy.terms("P1", "whatsapp").first_response == timedelta(minutes=10)  # type: ignore[union-attr]
    assert policy.terms("P1", "email").first_response == timedelta(minutes=15)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("opened", "hours", "due"),
    [
        # inside hours: plain addition
        (datetime(2026, 12, 1, 10, 0, tzinfo=IST), 2, datetime(2026, 12, 1, 12, 0, tzinfo=IST)),
        # past closing: the rest counts from the next opening
        (datetime(2026, 12, 1, 16, 0, tzinfo=IST), 2, datetime(2026, 12, 2, 10, 0, tzinfo=IST)),
        # opened at night: counts from the opening
        (datetime(2026, 12, 1, 22, 0, tzinfo=IST), 2, datetime(2026, 12, 2, 11, 0, tzinfo=IST)),
        # Friday has a lunch break; the weekend is closed
        (datetime(2026, 12, 4, 11, 0, tzinfo=IST), 2, datetime(2026, 12, 4, 14, 0, tzinfo=IST)),
        (datetime(2026, 12, 4, 16, 0, tzinfo=IST), 2, datetime(2026, 12, 7, 10, 0, tzinfo=IST)),
        # Christmas (a Friday) is a holiday
        (datetime(2026, 12, 24, 16, 0, tzinfo=IST), 2, datetime(2026, 12, 28, 10, 0, tzinfo=IST)),
    ],
)
def test_business_hours_skip_closed_time(tmp_path: Path, opened: datetime, hours: int, due: datetime) -> None:
    calendar = _policy(tmp_path, WEEKDAYS).calendar_for("C01")
    assert calendar.add(opened, hours * 3600, IST) == due


def test_a_centre_adds_its_own_holidays(tmp_path: Path) -> None:
    policy = _policy(tmp_path, WEEKDAYS)
    opened = datetime(2026, 12, 1, 16, 0, tzinfo=IST)
    assert policy.calendar_for("C01").add(opened, 7200, IST) == datetime(2026, 12, 2, 10, 0, tzinfo=IST)
    assert policy.calendar_for("C02").add(opened, 7200, IST) == datetime(2026, 12, 3, 10, 0, tzinfo=IST)


def test_opening_hours_are_local_time_across_a_dst_change(tmp_path: Path) -> None:
    """London's clocks go back on 25 Oct 2026: opening hours stay 09:00-17:00 local, 8 open hours a day."""
    calendar = _policy(tmp_path, WEEKDAYS).calendar_for("C01")
    opened = datetime(2026, 10, 23, 16, 0, tzinfo=LONDON)  # Friday, BST (UTC+1)
    due = calendar.add(opened, 2 * 3600, LONDON)
    assert due == datetime(2026, 10, 26, 10, 0, tzinfo=LONDON)  # Monday, GMT
    assert due.utcoffset() == timedelta(0) and opened.utcoffset() == timedelta(hours=1)


def test_terms_by_channel_fall_back_to_every_channel(tmp_path: Path) -> None:
    policy = _policy(tmp_path, WEEKDAYS)
    opened = datetime(2026, 12, 1, 10, 0, tzinfo=IST)
    phone = policy.ticket_deadlines("C01", IST, "P2", "phone", opened)
    chat = policy.ticket_deadlines("C01", IST, "P2", "chat", opened)
    assert [d.due_at - opened for d in phone] == [timedelta(minutes=30), timedelta(days=2)]  # 7 + 8 + 1 open hours
    assert chat[0].due_at == opened + timedelta(hours=2)
    assert chat[0].near_at == opened + timedelta(minutes=96)  # 80 % of the allowed time
    # "always" counts every hour, whatever the centre keeps
    night = datetime(2026, 12, 5, 23, 0, tzinfo=IST)  # a Saturday night
    (first, _) = policy.ticket_deadlines("C01", IST, "P1", "email", night)
    assert first.due_at == night + timedelta(minutes=15) and first.near_at == night + timedelta(minutes=12)
    assert policy.ticket_deadlines("C01", IST, "P3", "email", opened) == []  # no terms: not tracked


def test_a_job_card_is_due_when_promised(tmp_path: Path) -> None:
    policy = _policy(tmp_path, WEEKDAYS)
    opened = datetime(2026, 12, 1, 10, 0, tzinfo=IST)
    deadline = policy.jobcard_deadline(opened, opened + timedelta(hours=5))
    assert deadline is not None and deadline.near_at == opened + timedelta(hours=4)
    assert policy.jobcard_deadline(opened, opened) is None


def _event(kind: str, data: dict[str, Any], at: datetime) -> tuple[None, Event]:
    return None, Event(f"e-{kind}", kind, at, "C01", (Person("S0012", "support_agent"),), "cust_abcdef", data)


def test_events_plan_clock_ops(tmp_path: Path) -> None:
    policy = _policy(tmp_path, WEEKDAYS)
    at = datetime(2026, 12, 1, 10, 0, tzinfo=IST)
    ticket = {"ticket_id": "T1", "priority": "P2", "channel": "chat"}
    later = {"ticket_id": "T1", "priority": "P2", "opened_at": at.isoformat()}
    ops = plan(
        [
            _event("ticket.opened", ticket, at),
            _event("ticket.first_response", later | {"response_due_at": at.isoformat()}, at + timedelta(minutes=5)),
            _event("ticket.escalated", later | {"level": 2}, at + timedelta(minutes=6)),
            _event("ticket.resolved", later | {"case_notes_complete": True}, at + timedelta(hours=1)),
            _event("jobcard.opened", {"jobcard_id": "J1", "promised_at": (at + timedelta(hours=4)).isoformat()}, at),
            _event("jobcard.reopened", {"jobcard_id": "J1", "closed_at": at.isoformat()}, at),
        ],
        policy,
        DIRECTORY,
    )
    assert [(op.op, op.clock_id) for op in ops] == [
        ("start", "ticket:T1:first_response"),
        ("start", "ticket:T1:resolution"),
        ("stop", "ticket:T1:first_response"),
        ("touch", "ticket:T1:first_response"),
        ("touch", "ticket:T1:resolution"),
        ("stop", "ticket:T1:first_response"),
        ("stop", "ticket:T1:resolution"),
        ("start", "jobcard:J1:delivery"),
    ]
    start = ops[0].meta
    assert start is not None and start["region"] == "west" and start["people"] == ["S0012"]
    assert start["due_ms"] == int((at + timedelta(hours=2)).timestamp() * 1000)
    # the response's own deadlines are the opening's (the first response carries opened_at and priority)
    assert ops[2].meta is not None and ops[2].meta["due_ms"] == start["due_ms"] - 0  # chat has no own terms


def test_alert_ids_depend_on_clock_kind_and_deadline_only() -> None:
    a = alert_id("ticket:T1:first_response", "sla.breach", 1_700_000_000_000)
    assert a == alert_id("ticket:T1:first_response", "sla.breach", 1_700_000_000_000)
    assert len({a, alert_id("ticket:T1:first_response", "sla.near_breach", 1_700_000_000_000)}) == 2
    assert a != alert_id("ticket:T1:first_response", "sla.breach", 1_700_000_000_001)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("15m", 900), ("4h", 14400), ("1h30m", 5400), ("2d", 172800), ("90s", 90), ("", None), ("15", None), ("0m", None)],
)
def test_durations(raw: str, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(ValueError, match="duration"):
            parse_duration(raw)
    else:
        assert parse_duration(raw).total_seconds() == ok


HEAD = "policy: t\nversion: 1\n"
TICKET = "tickets:\n  - {priority: P1, first_response: 15m, resolution: 4h}\n"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("version: 1\n" + TICKET, 1, "'policy' must name the policy"),
        (HEAD + "near_breach: 1.2\n" + TICKET, 1, "'near_breach' must be a number between 0 and 1"),
        (HEAD + "sla: {}\n", 1, "unknown key(s): sla"),
        (HEAD + "tickets:\n  - {priority: P9, first_response: 15m, resolution: 4h}\n", 4, "'priority' must be one of"),
        (HEAD + "tickets:\n  - {priority: P1, first_response: soon, resolution: 4h}\n", 4, "P1: expected a duration"),
        (
            HEAD + "tickets:\n  - {priority: P1, first_response: 4h, resolution: 1h}\n",
            4,
            "'resolution' (1:00:00) is shorter",
        ),
        (
            HEAD + TICKET + "  - {priority: P1, first_response: 10m, resolution: 4h}\n",
            5,
            "terms for P1 every channel are given twice",
        ),
        (
            HEAD + "tickets:\n  - {priority: P1, channel: fax, first_response: 15m, resolution: 4h}\n",
            4,
            "'channel' must be one of",
        ),
        (
            HEAD + "tickets:\n  - {priority: P1, channel: phone, first_response: 15m, resolution: 4h}\n",
            4,
            "P1 has terms for phone only",
        ),
        (
            HEAD + "tickets:\n  - {priority: P1, first_response: 15m, resolution: 4h, calendar: nope}\n",
            4,
            "no calendar 'nope'",
        ),
        (HEAD + "calendars:\n  shop:\n    hours: {mon: '9-5'}\n" + TICKET, 5, "mon hours must look like 09:00-18:00"),
        (HEAD + "calendars:\n  shop:\n    hours: {mon: '17:00-09:00'}\n" + TICKET, 5, "must close after they open"),
        (HEAD + "calendars:\n  shop:\n    hours: {funday: '09:00-17:00'}\n" + TICKET, 5, "unknown weekday(s) funday"),
        (HEAD + "calendars:\n  shop:\n    hours: {mon: '09:00-25:00'}\n" + TICKET, 5, "impossible time"),
        (HEAD + "calendars:\n  shop:\n    hours: {}\n" + TICKET, 5, "'hours' must be 24x7 or a mapping"),
        (
            HEAD + "calendars:\n  shop:\n    hours: {mon: '09:00-17:00'}\n    holidays: [soon]\n" + TICKET,
            5,
            "'holidays' entries must be dates",
        ),
        (HEAD + "centres:\n  C01: {calendar: shop}\n" + TICKET, 4, "centre 'C01': no calendar 'shop'"),
        (HEAD + TICKET + "jobcards: {near_breach: 0}\n", 5, "'near_breach' must be a number between 0 and 1"),
    ],
)
def test_invalid_policies_are_refused_with_line_and_reason(tmp_path: Path, text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _policy(tmp_path, text)
    assert caught.value.line == line, caught.value
    assert reason in caught.value.reason, caught.value


def test_a_deadline_a_calendar_cannot_reach_is_an_error_not_a_hang(tmp_path: Path) -> None:
    days = ", ".join(f"2026-12-{d:02d}" for d in range(1, 32))
    text = HEAD + f"calendars:\n  shop:\n    hours: {{mon: '09:00-10:00'}}\n    holidays: [{days}]\n"
    calendar = _policy(tmp_path, text + TICKET).calendars["shop"]
    assert calendar.add(datetime(2026, 12, 1, tzinfo=UTC), 3600, IST).date().isoformat() == "2027-01-04"
    with pytest.raises(ValueError, match="within 400 days"):
        calendar.add(datetime(2026, 12, 1, tzinfo=UTC), 3600 * 200, IST)


def test_unreadable_alert_records_are_counted_and_the_rest_kept() -> None:
    from agents.sla import decode_alerts

    good = {
        "alert_id": "a1",
        "type": "sla.breach",
        "item_kind": "ticket",
        "item_id": "T1",
        "clock": "first_response",
        "centre_id": "C01",
        "region": "west",
        "people": ["S0012"],
        "deadline_ms": 1,
        "fired_ms": 2,
        "source": "timer",
    }
    import orjson

    alerts, bad = decode_alerts(
        [
            b"not json",
            None,
            orjson.dumps(good | {"type": "sla.unknown"}),
            orjson.dumps({"alert_id": "x"}),
            orjson.dumps(good),
        ]
    )
    assert [a.alert_id for a in alerts] == ["a1"] and bad == 4
