"""Scoring: valid events + the default pack + the demo directory -> deterministic ledger awards."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.rules import RulePack, load_rule_pack
from agents.scoring import Award, award_id, score_event
from config.directory import Directory
from streams.events import Event, InvalidEvent, decode_event
from streams.examples import EXAMPLES

NOW = datetime(2026, 12, 31, tzinfo=UTC)


def event(event_type: str, **changes: Any) -> Event:
    """The decoded example of ``event_type`` with ``changes`` applied."""
    return decode_event(orjson.dumps({**copy.deepcopy(EXAMPLES[event_type]), **changes}), now=NOW)


def test_award_id_is_deterministic_and_distinct() -> None:
    """The award id is a fixed hash of (event, rule, version, person) and changes with any of them."""
    base = award_id("E1", "jobcard.flawless", 1, "S0001")
    assert base == award_id("E1", "jobcard.flawless", 1, "S0001")
    assert len(base) == 32 and int(base, 16) >= 0
    variants = {
        award_id("E2", "jobcard.flawless", 1, "S0001"),
        award_id("E1", "jobcard.on_time", 1, "S0001"),
        award_id("E1", "jobcard.flawless", 2, "S0001"),
        award_id("E1", "jobcard.flawless", 1, "S0002"),
        base,
    }
    assert len(variants) == 5


def test_award_id_fields_cannot_run_together() -> None:
    """Ids whose parts would concatenate to the same text still get different award ids."""
    assert award_id("E1", "a.b", 1, "S1") != award_id("E1a", ".b", 1, "S1")


def test_jobcard_closed_awards(pack: RulePack, directory: Directory) -> None:
    """The example closed card earns each listed role its rules' points, with the centre's place and season."""
    awards = score_event(event("jobcard.closed"), pack, directory)
    assert [(a.rule_id, a.staff_id, a.role, a.points) for a in awards] == [
        ("jobcard.flawless", "S0001", "technician", 30),
        ("jobcard.flawless", "S0009", "service_advisor", 30),
        ("jobcard.on_time", "S0001", "technician", 15),
        ("jobcard.on_time", "S0009", "service_advisor", 15),
        ("jobcard.first_time_fix", "S0001", "technician", 15),
    ]
    first = awards[0]
    assert (first.centre_id, first.region, first.state, first.season) == ("C01", "west", "MH", "2026-11")
    assert first.award_id == award_id("dms-7f3a-000102", "jobcard.flawless", 1, "S0001")
    assert first.occurred_at == "2026-11-23T14:35:00+05:30"
    assert first.multipliers == (("quality", "1.5"),)
    assert first.why == "Flawless job card JC-2026-11-0001 (quality x1.5)"


def test_awards_go_only_to_listed_roles(pack: RulePack, directory: Directory) -> None:
    """A person on the event whose role the rule does not list gets nothing from that rule."""
    people = [{"staff_id": "S0009", "role": "service_advisor"}, {"staff_id": "S0015", "role": "manager"}]
    awards = score_event(event("jobcard.closed", people=people), pack, directory)
    assert {(a.staff_id, a.rule_id) for a in awards} == {
        ("S0009", "jobcard.flawless"),
        ("S0009", "jobcard.on_time"),
    }
    support_only = score_event(
        event("sale.vehicle", people=[{"staff_id": "S0012", "role": "support_agent"}]), pack, directory
    )
    assert support_only == []


def test_event_without_rules_earns_nothing(pack: RulePack, directory: Directory) -> None:
    """An event type no rule listens to yields no awards."""
    assert score_event(event("ticket.opened"), pack, directory) == []


@pytest.mark.parametrize(
    ("occurred_at", "season"),
    [
        ("2026-11-30T20:00:00Z", "2026-12"),  # 01:30 on 1 December in Asia/Kolkata
        ("2026-11-30T18:29:59Z", "2026-11"),  # 23:59:59 on 30 November in Asia/Kolkata
        ("2026-12-01T00:30:00+05:30", "2026-12"),
    ],
)
def test_season_is_calendar_month_in_centre_time_zone(
    pack: RulePack, directory: Directory, occurred_at: str, season: str
) -> None:
    """The season is the event time's month in the centre's zone, not in UTC nor in the sent offset."""
    awards = score_event(event("sale.vehicle", occurred_at=occurred_at), pack, directory)
    assert [a.season for a in awards] == [season]
    assert awards[0].occurred_at == occurred_at


def test_ledger_bytes_are_canonical_and_round_trip(pack: RulePack, directory: Directory) -> None:
    """Scoring the same event twice gives identical ledger bytes, which decode back to the same award."""
    first = score_event(event("ticket.resolved"), pack, directory)
    again = score_event(event("ticket.resolved"), pack, directory)
    assert [a.to_ledger() for a in first] == [a.to_ledger() for a in again]
    assert [a.rule_id for a in first] == ["ticket.resolved_within_sla", "ticket.quick_callback"]
    award = first[0]
    raw = award.to_ledger()
    assert Award.from_ledger(raw) == award
    record = orjson.loads(raw)
    assert list(record) == sorted(record)
    assert (record["v"], record["kind"], record["points"]) == (2, "award", 27)
    assert record["multipliers"] == [["speed", "1.5"], ["quality", "1.2"]]
    assert record["inputs"] == {
        "within_sla": True,
        "resolution_ratio": 0.375,
        "case_notes_complete": True,
        "priority": "P2",
        "ticket_id": "TK-88231",
    }


def test_unknown_centre_is_unknown_reference(pack: RulePack, directory: Directory) -> None:
    """An event at a centre the directory lacks is refused with kind unknown_reference."""
    with pytest.raises(InvalidEvent) as info:
        score_event(event("sale.vehicle", centre_id="C99"), pack, directory)
    assert (info.value.kind, info.value.message) == ("unknown_reference", "centre_id is not in the directory")


def test_unknown_staff_is_unknown_reference(pack: RulePack, directory: Directory) -> None:
    """An event naming staff the directory lacks is refused with kind unknown_reference, even with no rules."""
    people = [{"staff_id": "S9999", "role": "support_agent"}]
    with pytest.raises(InvalidEvent) as info:
        score_event(event("ticket.opened", people=people), pack, directory)
    assert (info.value.kind, info.value.message) == ("unknown_reference", "people: staff S9999 is not in the directory")


def test_feedback_read_by_a_rule_is_redacted(tmp_path: Path, directory: Directory) -> None:
    """A rule quoting survey feedback records and shows it with phone numbers masked."""
    path = tmp_path / "pack.yaml"
    path.write_text(
        "pack: quotes\nversion: 1\nrules:\n"
        "  - {id: survey.quote, version: 1, event: survey.csat, roles: [technician], points: 5,"
        ' why: "Customer said: {feedback}"}\n',
        encoding="utf-8",
    )
    quoting = load_rule_pack(path)
    (award,) = score_event(event("survey.csat", feedback="Great, ring me on 9876543210"), quoting, directory)
    assert award.why == "Customer said: Great, ring me on [redacted]"
    assert award.inputs == {"feedback": "Great, ring me on [redacted]"}
    assert b"9876543210" not in award.to_ledger()


def test_recognition_reason_phone_number_is_redacted(pack: RulePack, directory: Directory) -> None:
    """A phone number in a manager's recognition reason does not reach the ledger or the notification."""
    (award,) = score_event(event("recognition.given", reason="Customer 9876543210 called to thank"), pack, directory)
    assert b"9876543210" not in award.to_ledger()


def test_recognition_points_sent_as_integral_float_count(pack: RulePack, directory: Directory) -> None:
    """Recognition points sent as 25.0 (a JSON Schema integer) earn 25 points like 25 does."""
    awards = score_event(event("recognition.given", points=25.0), pack, directory)
    assert [a.points for a in awards] == [25]
