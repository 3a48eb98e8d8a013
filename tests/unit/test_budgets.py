"""Spot-award budgets, the pure part: loading, claims, refusals taken without Redis, and settling."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.budgets import BudgetBook, Decision, claims, settle
from agents.pipeline import ScoredEvent, SourceRecord
from agents.scoring import score_event
from config.directory import Directory, load_directory
from config.loading import ConfigError
from config.settings import DEFAULT_DIRECTORY
from state.budgets import from_ledger
from state.league import boards_for
from streams.events import decode_event
from streams.examples import EXAMPLES
from tests.unit.conftest import pack_from_text

PACK = """\
pack: spot
version: 1
rules:
  - id: recognition.spot
    version: 1
    event: recognition.given
    roles: [technician, service_advisor, manager]
    points: {fact: points}
    budget: 100
    why: "Recognised: {reason}"
"""


def _pack(tmp_path: Path, text: str = PACK) -> Any:
    return pack_from_text(tmp_path, text)


def _scored(directory: Directory, tmp_path: Path, **changes: Any) -> tuple[list[ScoredEvent], Any]:
    pack = _pack(tmp_path)
    raw = EXAMPLES["recognition.given"] | changes
    event = decode_event(orjson.dumps(raw), now=datetime.fromisoformat("2026-12-31T00:00:00+05:30"))
    record = SourceRecord("recognitions", 0, 0, b"C01", orjson.dumps(raw), 0)
    return [ScoredEvent(record, event, tuple(score_event(event, pack, directory)))], pack


@pytest.fixture
def directory() -> Directory:
    return load_directory(DEFAULT_DIRECTORY)


@pytest.mark.parametrize(
    ("budget", "reason"),
    [
        ("0", "'budget' must be a whole number of points from 1 to 10000000 (per giver per month)"),
        ("2.5", "'budget' must be a whole number of points from 1 to 10000000 (per giver per month)"),
        ("true", "'budget' must be a whole number of points from 1 to 10000000 (per giver per month)"),
        ("lots", "'budget' must be a whole number of points from 1 to 10000000 (per giver per month)"),
        ("{month: 100}", "'budget' must be a whole number of points from 1 to 10000000 (per giver per month)"),
    ],
)
def test_invalid_budgets_are_refused_with_the_reason(tmp_path: Path, budget: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        _pack(tmp_path, PACK.replace("budget: 100", f"budget: {budget}"))
    assert (info.value.line, info.value.reason) == (4, f"rule recognition.spot: {reason}")


def test_a_budget_only_fits_an_event_someone_gives(tmp_path: Path) -> None:
    text = PACK.replace("event: recognition.given", "event: survey.csat").replace("{fact: points}", "5")
    text = text.replace("{reason}", "{rating}")
    with pytest.raises(ConfigError) as info:
        _pack(tmp_path, text)
    assert info.value.reason == (
        "rule recognition.spot: 'budget' is for events a person gives (recognition.given), not survey.csat"
    )


@pytest.mark.parametrize("value", ["-5", "1.5", "true", "'many'", "[1]"])
def test_a_spot_budget_in_the_directory_is_checked(tmp_path: Path, value: str) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(
        "centres:\n- {id: C01, name: A, region: west, state: MH, timezone: Asia/Kolkata}\n"
        f"staff:\n- {{id: S1, name: B, role: manager, centre: C01, spot_budget: {value}}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_directory(path)
    assert info.value.reason == "'spot_budget' must be a whole number of points from 0 to 10000000 (per month)"


def test_a_claim_takes_the_month_of_the_givers_centre_and_all_recipients(directory: Directory, tmp_path: Path) -> None:
    people = [{"staff_id": "S0001", "role": "technician"}, {"staff_id": "S0009", "role": "service_advisor"}]
    scored, pack = _scored(directory, tmp_path, people=people, occurred_at="2026-11-30T20:00:00+00:00")
    (claim,) = claims(scored, pack, directory)
    # 20:00 UTC on 30 November is 1:30 on 1 December in Asia/Kolkata
    assert (claim.giver_id, claim.month, claim.points, claim.limit, claim.refused) == ("S0015", "2026-12", 50, 100, "")
    assert claim.pool == "recognition.spot|S0015|2026-12"


def test_a_givers_own_budget_replaces_the_rules(directory: Directory, tmp_path: Path) -> None:
    directory.staff["S0015"] = replace(directory.staff["S0015"], spot_budget=500)
    scored, pack = _scored(directory, tmp_path)
    assert claims(scored, pack, directory)[0].limit == 500


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"awarded_by": "S9999"}, "S9999 is not in the directory, so has no budget to give from"),
        ({"points": 101}, "101 points is more than the whole monthly budget of 100"),
    ],
)
def test_refused_outright(directory: Directory, tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    scored, pack = _scored(directory, tmp_path, **changes)
    (claim,) = claims(scored, pack, directory)
    assert claim.refused == reason
    settle(scored, [claim], [None])
    (entry,) = scored[0].awards
    assert (entry.kind, entry.points, entry.staff_id) == ("refusal", 0, changes.get("awarded_by", "S0015"))
    assert entry.why == f"Recognition of S0001 refused: {reason}"


def test_a_giver_with_a_budget_of_zero_may_not_give(directory: Directory, tmp_path: Path) -> None:
    directory.staff["S0015"] = replace(directory.staff["S0015"], spot_budget=0)
    scored, pack = _scored(directory, tmp_path)
    (claim,) = claims(scored, pack, directory)
    assert claim.refused == "S0015 has no spot-award budget (spot_budget 0 in the directory)"


def test_a_suspended_giver_gives_nothing(directory: Directory, tmp_path: Path) -> None:
    directory.staff["S0015"] = replace(
        directory.staff["S0015"], suspended_from=datetime.fromisoformat("2026-11-01T00:00:00+05:30")
    )
    scored, pack = _scored(directory, tmp_path)
    assert claims(scored, pack, directory)[0].refused == "S0015 was suspended at the time of the recognition"


def test_a_grant_records_the_budget_on_each_award(directory: Directory, tmp_path: Path) -> None:
    scored, pack = _scored(directory, tmp_path)
    found = claims(scored, pack, directory)
    settle(scored, found, [Decision(True)])
    (award,) = scored[0].awards
    assert award.kind == "award" and award.points == 25
    # not how much was used before it: that depends on the order the giver's recognitions arrive in
    assert {k: v for k, v in award.inputs.items() if k.startswith("budget")} == {
        "budget_of": "S0015",
        "budget_month": "2026-11",
        "budget": 100,
    }
    assert from_ledger([award]) == [("recognition.spot|S0015|2026-11", "rec-3101", "G", award.award_id, 25)]


def test_an_over_budget_recognition_becomes_one_refusal_for_the_giver(directory: Directory, tmp_path: Path) -> None:
    scored, pack = _scored(directory, tmp_path)
    found = claims(scored, pack, directory)
    settle(scored, found, [Decision(False, 80)])
    (entry,) = scored[0].awards
    assert (entry.kind, entry.points, entry.staff_id, entry.role, entry.rule_id) == (
        "refusal",
        0,
        "S0015",
        "manager",
        "recognition.spot",
    )
    assert (
        entry.why == "Recognition of S0001 refused: 25 points would pass the 2026-11 budget (80 of 100 used, 20 left)"
    )
    assert entry.inputs == {
        "asked": 25,
        "budget": 100,
        "budget_month": "2026-11",
        "budget_used": 80,
        "recipients": ["S0001"],
    }
    assert boards_for(entry) == []  # on no board: the giver is not competing
    assert from_ledger([entry]) == [("recognition.spot|S0015|2026-11", "rec-3101", "r:80", entry.award_id, 0)]


def test_the_book_grants_in_order_until_the_budget_runs_out_and_remembers(directory: Directory, tmp_path: Path) -> None:
    scored, pack = _scored(directory, tmp_path)
    (claim,) = claims(scored, pack, directory)
    asks = [replace(claim, event_id=f"e{n}", points=p) for n, p in enumerate([40, 50, 20, 10])]
    book = BudgetBook()
    assert book.decide(asks) == [Decision(True), Decision(True), Decision(False, 90), Decision(True)]
    assert book.decide(asks[2:3]) == [Decision(False, 90)]  # asked again: the same answer, though 0 is left now
    assert book.used == {claim.pool: 100}
    assert book.decide([replace(claim, refused="not in the directory")]) == [None]


@pytest.mark.parametrize("decision", [Decision(True), Decision(False, 0), Decision(False, 1995)])
def test_a_decision_is_stored_as_text_and_read_back(decision: Decision) -> None:
    assert Decision.decode(decision.encode()) == decision
    assert Decision.decode("G") == Decision(True)  # a grant restored from the ledger


def test_a_pack_without_budgets_makes_no_claims(directory: Directory, tmp_path: Path) -> None:
    scored, _ = _scored(directory, tmp_path)
    assert claims(scored, _pack(tmp_path, PACK.replace("    budget: 100\n", "")), directory) == []
