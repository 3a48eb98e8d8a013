"""Retractions: a reopened job card, a refunded sale or a corrected survey takes awards back with ledger
entries of their own, whatever order the events arrive in (agents.retractions, through score_decoded)."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.pipeline import SourceRecord, score_decoded
from agents.retractions import Subject
from agents.rules import RulePack, load_rule_pack
from agents.scoring import Award
from config.directory import Directory
from config.loading import ConfigError
from config.settings import DEFAULT_DIRECTORY, DEFAULT_RULES
from pitstop.oracle import Oracle
from state.subjects import decode, encode, from_ledger
from streams.events import Event, decode_event
from streams.simulator import Simulator

START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
NOW = START + timedelta(days=60)


@pytest.fixture(scope="module")
def pack() -> RulePack:
    return load_rule_pack(DEFAULT_RULES)


def _event(directory: Directory, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    tech = next(s for s in sorted(directory.staff.values(), key=lambda s: s.id) if s.role == "technician")
    base = {
        "event_id": fields.pop("event_id"),
        "type": kind,
        "occurred_at": at.isoformat(),
        "centre_id": tech.centre_id,
        "people": [{"staff_id": tech.id, "role": "technician"}],
        "customer_ref": "cust_abcdefgh",
    }
    return base | fields


def _closed(directory: Directory, at: datetime, event_id: str = "ev-close", jobcard: str = "JC-1") -> dict[str, Any]:
    return _event(
        directory,
        "jobcard.closed",
        at,
        event_id=event_id,
        jobcard_id=jobcard,
        opened_at=(at - timedelta(hours=2)).isoformat(),
        promised_at=(at + timedelta(hours=1)).isoformat(),
        first_time_fix=True,
        flawless=True,
        safety_compliant=True,
    )


def _reopened(directory: Directory, at: datetime, event_id: str = "ev-reopen", jobcard: str = "JC-1") -> dict[str, Any]:
    return _event(
        directory,
        "jobcard.reopened",
        at,
        event_id=event_id,
        jobcard_id=jobcard,
        closed_at=(at - timedelta(days=1)).isoformat(),
    )


def _upsell(directory: Directory, at: datetime, amount: float = 1000.0) -> dict[str, Any]:
    return _event(
        directory, "sale.upsell", at, event_id="ev-sale", sale_id="SL-1", line="amc", amount=amount, currency="INR"
    )


def _refund(directory: Directory, at: datetime, event_id: str, amount: float) -> dict[str, Any]:
    return _event(directory, "sale.refunded", at, event_id=event_id, sale_id="SL-1", amount=amount, currency="INR")


def _survey(directory: Directory, at: datetime, event_id: str, rating: int) -> dict[str, Any]:
    return _event(
        directory,
        "survey.csat",
        at,
        event_id=event_id,
        survey_id="SV-1",
        subject_kind="jobcard",
        subject_id="JC-1",
        rating=rating,
    )


def _decoded(events: Sequence[dict[str, Any]]) -> list[tuple[SourceRecord, Event]]:
    out = []
    for offset, event in enumerate(events):
        raw = orjson.dumps(event)
        out.append((SourceRecord("t", 0, offset, None, raw, 0), decode_event(raw, now=NOW)))
    return out


def _ledger(
    events: Sequence[dict[str, Any]], pack: RulePack, directory: Directory, batches: Sequence[int] = ()
) -> list[Award]:
    """Score the events in this order, cut into batches of these sizes, carrying the subjects over
    (as the worker does through Redis, encoded and decoded between batches)."""
    stored: dict[str, Subject] = {}
    decoded = _decoded(events)
    cuts = [0]
    for size in batches:
        cuts.append(min(len(decoded), cuts[-1] + size))
    cuts.append(len(decoded))
    seen: set[str] = set()
    awards: list[Award] = []
    for start, end in itertools.pairwise(cuts):
        if start >= end:
            continue
        part = decoded[start:end]
        subjects = {k: decode(encode(v), k) for k, v in stored.items()}
        result = score_decoded(part, pack=pack, directory=directory, already_seen=seen, subjects=subjects)
        seen |= {s.event.event_id for s in result.scored}
        stored |= {k: subjects[k] for k in result.changed_subjects}
        awards += [a for _, a in result.awards]
    return awards


def _net(awards: Sequence[Award]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for a in awards:
        totals[a.retracts or a.award_id] += a.points
    return dict(totals)


def test_reopened_job_card_takes_back_the_rules_that_ask_for_it(pack: RulePack, directory: Directory) -> None:
    """flawless and first_time_fix list jobcard.reopened; on_time does not and stays."""
    awards = _ledger([_closed(directory, START), _reopened(directory, START + timedelta(days=3))], pack, directory)
    retractions = [a for a in awards if a.kind == "retraction"]
    originals = {a.award_id: a for a in awards if a.kind == "award"}
    assert sorted(originals[r.retracts].rule_id for r in retractions) == ["jobcard.first_time_fix", "jobcard.flawless"]
    for r in retractions:
        original = originals[r.retracts]
        assert r.points == -original.points
        assert (r.staff_id, r.season, r.rule_id, r.event_type) == (
            original.staff_id,
            original.season,
            original.rule_id,
            "jobcard.reopened",
        )
        assert r.why.startswith("Taken back (job card reopened): ")
        assert r.inputs == {"retracted_award": original.award_id, "original_points": original.points}
        assert orjson.loads(r.to_ledger())["retracts"] == original.award_id
    on_time = next(a for a in originals.values() if a.rule_id == "jobcard.on_time")
    assert _net(awards)[on_time.award_id] == on_time.points


def test_reopening_arriving_first_gives_the_same_entries(pack: RulePack, directory: Directory) -> None:
    events = [_closed(directory, START), _reopened(directory, START + timedelta(days=3))]
    in_order = _ledger(events, pack, directory)
    reversed_ = _ledger(events[::-1], pack, directory)
    assert sorted(a.to_ledger() for a in in_order) == sorted(a.to_ledger() for a in reversed_)


def test_two_reopenings_take_an_award_back_once(pack: RulePack, directory: Directory) -> None:
    events = [
        _closed(directory, START),
        _reopened(directory, START + timedelta(days=3), "ev-r1"),
        _reopened(directory, START + timedelta(days=5), "ev-r2"),
    ]
    for order in (events, events[::-1], [events[1], events[0], events[2]]):
        awards = _ledger(order, pack, directory, batches=[1, 1])
        assert sum(1 for a in awards if a.kind == "retraction") == 2
        assert all(v >= 0 for v in _net(awards).values())


def test_a_reopening_before_the_closing_takes_nothing(pack: RulePack, directory: Directory) -> None:
    """By event time: a reopening that happened before this closing is about an earlier visit."""
    events = [_reopened(directory, START - timedelta(days=1)), _closed(directory, START)]
    assert [a for a in _ledger(events, pack, directory) if a.kind == "retraction"] == []


def test_refunds_take_back_their_share_and_never_more_than_the_award(pack: RulePack, directory: Directory) -> None:
    """amc is 40 points; a 25 % refund takes 10, a later full refund (more than the sale, in all) only
    the 30 left, and says so."""
    sale = _upsell(directory, START)
    quarter = _refund(directory, START + timedelta(days=1), "ev-q", 250.0)
    full = _refund(directory, START + timedelta(days=2), "ev-f", 1000.0)
    awards = _ledger([sale, quarter, full], pack, directory, batches=[1, 1])
    taken = [(a.event_id, a.points, a.inputs["share"]) for a in awards if a.kind == "retraction"]
    assert taken == [("ev-q", -10, "0.2500"), ("ev-f", -30, "1.0000")]
    assert [a.inputs.get("capped") for a in awards if a.kind == "retraction"] == [None, True]
    assert _net(awards) == {awards[0].award_id: 0}


def test_partial_refunds_in_any_order_give_the_same_entries(pack: RulePack, directory: Directory) -> None:
    events = [
        _upsell(directory, START),
        _refund(directory, START + timedelta(days=1), "ev-a", 100.0),
        _refund(directory, START + timedelta(days=2), "ev-b", 333.33),
    ]
    results = {tuple(sorted(a.to_ledger() for a in _ledger(p, pack, directory))) for p in _orders(events)}
    assert len(results) == 1


def _orders(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [list(p) for p in itertools.permutations(events)]


def test_a_corrected_survey_takes_the_earlier_answer_back(pack: RulePack, directory: Directory) -> None:
    """Five stars, then corrected to three: the five-star award is taken back; corrected to five
    again later: a new award. In every arrival order."""
    first = _survey(directory, START, "ev-s1", 5)
    second = _survey(directory, START + timedelta(hours=1), "ev-s2", 3)
    third = _survey(directory, START + timedelta(hours=2), "ev-s3", 5)
    results = set()
    for order in _orders([first, second, third]):
        awards = _ledger(order, pack, directory, batches=[1, 1])
        net = _net(awards)
        live = {a.event_id for a in awards if a.kind == "award" and net[a.award_id] > 0}
        assert live == {"ev-s3"}
        results.add(tuple(sorted(a.to_ledger() for a in awards)))
    assert len(results) == 1


def test_subject_record_round_trips(pack: RulePack, directory: Directory) -> None:
    subjects: dict[str, Subject] = {}
    decoded = _decoded([_closed(directory, START), _reopened(directory, START + timedelta(days=1))])
    score_decoded(decoded, pack=pack, directory=directory, subjects=subjects)
    ((key, subject),) = subjects.items()
    assert len(subject.awards) == 2 and len(subject.takers) == 1 and len(subject.taken) == 2
    again = decode(encode(subject), key)
    assert (again.takers, again.taken) == (subject.takers, subject.taken)
    assert again.awards == {k: replace(a, inputs={}, multipliers=()) for k, a in subject.awards.items()}


def test_subjects_are_restored_from_the_ledger_but_for_the_takers(pack: RulePack, directory: Directory) -> None:
    """After Redis lost them, the ledger gives back each subject's awards and retractions (the events
    that took something back are not on the ledger: docs/rules.md, known limits)."""
    subjects: dict[str, Subject] = {}
    events = [_closed(directory, START), _reopened(directory, START + timedelta(days=1)), _upsell(directory, START)]
    result = score_decoded(_decoded(events), pack=pack, directory=directory, subjects=subjects)
    restored = from_ledger(a for _, a in result.awards)
    assert set(restored) == set(subjects) == {"jobcard:JC-1", "sale:SL-1"}
    for key, subject in subjects.items():
        assert (restored[key].awards, restored[key].taken) == (subject.awards, subject.taken)


def test_without_subjects_nothing_is_taken_back(pack: RulePack, directory: Directory) -> None:
    """score_decoded without subjects is the stateless scorer: awards only."""
    decoded = _decoded([_closed(directory, START), _reopened(directory, START + timedelta(days=1))])
    result = score_decoded(decoded, pack=pack, directory=directory)
    assert result.changed_subjects == set()
    assert all(a.kind == "award" for _, a in result.awards)


def _stream(directory: Directory, seed: int, count: int) -> list[dict[str, Any]]:
    sim = Simulator(directory, seed=seed, follow_ups=0.35)
    return [dict(sim.event(START + timedelta(minutes=7 * i))) for i in range(count)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle=st.randoms(use_true_random=False), data=st.data())
def test_ledger_is_the_same_for_any_arrival_order(
    seed: int, shuffle: random.Random, data: st.DataObject, pack: RulePack, directory: Directory
) -> None:
    """The same events in any order, cut into any batches, give the same ledger entries, byte for byte;
    repeats change nothing; and the independent oracle agrees on every id and point."""
    events = _stream(directory, seed, 120)
    arrival = events + shuffle.sample(events, 10)  # some repeats
    shuffle.shuffle(arrival)
    batches = data.draw(st.lists(st.integers(1, 40), max_size=8))
    in_order = _ledger(events, pack, directory)
    shuffled = _ledger(arrival, pack, directory, batches)
    assert sorted(a.to_ledger() for a in shuffled) == sorted(a.to_ledger() for a in in_order)
    assert len({a.award_id for a in shuffled}) == len(shuffled)
    expected = Oracle(DEFAULT_RULES, DEFAULT_DIRECTORY).fold(events)
    assert {a.award_id: a.points for a in shuffled} == {e.award_id: e.points for e in expected.values()}


def test_the_simulated_follow_ups_take_awards_back(pack: RulePack, directory: Directory) -> None:
    """The generator behind the property test really produces all three kinds of retraction."""
    awards = _ledger(_stream(directory, 5, 600), pack, directory)
    kinds = {a.event_type for a in awards if a.kind == "retraction"}
    assert kinds == {"jobcard.reopened", "sale.refunded", "survey.csat", "survey.nps"} or kinds >= {
        "jobcard.reopened",
        "sale.refunded",
        "survey.csat",
    }


@pytest.mark.parametrize(
    ("retracted_by", "reason"),
    [
        (
            "[sale.refunded]",
            "rule r.x: 'retracted_by': sale.refunded cannot take back a jobcard.closed award "
            "(one of: jobcard.reopened)",
        ),
        ("jobcard.reopened", "rule r.x: 'retracted_by' must be a list of event types"),
        ("[jobcard.reopened, jobcard.reopened]", "rule r.x: 'retracted_by' lists an event type twice"),
    ],
)
def test_invalid_retracted_by_is_refused(tmp_path: Path, retracted_by: str, reason: str) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(
        "pack: p\nversion: 1\nrules:\n  - id: r.x\n    version: 1\n    event: jobcard.closed\n"
        f"    roles: [technician]\n    points: 5\n    retracted_by: {retracted_by}\n    why: x\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_rule_pack(path)
    assert (info.value.line, info.value.reason) == (4, reason)


def test_survey_rules_need_no_retracted_by(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(
        "pack: p\nversion: 1\nrules:\n  - id: r.s\n    version: 1\n    event: survey.csat\n"
        "    roles: [technician]\n    points: 5\n    retracted_by: [jobcard.reopened]\n    why: x\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"survey\.csat awards need no 'retracted_by'"):
        load_rule_pack(path)


def test_nothing_takes_back_a_ticket_award(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(
        "pack: p\nversion: 1\nrules:\n  - id: r.t\n    version: 1\n    event: ticket.resolved\n"
        "    roles: [support_agent]\n    points: 5\n    retracted_by: [sale.refunded]\n    why: x\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="nothing takes back an award of this event type"):
        load_rule_pack(path)
