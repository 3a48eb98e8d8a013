"""Rule packs: the default pack's exact points per family, condition semantics, derived facts, bad packs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.rules import Condition, Multiplier, Rule, RulePack, evaluate, event_facts, load_rule_pack
from config.loading import ConfigError
from streams.contract import EVENT_TYPES, ROLES, WINDOW_TYPES
from streams.events import decode_event
from streams.examples import EXAMPLES

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def rule_of(pack: RulePack, rule_id: str) -> Rule:
    (found,) = [r for r in pack.rules if r.id == rule_id]
    return found


def points(pack: RulePack, rule_id: str, facts: dict[str, Any]) -> int | None:
    """The points ``rule_id`` of ``pack`` gives ``facts`` (None when it does not fire)."""
    outcome = evaluate(rule_of(pack, rule_id), facts)
    return None if outcome is None else outcome.points


def simple_rule(base: int | str, *factors: str, why: str = "well done") -> Rule:
    """A survey.csat rule firing on rating 5, with one always-matching multiplier per factor."""
    multipliers = tuple(
        Multiplier(f"m{i}", (Condition("rating", "gte", 1),), Decimal(f)) for i, f in enumerate(factors)
    )
    return Rule(
        "test.rule",
        1,
        "survey.csat",
        frozenset({"technician"}),
        (Condition("rating", "eq", 5),),
        base,
        multipliers,
        why,
    )


def facts_of(event_type: str, **changes: Any) -> dict[str, Any]:
    """The facts rules read for the example of ``event_type`` with ``changes``."""
    data = {**copy.deepcopy(EXAMPLES[event_type]), **changes}
    return event_facts(decode_event(orjson.dumps(data), now=NOW))


# --- the default pack ---------------------------------------------------------------------------


def test_default_pack_loads(pack: RulePack) -> None:
    """The default pack has its name, version 2 and 22 rules with unique ids and known types and roles."""
    assert (pack.name, pack.version, len(pack.rules)) == ("pitstop-default", 2, 22)
    assert [(b.id, b.name) for b in pack.badges] == [
        ("csat-star", "CSAT star"),
        ("zero-comebacks", "Zero comebacks"),
        ("flawless-five", "Flawless five"),
        ("sla-keeper", "SLA keeper"),
    ]
    assert {r.id: r.badge.id for r in pack.rules if r.badge} == {
        "kpi.csat_star": "csat-star",
        "kpi.zero_comebacks": "zero-comebacks",
        "kpi.flawless_five": "flawless-five",
        "kpi.sla_keeper": "sla-keeper",
    }
    assert len({r.id for r in pack.rules}) == 22
    assert all((r.on in EVENT_TYPES or r.on in WINDOW_TYPES) and r.roles <= set(ROLES) for r in pack.rules)
    assert pack.window_kinds == {"week", "month"}
    assert [r.id for r in pack.rules_for("jobcard.closed")] == [
        "jobcard.flawless",
        "jobcard.on_time",
        "jobcard.first_time_fix",
        "jobcard.early_defect",
    ]
    assert pack.rules_for("ticket.opened") == ()
    assert rule_of(pack, "jobcard.flawless").line == 18


@pytest.mark.parametrize(
    ("safety", "first_fix", "expected", "why"),
    [
        (True, True, 30, "Flawless job card JC-1 (quality x1.5)"),
        (True, False, 20, "Flawless job card JC-1"),
        (False, True, 20, "Flawless job card JC-1"),
    ],
)
def test_flawless_jobcard(pack: RulePack, safety: bool, first_fix: bool, expected: int, why: str) -> None:
    """A flawless card earns 20, x1.5 only when it is also safety-compliant and a first-time fix."""
    facts = {"flawless": True, "safety_compliant": safety, "first_time_fix": first_fix, "jobcard_id": "JC-1"}
    outcome = evaluate(rule_of(pack, "jobcard.flawless"), facts)
    assert outcome is not None
    assert (outcome.points, outcome.why) == (expected, why)
    assert outcome.multipliers == ((("quality", "1.5"),) if expected == 30 else ())
    assert points(pack, "jobcard.flawless", {**facts, "flawless": False}) is None


@pytest.mark.parametrize(("on_time", "ratio", "expected"), [(True, 0.75, 15), (True, 0.76, 10), (False, 0.5, None)])
def test_on_time_jobcard(pack: RulePack, on_time: bool, ratio: float, expected: int | None) -> None:
    """An on-time card earns 10, x1.5 when it took at most 75% of the promised time; a late one earns nothing."""
    facts = {"on_time": on_time, "turnaround_ratio": ratio, "jobcard_id": "JC-1"}
    assert points(pack, "jobcard.on_time", facts) == expected


def test_on_time_why_fills_minutes(pack: RulePack) -> None:
    """The on-time notification states the minutes taken and promised, and the speed multiplier."""
    outcome = evaluate(rule_of(pack, "jobcard.on_time"), facts_of("jobcard.closed"))
    assert outcome is not None
    assert outcome.why == "Job card JC-2026-11-0001 delivered on time (330 of 475 promised minutes) (speed x1.5)"
    assert outcome.inputs == {
        "on_time": True,
        "turnaround_ratio": 0.6947,
        "jobcard_id": "JC-2026-11-0001",
        "turnaround_minutes": 330,
        "promised_minutes": 475,
    }


@pytest.mark.parametrize(
    ("rule_id", "facts", "expected"),
    [
        ("jobcard.first_time_fix", {"first_time_fix": True, "jobcard_id": "J"}, 15),
        ("jobcard.first_time_fix", {"first_time_fix": False, "jobcard_id": "J"}, None),
        ("jobcard.early_defect", {"early_defect_detected": True, "jobcard_id": "J"}, 10),
        ("jobcard.early_defect", {"jobcard_id": "J"}, None),
        ("survey.csat_five_star", {"rating": 5, "subject_kind": "ticket", "subject_id": "T"}, 25),
        ("survey.csat_five_star", {"rating": 4, "subject_kind": "ticket", "subject_id": "T"}, None),
        ("survey.nps_promoter", {"score": 9}, 15),
        ("survey.nps_promoter", {"score": 10}, 15),
        ("survey.nps_promoter", {"score": 8}, None),
        ("sale.vehicle", {"model": "SUV", "sale_id": "V1"}, 50),
        ("recognition.spot", {"points": 40, "reason": "help"}, 40),
        ("recognition.spot", {"points": 0, "reason": "help"}, None),
        ("recognition.spot", {"points": True, "reason": "help"}, None),
        ("recognition.spot", {"reason": "help"}, None),
    ],
)
def test_single_rule_points(pack: RulePack, rule_id: str, facts: dict[str, Any], expected: int | None) -> None:
    """Each workshop, survey, vehicle and recognition rule gives its exact points or does not fire."""
    assert points(pack, rule_id, facts) == expected


@pytest.mark.parametrize(
    ("line", "rule_id", "expected"),
    [
        ("amc", "upsell.amc", 40),
        ("extended_warranty", "upsell.extended_warranty", 35),
        ("ceramic_coating", "upsell.ceramic_coating", 30),
        ("service_package", "upsell.service_package", 25),
        ("tyres", "upsell.tyres", 15),
        ("batteries", "upsell.batteries", 10),
        ("insurance_renewal", "upsell.insurance_renewal", 20),
    ],
)
def test_exactly_one_upsell_rule_fires_per_line(pack: RulePack, line: str, rule_id: str, expected: int) -> None:
    """An upsell line fires only its own rule, with that line's points."""
    fired = {}
    for rule in pack.rules_for("sale.upsell"):
        outcome = evaluate(rule, {"line": line, "sale_id": "SO-1"})
        if outcome is not None:
            fired[rule.id] = outcome.points
    assert fired == {rule_id: expected}


