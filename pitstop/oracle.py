"""An independent oracle: the awards a set of events must produce, computed without the engine's code.

The chaos harness compares the engine's ledger and Redis boards with this fold. Spot-award budgets
are spent in the order of the events given, which is the order one giver's recognitions reach the
engine when they share a partition (as the simulator's do). It deliberately shares
nothing with ``agents/`` or ``state/``: it reads the rule pack YAML with plain ``yaml.safe_load``,
evaluates conditions and multipliers with its own few lines, computes the derived facts from the
event's times itself, and takes the centre facts straight from the directory YAML. Only the award-id
formula is common, because it is the published contract of the ledger:
``sha256(event_id \\x1f rule_id \\x1f version \\x1f staff_id)[:32]``.
"""

from __future__ import annotations

import ast
import hashlib
import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml


@dataclass(frozen=True)
class Expected:
    award_id: str
    staff_id: str
    role: str
    centre_id: str
    season: str
    points: int


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("z", "Z"))


def _minutes(start: str, end: datetime) -> float:
    return (end - _time(start)).total_seconds() / 60


def _facts(event: dict[str, Any]) -> dict[str, Any]:
    facts = dict(event)
    done = _time(event["occurred_at"])
    spans = {
        "jobcard.closed": ("promised_at", "turnaround_minutes", "promised_minutes", "turnaround_ratio", "on_time"),
        "ticket.first_response": (
            "response_due_at",
            "response_minutes",
            "allowed_minutes",
            "response_ratio",
            "responded_in_time",
        ),
        "ticket.resolved": (
            "resolution_due_at",
            "resolution_minutes",
            "allowed_minutes",
            "resolution_ratio",
            "within_sla",
        ),
    }
    if event["type"] in spans:
        due_field, took_name, allowed_name, ratio_name, in_time_name = spans[event["type"]]
        took = round(_minutes(event["opened_at"], done), 1)
        allowed = round((_time(event[due_field]) - _time(event["opened_at"])).total_seconds() / 60, 1)
        facts[took_name] = took
        facts[allowed_name] = allowed
        facts[ratio_name] = round(took / allowed, 4) if allowed > 0 else None
        facts[in_time_name] = done <= _time(event[due_field])
    return facts


_OPS: dict[str, Any] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, allowed: value in allowed,
}


def _holds(conditions: dict[str, Any] | str | None, facts: dict[str, Any]) -> bool:
    if isinstance(conditions, str):
        return _expression(conditions, facts) is True
    for name, test in (conditions or {}).items():
        value = facts.get(name)
        if value is None:
            return False
        op, expected = next(iter(test.items())) if isinstance(test, dict) else ("eq", test)
        try:
            ok = _OPS[op](value, expected)
        except TypeError:
            ok = False
        if not ok:
            return False
    return True


