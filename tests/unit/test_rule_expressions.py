"""Rule expressions (safe, validated at load), formulas for points, and effective windows by event time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agents.rules import Expression, evaluate
from tests.unit.conftest import pack_from_text, pack_refusal

HEAD = "pack: test\nversion: 1\nrules:\n"


def rule(
    *, when: str = '"rating >= 4"', points: str = "10", extra: str = "", rule_id: str = "survey.good", version: int = 1
) -> str:
    return (
        f"  - id: {rule_id}\n"
        f"    version: {version}\n"
        "    event: survey.csat\n"
        "    roles: [technician]\n"
        f"    when: {when}\n"
        f"    points: {points}\n"
        f"{extra}"
        '    why: "Rated {rating}"\n'
    )


@pytest.mark.parametrize(
    ("expression", "facts", "fires"),
    [
        ("rating >= 4", {"rating": 5}, True),
        ("rating >= 4", {"rating": 3}, False),
        ("rating >= 4 and subject_kind == 'jobcard'", {"rating": 4, "subject_kind": "jobcard"}, True),
        ("rating >= 4 and subject_kind == 'jobcard'", {"rating": 4, "subject_kind": "ticket"}, False),
        ("rating in (4, 5) or not subject_kind", {"rating": 1, "subject_kind": ""}, True),
        ("subject_kind not in ['sale', 'ticket']", {"subject_kind": "jobcard"}, True),
        ("rating >= 4", {}, False),  # a missing fact: the condition does not hold
        ("rating >= 4", {"rating": None}, False),
        ("rating >= 4", {"rating": "five"}, False),  # a string against a number does not hold
        ("rating", {"rating": 5}, False),  # a condition must be exactly true, not just truthy
        ("rating / 0 > 1", {"rating": 5}, False),  # no value: does not hold
        ("max(rating, 2) == 5 if rating > 2 else False", {"rating": 5}, True),
    ],
)
def test_expression_conditions(tmp_path: Path, expression: str, facts: dict[str, Any], fires: bool) -> None:
    pack = pack_from_text(tmp_path, HEAD + rule(when=f'"{expression}"'))
    assert (evaluate(pack.rules[0], facts) is not None) is fires


def test_numbers_are_decimal_so_thresholds_are_exact(tmp_path: Path) -> None:
    """0.1 + 0.2 == 0.3 in a rule, and float facts are read as the decimals they print as."""
    pack = pack_from_text(tmp_path, HEAD + rule(when='"rating * 0.1 + 0.2 == 0.7"', points='"rating * 0.1 + 0.11"'))
    assert evaluate(pack.rules[0], {"rating": 5}) is not None
    formula = pack.rules[0].points
    assert isinstance(formula, Expression) and formula.value({"rating": 0.1}) == Decimal("0.12")


@pytest.mark.parametrize(
    ("formula", "facts", "points"),
    [
        ('"rating * 5"', {"rating": 4}, 20),
        ('"min(rating * 7.5, 30)"', {"rating": 5}, 30),
        ('"rating * 2.25"', {"rating": 1}, 2),  # 2.25 rounds half up to 2
        ('"rating * 2.5"', {"rating": 1}, 3),  # 2.5 rounds half up to 3
        ('"rating - 5"', {"rating": 5}, None),  # zero points: no award
        ('"subject_kind"', {"rating": 5, "subject_kind": "jobcard"}, None),  # not a number: no award
    ],
)
def test_points_formulas(tmp_path: Path, formula: str, facts: dict[str, Any], points: int | None) -> None:
    pack = pack_from_text(tmp_path, HEAD + rule(when='"rating > 0"', points=formula))
    outcome = evaluate(pack.rules[0], facts)
    assert (outcome.points if outcome else None) == points


def test_formula_facts_are_recorded_as_inputs(tmp_path: Path) -> None:
    """An award's inputs list every fact the rule read, expressions included, in order of first use."""
    pack = pack_from_text(
        tmp_path, HEAD + rule(when="\"rating > 3 and subject_kind != 'sale'\"", points='"max(rating, 1)"')
    )
    assert pack.rules[0].reads() == ("rating", "subject_kind")