@pytest.mark.parametrize(
    ("within_sla", "ratio", "notes", "expected", "suffix"),
    [
        (True, 0.5, True, 27, " (speed x1.5, quality x1.2)"),
        (True, 0.5, False, 23, " (speed x1.5)"),  # 22.5 rounds half up
        (True, 0.9, True, 18, " (quality x1.2)"),
        (True, 0.9, False, 15, ""),
        (False, 0.1, True, None, ""),
    ],
)
def test_ticket_within_sla(
    pack: RulePack, within_sla: bool, ratio: float, notes: bool, expected: int | None, suffix: str
) -> None:
    """A ticket resolved within SLA earns 15, x1.5 for speed and x1.2 for complete notes, rounded half up."""
    facts = {
        "within_sla": within_sla,
        "resolution_ratio": ratio,
        "case_notes_complete": notes,
        "priority": "P1",
        "ticket_id": "TK-1",
    }
    outcome = evaluate(rule_of(pack, "ticket.resolved_within_sla"), facts)
    assert (outcome.points if outcome else None) == expected
    if outcome is not None:
        assert outcome.why == "P1 ticket TK-1 resolved within SLA" + suffix


# --- evaluation semantics -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "factors", "expected"),
    [
        (10, ("1.25",), 13),  # 12.5 -> 13
        (15, ("1.5",), 23),  # 22.5 -> 23
        (10, ("1.24",), 12),  # 12.4 -> 12
        (7, ("0.5",), 4),  # 3.5 -> 4
        (10, ("1.5", "1.5"), 23),  # 22.5 -> 23
        (3, ("0.1",), None),  # 0.3 -> 0: no award
    ],
)
def test_multipliers_round_half_up(base: int, factors: tuple[str, ...], expected: int | None) -> None:
    """Points are base x every matching factor, rounded half up; a total that rounds to 0 is no award."""
    outcome = evaluate(simple_rule(base, *factors), {"rating": 5})
    assert (outcome.points if outcome else None) == expected


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", 5, 5, True),
        ("eq", 5, 4, False),
        ("eq", "amc", "amc", True),
        ("ne", 5, 4, True),
        ("ne", 5, 5, False),
        ("lt", 5, 4, True),
        ("lt", 5, 5, False),
        ("lte", 5, 5, True),
        ("lte", 5, 6, False),
        ("gt", 5, 6, True),
        ("gt", 5, 5, False),
        ("gte", 5, 5, True),
        ("gte", 5, 4, False),
        ("in", ("P1", "P2"), "P2", True),
        ("in", ("P1", "P2"), "P3", False),
    ],
)
def test_condition_ops(op: str, value: Any, actual: Any, expected: bool) -> None:
    """Every comparison op compares the fact (left) with the rule's value (right)."""
    assert Condition("x", op, value).holds({"x": actual}) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "lte", "gt", "gte", "in"])
