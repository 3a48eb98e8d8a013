"""The incentive programme on top of the points: tiers with their benefits, and contests.

A programme file (``PITSTOP_PROGRAMME``, default ``config/programmes/default.yaml``) is validated like
a rule pack: the first problem is refused with file, line and reason. What it means is computed from
the ledger by :mod:`state.standings`; see docs/programme.md.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from config.loading import ConfigError, Located, load_yaml
from streams.contract import KPI_METRICS, ROLES

SCOPES = ("centre", "region", "state", "nation")
METRICS = ("points", "awards", "amount")
_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    promote_at: int  # season points that earn this tier at season end (from any lower tier)
    keep_at: int  # season points needed to stay in it; below, one tier down
    benefits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Contest:
    id: str
    name: str
    starts: datetime  # by event time, inclusive
    ends: datetime  # exclusive
    metric: str  # "points", "awards" (count of awards not taken back) or "amount" (sales money)
    rules: frozenset[str]  # rule ids that count (empty: all)
    roles: frozenset[str]  # roles that take part (empty: all)
    scope: str  # winners per centre, region, state, or the nation
    winners: int
    target: int | None = None  # with a target: ranked by when each person reached it, fastest first
    line: int = 0


@dataclass(frozen=True)
class Programme:
    name: str
    version: int
    tiers: tuple[Tier, ...]  # lowest first
    contests: tuple[Contest, ...]
    source: str = ""
    # KPI targets per role, shown to each person against their month so far: role -> metric -> target
    targets: dict[str, dict[str, float]] = field(default_factory=dict)

    def contest(self, contest_id: str) -> Contest | None:
        return next((c for c in self.contests if c.id == contest_id), None)


def load_programme(path: Path, rule_ids: frozenset[str] | None = None) -> Programme:
    """Load and validate a programme; with ``rule_ids`` (the rule pack's), contests may only name those."""
    document, lines = load_yaml(path) if path.exists() else (None, {})
    if document is None:
        raise ConfigError(path, None, "no such file" if not path.exists() else "the file is empty")
    if not isinstance(document, dict):
        raise ConfigError(path, 1, "expected a mapping with 'programme', 'version', 'tiers' and 'contests'")
    top = Located(document, path, 1)
    unknown = sorted(map(str, set(document) - {"programme", "version", "tiers", "contests", "targets"}))
    if unknown:
        raise top.error(f"unknown top-level key(s): {', '.join(unknown)}")
    name = document.get("programme")
    if not isinstance(name, str) or not name:
        raise top.error("'programme' must name the programme")
    version = _whole(top, document.get("version"), 1, 10**9, "'version' must be a whole number from 1")
    tiers = tuple(_tier(Located(t, path, lines.get(id(t), 1))) for t in _mappings(top, "tiers", document))
    for lower, higher in itertools.pairwise(tiers):
        if higher.promote_at <= lower.promote_at:
            raise ConfigError(
                path,
                None,
                f"tier {higher.name}: 'promote_at' ({higher.promote_at}) must be above {lower.name}'s "
                f"({lower.promote_at}): tiers are listed lowest first",
            )
    if len({t.name for t in tiers}) != len(tiers):
        raise top.error("two tiers have the same name")
    contests: list[Contest] = []
    for item in _mappings(top, "contests", document):
        contest = _contest(Located(item, path, lines.get(id(item), 1)))
        if any(c.id == contest.id for c in contests):
            raise ConfigError(path, contest.line, f"contest {contest.id} is defined twice")
        unknown_rules = sorted(contest.rules - rule_ids) if rule_ids is not None else []
        if unknown_rules:
            raise ConfigError(
                path, contest.line, f"contest {contest.id}: no rule {', '.join(unknown_rules)} in the rule pack"
            )
        contests.append(contest)
    return Programme(name, version, tiers, tuple(contests), str(path), _targets(top, document, lines, path))


def _targets(top: Located, document: dict[str, Any], lines: dict[int, int], path: Path) -> dict[str, dict[str, float]]:
    """``targets: {ROLE: {KPI metric: number}}``: what each role aims for in a month (KPIs in docs/kpis.md)."""
    raw = document.get("targets", {})
    if not isinstance(raw, dict):
        raise top.error("'targets' must map roles to their KPI targets, e.g. {technician: {csat_mean: 4.5}}")
    found: dict[str, dict[str, float]] = {}
    for role, metrics in raw.items():
        where = Located(metrics if isinstance(metrics, dict) else {}, path, lines.get(id(metrics), top.line))
        if role not in ROLES:
            raise where.error(f"targets: unknown role {role!r} (one of: {', '.join(ROLES)})")
        if not isinstance(metrics, dict) or not metrics:
            raise where.error(f"targets for {role} must map KPI metrics to numbers")
        for metric, value in metrics.items():
            if metric not in KPI_METRICS:
                raise where.error(f"targets for {role}: unknown KPI {metric!r} (see docs/kpis.md)")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise where.error(f"targets for {role}: {metric} must be a number, got {value!r}")
        found[str(role)] = {str(m): float(v) for m, v in metrics.items()}
    return found


def _whole(row: Located, value: Any, low: int, high: int, message: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise row.error(message)
    return value


def _mappings(top: Located, key: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    items = document.get(key, [])
    if not isinstance(items, list):
        raise top.error(f"'{key}' must be a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise top.error(f"{key}[{index}] must be a mapping")
    return items


def _tier(row: Located) -> Tier:
    item = row.value
    row.only({"name", "promote_at", "keep_at", "benefits"})
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 60:
        raise row.error("a tier needs a 'name' (1-60 characters)")
    promote_at = _whole(
        row,
        item.get("promote_at"),
        1,
        10**9,
        f"tier {name}: 'promote_at' must be a whole number of season points from 1",
    )
    keep_at = _whole(
        row,
        item.get("keep_at"),
        0,
        promote_at,
        f"tier {name}: 'keep_at' must be a whole number from 0 to promote_at ({promote_at})",
    )
    benefits = item.get("benefits", [])
    if not isinstance(benefits, list) or not all(isinstance(b, str) and b.strip() for b in benefits):
        raise row.error(f"tier {name}: 'benefits' must be a list of texts")
    return Tier(name, promote_at, keep_at, tuple(benefits))


_CONTEST_KEYS = {"id", "name", "from", "to", "metric", "rules", "roles", "scope", "winners", "target"}


def _contest(row: Located) -> Contest:
    item = row.value
    row.only(_CONTEST_KEYS)
    contest_id = item.get("id")
    if not isinstance(contest_id, str) or not _ID.match(contest_id):
        raise row.error("a contest 'id' is lower-case letters, digits, '-' or '_', e.g. fastest-five")
    label = f"contest {contest_id}: "
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise row.error(f"{label}'name' must be 1-80 characters")
    starts, ends = row.moment("from", label), row.moment("to", label)
    if starts is None or ends is None:
        raise row.error(f"{label}'from' and 'to' are required (date-times with their UTC offset)")
    if ends <= starts:
        raise row.error(f"{label}'to' must be later than 'from'")
    metric = item.get("metric", "points")
    if metric not in METRICS:
        raise row.error(f"{label}'metric' must be one of: {', '.join(METRICS)}")
    rules = item.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules):
        raise row.error(f"{label}'rules' must be a list of rule ids")
    roles = item.get("roles", [])
    if not isinstance(roles, list) or not all(r in ROLES for r in roles):
        raise row.error(f"{label}'roles' must be a list of roles (from: {', '.join(ROLES)})")
    scope = item.get("scope", "nation")
    if scope not in SCOPES:
        raise row.error(f"{label}'scope' must be one of: {', '.join(SCOPES)}")
    winners = _whole(row, item.get("winners"), 1, 1000, f"{label}'winners' must be a whole number from 1 to 1000")
    target = item.get("target")
    if target is not None:
        target = _whole(row, target, 1, 10**9, f"{label}'target' must be a whole number from 1")
    return Contest(
        contest_id,
        name,
        starts,
        ends,
        metric,
        frozenset(rules),
        frozenset(roles),
        scope,
        winners,
        target,
        row.line,
    )
