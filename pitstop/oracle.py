"""An independent oracle: the awards a set of events must produce, computed without the engine's code.

The chaos harness compares the engine's ledger and Redis boards with this fold. It deliberately shares
nothing with ``agents/`` or ``state/``: it reads the rule pack YAML with plain ``yaml.safe_load``,
evaluates conditions and multipliers with its own few lines, computes the derived facts from the
event's times itself, and takes the centre facts straight from the directory YAML. Only the award-id
formula is common, because it is the published contract of the ledger:
``sha256(event_id \\x1f rule_id \\x1f version \\x1f staff_id)[:32]``.
"""

from __future__ import annotations

import hashlib
import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
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


def _holds(conditions: dict[str, Any] | None, facts: dict[str, Any]) -> bool:
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


class Oracle:
    def __init__(self, rules_path: Path, directory_path: Path) -> None:
        pack = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
        self.rules: list[dict[str, Any]] = pack["rules"]
        directory = yaml.safe_load(directory_path.read_text(encoding="utf-8"))
        self.centres = {c["id"]: c for c in directory["centres"]}

    def awards(self, event: dict[str, Any]) -> list[Expected]:
        facts = _facts(event)
        centre = self.centres[event["centre_id"]]
        season = _time(event["occurred_at"]).astimezone(ZoneInfo(centre["timezone"])).strftime("%Y-%m")
        found: list[Expected] = []
        for rule in self.rules:
            if rule["event"] != event["type"] or not _holds(rule.get("when"), facts):
                continue
            spec = rule["points"]
            base = facts.get(spec["fact"]) if isinstance(spec, dict) else spec
            total = Decimal(int(base or 0))
            for multiplier in rule.get("multipliers", []):
                if _holds(multiplier["when"], facts):
                    total *= Decimal(str(multiplier["factor"]))
            points = int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            for person in event["people"]:
                if person["role"] in rule["roles"] and points > 0:
                    key = f"{event['event_id']}\x1f{rule['id']}\x1f{rule['version']}\x1f{person['staff_id']}"
                    award_id = hashlib.sha256(key.encode()).hexdigest()[:32]
                    found.append(Expected(award_id, person["staff_id"], person["role"], centre["id"], season, points))
        return found

    def fold(self, events: Iterable[dict[str, Any]]) -> dict[str, Expected]:
        """Every award the distinct events earn, by award id (a repeated event id counts once)."""
        seen: set[str] = set()
        expected: dict[str, Expected] = {}
        for event in events:
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            for award in self.awards(event):
                expected[award.award_id] = award
        return expected


def points_by_person(awards: Iterable[Expected]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for award in awards:
        totals[award.staff_id] += award.points
    return dict(totals)