def test_missing_or_null_fact_makes_condition_false(op: str) -> None:
    """A fact the event lacks (or sends as null) never satisfies a condition, not even 'ne'."""
    value: Any = (1, 2) if op == "in" else 1
    assert Condition("x", op, value).holds({}) is False
    assert Condition("x", op, value).holds({"x": None}) is False


@pytest.mark.parametrize(("op", "value", "actual"), [("lt", 5, "four"), ("gte", 9, "ten"), ("gt", 0.5, [1])])
def test_type_mismatch_makes_condition_false(op: str, value: Any, actual: Any) -> None:
    """Comparing a text (or list) fact with a number is false, not an exception."""
    assert Condition("x", op, value).holds({"x": actual}) is False


def test_inputs_record_absent_facts_as_none() -> None:
    """An award's inputs list every fact the rule reads, None for those the event lacks."""
    outcome = evaluate(simple_rule(10, why="Rated {rating} for {subject_id}"), {"rating": 5})
    assert outcome is not None
    assert outcome.inputs == {"rating": 5, "subject_id": None}


def test_why_placeholder_for_absent_fact_is_a_question_mark() -> None:
    """A why placeholder whose fact the event lacks is shown as '?', not 'None'."""
    outcome = evaluate(simple_rule(10, why="Rated {rating} for {subject_id}"), {"rating": 5})
    assert outcome is not None
    assert outcome.why == "Rated 5 for ?"


def test_rule_reads_facts_in_stable_order(pack: RulePack) -> None:
    """A rule's inputs are its when facts, then multiplier facts, then points fact, then why placeholders."""
    assert rule_of(pack, "ticket.resolved_within_sla").reads() == (
        "within_sla",
        "resolution_ratio",
        "case_notes_complete",
        "priority",
        "ticket_id",
    )
    assert rule_of(pack, "recognition.spot").reads() == ("points", "reason")


