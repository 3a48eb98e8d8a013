"""Eligibility: directory groups a rule excludes, and suspensions by event time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.rules import load_rule_pack
from agents.scoring import score_event
from config.directory import load_directory
from config.loading import ConfigError
from streams.events import decode_event

CENTRES = "centres:\n- {id: C01, name: Andheri, region: west, state: MH, timezone: Asia/Kolkata}\n"
STAFF = """\
staff:
- {id: S1, name: Ayaan Gupta, role: technician, centre: C01}
- {id: S2, name: Deepak Pillai, role: technician, centre: C01, groups: [trainee]}
- {id: S3, name: Simran Pandey, role: technician, centre: C01,
   suspended_from: 2026-11-20T00:00:00+05:30, suspended_to: '2026-11-25T00:00:00+05:30'}
"""
PACK = """\
pack: eligibility
version: 1
rules:
  - id: survey.five
    version: 1
    event: survey.csat
    roles: [technician]
    when: "rating == 5"
    points: 10
    exclude: {groups: [trainee]}
    why: "Five stars"
  - id: survey.any
    version: 1
    event: survey.csat
    roles: [technician]
    points: 1
    why: "Rated"
"""


def _csat(at: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": "ev-" + at.replace("+", "p"),
            "type": "survey.csat",
            "occurred_at": at,
            "centre_id": "C01",
            "people": [{"staff_id": s, "role": "technician"} for s in ("S1", "S2", "S3")],
            "customer_ref": "cust_abc",
            "survey_id": "SV-1",
            "subject_kind": "jobcard",
            "subject_id": "JC-1",
            "rating": 5,
        }
    )


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "directory.yaml").write_text(CENTRES + STAFF, encoding="utf-8")
    (tmp_path / "pack.yaml").write_text(PACK, encoding="utf-8")
    return tmp_path / "directory.yaml", tmp_path / "pack.yaml"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # before the suspension: S3 earns; S2 is a trainee, excluded from survey.five only
        ("2026-11-19T23:59:00+05:30", {("S1", 10), ("S1", 1), ("S2", 1), ("S3", 10), ("S3", 1)}),
        # during it (by event time, whatever the offset): S3 earns nothing
        ("2026-11-19T18:30:00Z", {("S1", 10), ("S1", 1), ("S2", 1)}),
        ("2026-11-24T23:59:00+05:30", {("S1", 10), ("S1", 1), ("S2", 1)}),
        # after it ends
        ("2026-11-25T00:00:00+05:30", {("S1", 10), ("S1", 1), ("S2", 1), ("S3", 10), ("S3", 1)}),
    ],
)
def test_exclusions_and_suspensions(paths: tuple[Path, Path], at: str, expected: set[tuple[str, int]]) -> None:
    directory, pack = load_directory(paths[0]), load_rule_pack(paths[1])
    event = decode_event(_csat(at), now=datetime(2026, 12, 31, tzinfo=UTC))
    assert {(a.staff_id, a.points) for a in score_event(event, pack, directory)} == expected


def test_the_oracle_applies_the_same_eligibility(paths: tuple[Path, Path]) -> None:
    from pitstop.oracle import Oracle

    directory, pack = load_directory(paths[0]), load_rule_pack(paths[1])
    oracle = Oracle(paths[1], paths[0])
    for at in ("2026-11-19T23:59:00+05:30", "2026-11-22T10:00:00+05:30", "2026-11-25T00:00:00+05:30"):
        raw = _csat(at)
        event = decode_event(raw, now=datetime(2026, 12, 31, tzinfo=UTC))
        engine = {(a.award_id, a.points) for a in score_event(event, pack, directory)}
        assert engine == {(a.award_id, a.points) for a in oracle.awards(orjson.loads(raw))}


def test_groups_and_suspension_from_csv(tmp_path: Path) -> None:
    (tmp_path / "centres.csv").write_text("id,name,region,state,timezone\nC01,A,west,MH,Asia/Kolkata\n")
    (tmp_path / "staff.csv").write_text(
        "id,name,role,centre,groups,suspended_from\n"
        "S1,A,technician,C01,trainee;night-shift,2026-11-20T00:00:00+05:30\n"
        "S2,B,technician,C01,,\n"
    )
    directory = load_directory(tmp_path)
    assert directory.staff["S1"].groups == frozenset({"trainee", "night-shift"})
    assert directory.staff["S1"].suspended_at(datetime(2027, 1, 1, tzinfo=UTC))  # open-ended
    assert directory.staff["S2"].groups == frozenset() and directory.staff["S2"].suspended_from is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("groups: [5]", "'groups' must be a list of names (letters, digits and . _ : / -)"),
        ("groups: ['night shift']", "'groups' must be a list of names (letters, digits and . _ : / -)"),
        (
            "suspended_from: 2026-11-20",
            "'suspended_from' must be a date-time with its UTC offset, e.g. 2026-12-01T00:00:00+05:30 "
            "(a bare date would mean a different moment in every time zone)",
        ),
        ("suspended_to: 2026-11-20T00:00:00Z", "'suspended_to' needs a 'suspended_from' before it"),
        (
            "suspended_from: 2026-11-20T00:00:00Z, suspended_to: 2026-11-19T00:00:00Z",
            "'suspended_to' needs a 'suspended_from' before it",
        ),
        ("status: suspended", "unknown field(s): status"),
    ],
)
def test_invalid_eligibility_fields(tmp_path: Path, row: str, reason: str) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(CENTRES + f"staff:\n- {{id: S1, name: A, role: technician, centre: C01, {row}}}\n")
    with pytest.raises(ConfigError) as info:
        load_directory(path)
    assert (info.value.line, info.value.reason) == (4, reason)


@pytest.mark.parametrize(
    ("exclude", "reason"),
    [
        ("{roles: [manager]}", "rule survey.five: 'exclude' is {groups: [NAME, ...]}"),
        ("{groups: trainee}", "rule survey.five: 'exclude: groups' must be a list of group names"),
    ],
)
def test_invalid_exclude(tmp_path: Path, exclude: str, reason: str) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK.replace("exclude: {groups: [trainee]}", f"exclude: {exclude}"))
    with pytest.raises(ConfigError) as info:
        load_rule_pack(path)
    assert (info.value.line, info.value.reason) == (4, reason)