def test_expression_multiplier(tmp_path: Path) -> None:
    extra = "    multipliers:\n      - {name: detail, when: \"feedback != ''\", factor: 1.5}\n"
    pack = pack_from_text(tmp_path, HEAD + rule(extra=extra))
    outcome = evaluate(pack.rules[0], {"rating": 5, "feedback": "great"})
    assert outcome is not None and (outcome.points, outcome.multipliers) == (15, (("detail", "1.5"),))


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ('"ratng >= 4"', "'when': unknown fact 'ratng' for this event type (did you mean rating?)"),
        ('"rating >="', "'when': not a valid expression (invalid syntax): rating >="),
        (
            '"rating.real > 1"',
            "'when': attribute access (a.b) not allowed in a rule expression (only kpi.NAME): rating.real > 1",
        ),
        ("\"feedback[0] == 'a'\"", "'when': indexing (a[b]) not allowed in a rule expression: feedback[0] == 'a'"),
        ('"rating ** 99 > 1"', "'when': powers (**) not allowed in a rule expression: rating ** 99 > 1"),
        ("\"__import__('os')\"", "'when': unknown function __import__() (allowed: min, max, abs)"),
        ("\"open('x') == 1\"", "'when': unknown function open() (allowed: min, max, abs)"),
        ('"(lambda: 1)() == 1"', "'when': lambda not allowed in a rule expression: (lambda: 1)() == 1"),
        (
            '"[x for x in rating] == 1"',
            "'when': comprehensions not allowed in a rule expression: [x for x in rating] == 1",
        ),
        ('"rating is None"', "'when': 'is' (use ==) not allowed in a rule expression: rating is None"),
        (
            '"min(rating, key=abs) > 1"',
            "'when': keyword arguments (name=value) not allowed in a rule expression: min(rating, key=abs) > 1",
        ),
        ('"(rating := 5) > 1"', "'when': assignment (:=) not allowed in a rule expression: (rating := 5) > 1"),
        ('"max() > 1"', "'when': max() needs at least one argument"),
        ('" "', "'when': an expression is 1-500 characters"),
        ('"' + "rating > 1 and " * 40 + 'rating > 2"', "'when': an expression is 1-500 characters"),
    ],
)
def test_invalid_expressions_are_refused_with_the_reason(tmp_path: Path, when: str, reason: str) -> None:
    assert pack_refusal(tmp_path, HEAD + rule(when=when)) == (4, f"rule survey.good: {reason}")


def test_invalid_formula_is_refused(tmp_path: Path) -> None:
    assert pack_refusal(tmp_path, HEAD + rule(points='"rating * bonus"')) == (
        4,
        "rule survey.good: 'points': unknown fact 'bonus' for this event type",
    )


# --- effective windows ----------------------------------------------------------------------------

WINDOW = "    effective_from: 2026-12-01T00:00:00+05:30\n    effective_to: '2027-01-01T00:00:00+05:30'\n"


def test_effective_window_by_event_time(tmp_path: Path) -> None:
    """From is inclusive, to is exclusive; both compare with the event time, whatever its offset."""
    active = pack_from_text(tmp_path, HEAD + rule(extra=WINDOW)).rules[0]
    assert not active.in_effect(datetime(2026, 11, 30, 18, 29, 59, tzinfo=UTC))
    assert active.in_effect(datetime(2026, 11, 30, 18, 30, tzinfo=UTC))  # 2026-12-01 00:00 +05:30
    assert active.in_effect(datetime(2026, 12, 31, 18, 29, 59, tzinfo=UTC))
    assert not active.in_effect(datetime(2026, 12, 31, 18, 30, tzinfo=UTC))


def test_a_new_version_takes_over_at_a_date(tmp_path: Path) -> None:
    """The same rule id may appear again as a later version whose window starts where the first ends."""
    first = rule(extra="    effective_to: 2026-12-01T00:00:00+05:30\n")
    second = rule(version=2, points="15", extra="    effective_from: 2026-12-01T00:00:00+05:30\n")
    pack = pack_from_text(tmp_path, HEAD + first + second)
    at = datetime(2026, 12, 5, tzinfo=UTC)
    assert [r.version for r in pack.rules_for("survey.csat") if r.in_effect(at)] == [2]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            rule(extra="    effective_from: 2026-12-01\n"),
            4,
            "rule survey.good: 'effective_from' must be a date-time with its UTC offset, e.g. "
            "2026-12-01T00:00:00+05:30 (a bare date would mean a different moment in every time zone)",
        ),
        (
            rule(extra="    effective_to: '2026-12-01T00:00:00'\n"),
            4,
            "rule survey.good: 'effective_to' must be a date-time with its UTC offset, e.g. "
            "2026-12-01T00:00:00+05:30 (a bare date would mean a different moment in every time zone)",
        ),
        (
            rule(extra="    effective_from: 2026-12-01T00:00:00Z\n    effective_to: 2026-11-01T00:00:00Z\n"),
            4,
            "rule survey.good: 'effective_to' must be later than 'effective_from'",
        ),
        (
            rule() + rule(version=2),
            11,
            "rule survey.good: versions 1 and 2 are in effect at the same time (give them effective_from / "
            "effective_to windows that do not overlap)",
        ),
        (
            rule(extra="    effective_to: 2026-12-02T00:00:00Z\n")
            + rule(version=2, extra="    effective_from: 2026-12-01T00:00:00Z\n"),
            12,
            "rule survey.good: versions 1 and 2 are in effect at the same time (give them effective_from / "
            "effective_to windows that do not overlap)",
        ),
    ],
)
def test_invalid_windows_are_refused(tmp_path: Path, text: str, line: int, reason: str) -> None:
    assert pack_refusal(tmp_path, HEAD + text) == (line, reason)