# --- derived facts ------------------------------------------------------------------------------


def test_jobcard_closed_derived_facts_across_offsets() -> None:
    """Turnaround and promise minutes are computed from instants, whatever offset each time uses."""
    facts = facts_of(
        "jobcard.closed",
        opened_at="2026-11-23T09:05:00+05:30",  # 03:35Z
        occurred_at="2026-11-23T06:05:00Z",
        promised_at="2026-11-23T12:35:00Z",
    )
    assert [facts[k] for k in ("turnaround_minutes", "promised_minutes", "turnaround_ratio", "on_time")] == [
        150,
        540,
        0.2778,
        True,
    ]


def test_late_jobcard_is_not_on_time() -> None:
    """A card closed after its promise is not on time and its ratio is above 1; seconds give tenths."""
    facts = facts_of("jobcard.closed", occurred_at="2026-11-23T17:01:30+05:30")
    assert facts["turnaround_minutes"] == 476.5
    assert facts["promised_minutes"] == 475
    assert facts["turnaround_ratio"] == 1.0032
    assert facts["on_time"] is False


def test_closing_exactly_at_promise_is_on_time() -> None:
    """A card delivered at the promised instant (written in another offset) counts as on time."""
    facts = facts_of("jobcard.closed", occurred_at="2026-11-23T11:30:00Z")  # 17:00 +05:30
    assert (facts["turnaround_ratio"], facts["on_time"]) == (1.0, True)


def test_ticket_resolved_derived_facts() -> None:
    """Resolution minutes, allowed minutes, ratio and within_sla come from the ticket's times."""
    facts = facts_of("ticket.resolved")
    assert (facts["resolution_minutes"], facts["allowed_minutes"]) == (180, 480)
    assert (facts["resolution_ratio"], facts["within_sla"]) == (0.375, True)
    late = facts_of("ticket.resolved", occurred_at="2026-11-23T13:00:00Z", resolution_due_at="2026-11-23T12:00:00Z")
    assert (late["resolution_minutes"], late["allowed_minutes"], late["within_sla"]) == (510, 450, False)
    assert late["resolution_ratio"] == 1.1333


def test_first_response_derived_facts() -> None:
    """First-response minutes and responded_in_time are derived for ticket.first_response."""
    facts = facts_of("ticket.first_response")
    assert [facts[k] for k in ("response_minutes", "allowed_minutes", "response_ratio", "responded_in_time")] == [
        20,
        60,
        0.3333,
        True,
    ]


def test_other_types_get_no_derived_facts() -> None:
    """A survey's facts are exactly its payload."""
    assert facts_of("survey.csat") == EXAMPLES["survey.csat"]


# --- invalid packs ------------------------------------------------------------------------------

HEAD = "pack: test\nversion: 1\nrules:\n"
RULE = """\
  - id: survey.five
    version: 1
    event: survey.csat
    roles: [technician]
    when: {rating: 5}
    points: 10
    why: "Five stars on {subject_id}"
"""
LABEL = "rule survey.five: "
FACTOR = f"{LABEL}multiplier boost: 'factor' must be a number above 0 and at most 10"
POINTS = (
    f"{LABEL}'points' must be a whole number from 1 to 100000, {{fact: NAME}} or a formula such as "
    '"min(amount / 1000, 50)"'
)
OPS = "write {op: value} with op one of eq, ne, lt, lte, gt, gte, in"


def with_multiplier(spec: str) -> str:
    return HEAD + RULE.replace("    why:", f"    multipliers:\n      - {spec}\n    why:")