def _value(node: ast.AST, facts: dict[str, Any]) -> Any:
    """A rule expression's value, by a plain walk of Python's own syntax tree (the engine uses simpleeval).
    Raises ``LookupError`` for a fact the event does not have."""
    if isinstance(node, ast.Expression):
        return _value(node.body, facts)
    if isinstance(node, ast.Constant):
        return Decimal(repr(node.value)) if isinstance(node.value, float) else node.value
    if isinstance(node, ast.Name):
        value = facts.get(node.id)
        if value is None:
            raise LookupError(node.id)
        return Decimal(str(value)) if isinstance(value, float) else value
    if isinstance(node, ast.Tuple | ast.List):
        return [_value(n, facts) for n in node.elts]
    if isinstance(node, ast.BoolOp):
        values = (_value(n, facts) for n in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        inner = _value(node.operand, facts)
        return not inner if isinstance(node.op, ast.Not) else -inner if isinstance(node.op, ast.USub) else +inner
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_value(node.left, facts), _value(node.right, facts))
    if isinstance(node, ast.Compare):
        left = _value(node.left, facts)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _value(right_node, facts)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _value(node.body if _value(node.test, facts) else node.orelse, facts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return {"min": min, "max": max, "abs": abs}[node.func.id](*(_value(a, facts) for a in node.args))
    raise AssertionError(f"the oracle does not know {type(node).__name__}")


_BINARY: dict[type[ast.AST], Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type[ast.AST], Any] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _expression(source: str, facts: dict[str, Any]) -> Any:
    try:
        return _value(ast.parse(source.strip(), mode="eval"), facts)
    except (LookupError, TypeError, ArithmeticError, ValueError):
        return None  # no value for this event: the rule does not fire


def _in_effect(rule: dict[str, Any], at: datetime) -> bool:
    def moment(value: Any) -> datetime | None:
        return None if value is None else value if isinstance(value, datetime) else _time(str(value))

    start, end = moment(rule.get("effective_from")), moment(rule.get("effective_to"))
    return (start is None or at >= start) and (end is None or at < end)


class Oracle:
    def __init__(self, rules_path: Path, directory_path: Path) -> None:
        pack = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
        self.rules: list[dict[str, Any]] = pack["rules"]
        directory = yaml.safe_load(directory_path.read_text(encoding="utf-8"))
        self.centres = {c["id"]: c for c in directory["centres"]}
        self.staff = {p["id"]: p for p in directory["staff"]}

    @staticmethod
    def _suspended(person: dict[str, Any], at: datetime) -> bool:
        start, end = person.get("suspended_from"), person.get("suspended_to")
        start = _time(start) if isinstance(start, str) else start
        end = _time(end) if isinstance(end, str) else end
        return start is not None and at >= start and (end is None or at < end)

    def _may_earn(self, staff_id: str, rule: dict[str, Any], at: datetime) -> bool:
        person = self.staff[staff_id]
        if self._suspended(person, at):
            return False
        return not set(person.get("groups", [])) & set(rule.get("exclude", {}).get("groups", []))

    def awards(self, event: dict[str, Any]) -> list[Expected]:
        return [award for award, _ in self._scored(event)]

    def _scored(self, event: dict[str, Any]) -> list[tuple[Expected, dict[str, Any]]]:
        """Each award of the event with the rule that gave it."""
        facts = _facts(event)
        centre = self.centres[event["centre_id"]]
        season = _time(event["occurred_at"]).astimezone(ZoneInfo(centre["timezone"])).strftime("%Y-%m")
        found: list[tuple[Expected, dict[str, Any]]] = []
        occurred_at = _time(event["occurred_at"])
        for rule in self.rules:
            if rule["event"] != event["type"] or not _in_effect(rule, occurred_at):
                continue
            if not _holds(rule.get("when"), facts):
                continue
            spec = rule["points"]
            if isinstance(spec, str):  # a formula
                base = _expression(spec, facts)
                if not isinstance(base, int | Decimal) or isinstance(base, bool):
                    continue
            else:
                base = int(facts.get(spec["fact"]) or 0) if isinstance(spec, dict) else spec
            total = Decimal(base)
            for multiplier in rule.get("multipliers", []):
                if _holds(multiplier["when"], facts):
                    total *= Decimal(str(multiplier["factor"]))
            points = int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            for person in event["people"]:
                if (
                    person["role"] in rule["roles"]
                    and points > 0
                    and self._may_earn(person["staff_id"], rule, occurred_at)
                ):
                    key = f"{event['event_id']}\x1f{rule['id']}\x1f{rule['version']}\x1f{person['staff_id']}"
                    award_id = hashlib.sha256(key.encode()).hexdigest()[:32]
                    award = Expected(award_id, person["staff_id"], person["role"], centre["id"], season, points)
                    found.append((award, rule))
        return found

    def fold(self, events: Iterable[dict[str, Any]]) -> dict[str, Expected]:
        """Every award the distinct events earn, and every retraction, by id (a repeated event id counts once)."""
        distinct: dict[str, dict[str, Any]] = {}
        for event in events:
            distinct.setdefault(event["event_id"], event)
        expected: dict[str, Expected] = {}
        earned: list[tuple[Expected, dict[str, Any], dict[str, Any]]] = []
        spent: dict[tuple[str, str, str], int] = defaultdict(int)  # (rule, giver, month) -> points given
        for event in distinct.values():
            scored = self._scored(event)
            for rule_id in dict.fromkeys(rule["id"] for _, rule in scored if "budget" in rule):
                scored = self._spend(event, rule_id, scored, spent)
            for award, rule in scored:
                expected[award.award_id] = award
                if award.points:  # not a refusal
                    earned.append((award, rule, event))
        for retraction in _retractions(list(distinct.values()), earned):
            expected[retraction.award_id] = retraction
        return expected

    def _spend(
        self,
        event: dict[str, Any],
        rule_id: str,
        scored: list[tuple[Expected, dict[str, Any]]],
        spent: dict[tuple[str, str, str], int],
    ) -> list[tuple[Expected, dict[str, Any]]]:
        """A recognition's awards from a budgeted rule, granted whole if they fit in what is left of the
        giver's month (first come, first served), else replaced by one refusal for the giver."""
        mine = [(a, r) for a, r in scored if r["id"] == rule_id]
        rule = mine[0][1]
        giver_id = event["awarded_by"]
        giver = self.staff.get(giver_id)
        centre = self.centres[giver["centre"] if giver else event["centre_id"]]
        month = _time(event["occurred_at"]).astimezone(ZoneInfo(centre["timezone"])).strftime("%Y-%m")
        limit = giver.get("spot_budget", rule["budget"]) if giver else rule["budget"]
        asked = sum(a.points for a, _ in mine)
        pool = (rule_id, giver_id, month)
        allowed = giver is not None and not self._suspended(giver, _time(event["occurred_at"]))
        if allowed and spent[pool] + asked <= limit:
            spent[pool] += asked
            return scored
        key = f"{event['event_id']}\x1frefusal:{rule_id}\x1f{rule['version']}\x1f{giver_id}"
        first = mine[0][0]
        refusal = Expected(
            hashlib.sha256(key.encode()).hexdigest()[:32],
            giver_id,
            giver["role"] if giver else "manager",
            first.centre_id,
            first.season,
            0,
        )
        return [(a, r) for a, r in scored if r["id"] != rule_id] + [(refusal, rule)]


# What names an event's subject, and which later events take its awards back (the published contract).
_SUBJECT_FIELD = {"jobcard": "jobcard_id", "ticket": "ticket_id", "survey": "survey_id", "sale": "sale_id"}
_SURVEYS = ("survey.csat", "survey.nps")
_TAKERS = ("jobcard.reopened", "sale.refunded", *_SURVEYS)


def _subject(event: dict[str, Any]) -> tuple[str, Any]:
    family = event["type"].split(".")[0]
    return family, event.get(_SUBJECT_FIELD.get(family, ""))


def _retractions(
    events: list[dict[str, Any]], earned: list[tuple[Expected, dict[str, Any], dict[str, Any]]]
) -> list[Expected]:
    """Every retraction the whole set of events implies, taking back in event-time order (refund shares
    are capped at what is left of the award)."""
    awards_of: dict[tuple[str, Any], list[tuple[Expected, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for award, rule, event in earned:
        awards_of[_subject(event)].append((award, rule, event))
    takers = sorted((e for e in events if e["type"] in _TAKERS), key=lambda e: (_time(e["occurred_at"]), e["event_id"]))
    taken: dict[str, int] = defaultdict(int)
    found: dict[str, Expected] = {}
    for taker in takers:
        when = (_time(taker["occurred_at"]), taker["event_id"])
        for award, rule, event in sorted(awards_of.get(_subject(taker), []), key=lambda x: x[0].award_id):
            then = (_time(event["occurred_at"]), event["event_id"])
            if taker["event_id"] == event["event_id"]:
                continue
            if taker["type"] in _SURVEYS:
                if taker["type"] != event["type"] or when <= then:
                    continue
            elif taker["type"] not in rule.get("retracted_by", []) or when[0] < then[0]:
                continue
            left = award.points - taken[award.award_id]
            if taker["type"] == "sale.refunded":
                try:
                    share = Decimal(str(taker["amount"])) / Decimal(str(event["amount"]))
                except (KeyError, ArithmeticError):
                    share = Decimal(1)
                share = min(max(share, Decimal(0)), Decimal(1)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
                points = min(left, int((award.points * share).quantize(Decimal(1), rounding=ROUND_DOWN)))
                key = f"retraction\x1f{award.award_id}\x1f{taker['event_id']}"
            else:
                points, key = left, f"retraction\x1f{award.award_id}"
            retraction_id = hashlib.sha256(key.encode()).hexdigest()[:32]
            if points <= 0 or retraction_id in found:
                continue
            taken[award.award_id] += points
            found[retraction_id] = Expected(
                retraction_id, award.staff_id, award.role, award.centre_id, award.season, -points
            )
    return list(found.values())


def points_by_person(awards: Iterable[Expected]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for award in awards:
        totals[award.staff_id] += award.points
    return dict(totals)