def write_pack(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_pack_loads_every_op(tmp_path: Path) -> None:
    """A valid pack using every op loads into conditions and multipliers; 'in' lists become tuples."""
    text = HEAD + RULE.replace("{rating: 5}", "{rating: {in: [4, 5]}, subject_kind: {ne: sale}, score: 1}").replace(
        "    why:",
        "    multipliers:\n      - {name: m, when: {rating: {gt: 3}, feedback: {eq: ok}}, factor: 2}\n"
        "      - {name: n, when: {rating: {lt: 9}, customer_ref: {lte: 1}, survey_id: {gte: 0}}, factor: 0.5}\n"
        "    why:",
    )
    with pytest.raises(ConfigError, match="unknown fact 'score'"):
        load_rule_pack(write_pack(tmp_path, text))
    (rule,) = load_rule_pack(write_pack(tmp_path, text.replace(", score: 1", ""))).rules
    assert rule.when == (Condition("rating", "in", (4, 5)), Condition("subject_kind", "ne", "sale"))
    assert rule.multipliers == (
        Multiplier("m", (Condition("rating", "gt", 3), Condition("feedback", "eq", "ok")), Decimal(2)),
        Multiplier(
            "n",
            (Condition("rating", "lt", 9), Condition("customer_ref", "lte", 1), Condition("survey_id", "gte", 0)),
            Decimal("0.5"),
        ),
    )
    assert (rule.id, rule.version, rule.on, rule.roles, rule.points, rule.line) == (
        "survey.five",
        1,
        "survey.csat",
        frozenset({"technician"}),
        10,
        4,
    )


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param("owner: x\n" + HEAD + RULE, 1, "unknown top-level key(s): owner", id="unknown-top-key"),
        pytest.param("version: 1\nrules:\n" + RULE, 1, "'pack' must name the pack", id="no-pack-name"),
        pytest.param(
            HEAD.replace("version: 1", "version: 0") + RULE,
            1,
            "'version' must be a whole number from 1",
            id="version-0",
        ),
        pytest.param(HEAD.replace("rules:\n", "rules: []\n"), 1, "'rules' must be a non-empty list", id="no-rules"),
        pytest.param(HEAD + RULE + RULE, 11, "rule survey.five version 1 is defined twice", id="duplicate-id"),
        pytest.param(
            HEAD + RULE.replace("survey.five", "Survey-Five"),
            4,
            "'id' must be lower-case words separated by dots, e.g. jobcard.flawless",
            id="bad-id",
        ),
        pytest.param(
            HEAD + RULE.replace("event: survey.csat", "event: survey.ces"),
            4,
            f"{LABEL}'event' must be an event type (one of: {', '.join(sorted(EVENT_TYPES))}) or a KPI window "
            "closing (one of: window.day, window.week, window.month, window.30d)",
            id="unknown-event",
        ),
        pytest.param(
            HEAD + RULE.replace("[technician]", "[technician, chef]"),
            4,
            f"{LABEL}unknown role(s) chef (one of: {', '.join(ROLES)})",
            id="unknown-role",
        ),
        pytest.param(
            HEAD + RULE.replace("[technician]", "[]"),
            4,
            f"{LABEL}'roles' must be a non-empty list of roles",
            id="empty-roles",
        ),
        pytest.param(
            HEAD + RULE.replace("{rating: 5}", "{stars: 5}"),
            4,
            f"{LABEL}unknown fact 'stars' for this event type",
            id="unknown-fact",
        ),
        pytest.param(
            HEAD + RULE.replace("{rating: 5}", "{rating: {between: 5}}"), 4, f"{LABEL}rating: {OPS}", id="bad-op"
        ),
        pytest.param(
            HEAD + RULE.replace("{rating: 5}", "{rating: {in: 5}}"),
            4,
            f"{LABEL}rating: 'in' takes a list",
            id="in-without-list",
        ),
        pytest.param(
            HEAD + RULE.replace("{rating: 5}", "{rating: {lt: five}}"),
            4,
            f"{LABEL}rating: 'lt' compares with a number",
            id="lt-string",
        ),
        pytest.param(
            HEAD + RULE.replace("{rating: 5}", "[rating]"),
            4,
            f"{LABEL}'when' must map facts to values, or be an expression such as \"rating >= 4\"",
            id="when-list",
        ),
        pytest.param(HEAD + RULE.replace("points: 10", "points: 0"), 4, POINTS, id="points-0"),
        pytest.param(
            HEAD + RULE.replace("points: 10", "points: ten"),
            4,
            f"{LABEL}'points': unknown fact 'ten' for this event type",
            id="points-ten",
        ),
        pytest.param(HEAD + RULE.replace("points: 10", "points: {fact: bonus}"), 4, POINTS, id="points-unknown-fact"),
        pytest.param(with_multiplier("{name: boost, when: {rating: 5}, factor: 0}"), 11, FACTOR, id="factor-0"),
        pytest.param(with_multiplier("{name: boost, when: {rating: 5}, factor: 11}"), 11, FACTOR, id="factor-11"),
        pytest.param(
            with_multiplier("{name: boost, factor: 2}"),
            11,
            f"{LABEL}multiplier boost: 'when' must hold at least one condition",
            id="multiplier-without-when",
        ),
        pytest.param(
            with_multiplier("{name: boost, when: {rating: 5}, factor: 2, cap: 3}"),
            11,
            f"{LABEL}a multiplier is {{name, when, factor}}",
            id="multiplier-unknown-key",
        ),
        pytest.param(
            HEAD + RULE.replace("{subject_id}", "{staff_name}"),
            4,
            f"{LABEL}'why' uses {{staff_name}}, which is not a fact of survey.csat",
            id="why-unknown-placeholder",
        ),
        pytest.param(
            HEAD + RULE.replace('"Five stars on {subject_id}"', '"Five stars {"'),
            4,
            f"{LABEL}'why' is not a valid template: Single '{{' encountered in format string",
            id="why-broken-template",
        ),
        pytest.param(
            HEAD + RULE.replace("{subject_id}", "{subject_id.upper}"),
            4,
            f"{LABEL}'why' uses {{subject_id.upper}}, which is not a fact of survey.csat",
            id="why-attribute-access",
        ),
        pytest.param(
            HEAD + RULE.replace("event: survey.csat", "evnt: survey.csat"),
            4,
            "unknown key(s): evnt (allowed: badge, budget, cap, effective_from, effective_to, event, exclude, id, "
            "multipliers, points, retracted_by, roles, version, when, why)",
            id="typo-key",
        ),
        pytest.param(
            HEAD + RULE.replace("event: survey.csat", "on: survey.csat"),
            4,
            "unknown key(s): True (allowed: badge, budget, cap, effective_from, effective_to, event, exclude, id, "
            "multipliers, points, retracted_by, roles, version, when, why)",
            id="yaml-on-is-true",
        ),
        pytest.param(
            HEAD + RULE.replace("points: 10", "points: 10\n    points: 20"),
            10,
            "duplicate key 'points'",
            id="duplicate-key",
        ),
        pytest.param(
            HEAD + RULE + "  - id: [unclosed\n",
            12,
            "not valid YAML: expected ',' or ']', but got '<stream end>'",
            id="invalid-yaml",
        ),
        pytest.param("", None, "the file is empty", id="empty-file"),
        pytest.param("- a\n- b\n", 1, "expected a mapping with 'pack', 'version' and 'rules'", id="top-level-list"),
    ],
)
def test_invalid_pack_reports_reason_and_line(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    """Each invalid rule pack raises ConfigError with the exact reason and the line of the offending rule."""
    with pytest.raises(ConfigError) as info:
        load_rule_pack(write_pack(tmp_path, text))
    assert (info.value.line, info.value.reason) == (line, reason)


def test_invalid_pack_error_names_the_file(tmp_path: Path) -> None:
    """A rule error's message starts with the pack's path and line."""
    path = write_pack(tmp_path, HEAD + RULE.replace("[technician]", "[]"))
    with pytest.raises(ConfigError) as info:
        load_rule_pack(path)
    assert str(info.value) == f"{path}:4: {LABEL}'roles' must be a non-empty list of roles"


def test_missing_pack_file(tmp_path: Path) -> None:
    """A pack path that does not exist is reported as such."""
    with pytest.raises(ConfigError) as info:
        load_rule_pack(tmp_path / "absent.yaml")
    assert (info.value.path, info.value.reason) == (str(tmp_path / "absent.yaml"), "no such file")


def test_duplicate_key_error_names_the_pack_file(tmp_path: Path) -> None:
    """A duplicate YAML key in a rule pack is reported with the pack's path, like any other pack error."""
    path = write_pack(tmp_path, HEAD + RULE.replace("points: 10", "points: 10\n    points: 20"))
    with pytest.raises(ConfigError) as info:
        load_rule_pack(path)
    assert str(info.value) == f"{path}:10: duplicate key 'points'"
