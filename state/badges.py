"""Badges held and streaks, from ledger entries or from the league's badge projection. Pure.

An award of a rule with ``badge:`` earns that badge once (a rule that awards two people earns each of
them one). A retraction or a correction names the award it changes (``retracts``); the badge is held
while the points left of the award are above 0, so a job card reopened, or a late event that corrects
a window's award to nothing, takes the badge back, and a correction that brings a window award back
gives it back. The league's Lua script keeps the same account in Redis
(:data:`state.league.APPLY_LUA`), and both read it through :func:`held_badges`.

A badge earned on windows (``event: window.month`` ...) has a **streak**: the windows in a row, up to
the last one that earned it, that each earned it (a month streak of 3: three months running).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from agents.scoring import Award
from streams.events import parse_time


@dataclass(frozen=True, slots=True)
class BadgeEarned:
    at: str  # the event time of what earned it (a window's: its last second)
    badge: str
    name: str
    award_id: str  # the award (or window entry) that earned it
    event_id: str  # the event, or the window ("window:C01:month:2026-11"), that earned it


@dataclass(frozen=True, slots=True)
class BadgeSummary:
    badge: str
    name: str
    count: int  # awards holding it
    streak: int | None  # windows in a row up to the last one earning it; None for a badge of events
    best_streak: int | None
    earned: tuple[BadgeEarned, ...]  # in event-time order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def badge_target(award: Award) -> tuple[str, dict[str, str] | None] | None:
    """How a ledger entry counts for badges: (the award it counts for, what that award earns, or None
    when the entry takes back points without naming a badge); None for an entry unrelated to badges."""
    return badge_target_of(award.ledger_fields())


def badge_target_of(fields: Mapping[str, Any]) -> tuple[str, dict[str, str] | None] | None:
    """:func:`badge_target` of a ledger record's JSON object (:meth:`agents.scoring.Award.ledger_fields`)."""
    kind, retracts, badge = fields.get("kind", "award"), fields.get("retracts", ""), fields.get("badge")
    if badge is not None and kind in ("award", "correction"):
        target = retracts or fields["award_id"]
        earned = {"badge": badge["id"], "name": badge["name"], "award_id": target}
        return target, earned | {"event_id": fields["event_id"], "at": fields["occurred_at"]}
    if kind in ("retraction", "correction") and retracts:
        return retracts, None
    return None


def held_badges(earnings: Iterable[tuple[dict[str, str], int]]) -> list[BadgeEarned]:
    """The earnings still held, from (what an award earned, the points left of it), in event-time order."""
    return _in_order(
        BadgeEarned(m["at"], m["badge"], m["name"], m["award_id"], m["event_id"]) for m, left in earnings if left > 0
    )


def _in_order(earnings: Iterable[BadgeEarned]) -> list[BadgeEarned]:
    return sorted(earnings, key=lambda e: (parse_time(e.at), e.award_id))  # times carry different offsets


def badges_from_ledger(entries: Iterable[Award]) -> dict[str, list[BadgeEarned]]:
    """staff id -> the badges held, as the distinct ledger entries say (in any order, repeats counted once)."""
    earned: dict[tuple[str, str], dict[str, str]] = {}
    left: dict[tuple[str, str], int] = defaultdict(int)
    for entry in {e.award_id: e for e in entries}.values():
        if (counts := badge_target(entry)) is None:
            continue
        key = (entry.staff_id, counts[0])
        if counts[1] is not None:
            earned.setdefault(key, counts[1])
        left[key] += entry.points
    held: dict[str, list[tuple[dict[str, str], int]]] = defaultdict(list)
    for key, meta in earned.items():
        held[key[0]].append((meta, left[key]))
    return {staff_id: found for staff_id, pairs in sorted(held.items()) if (found := held_badges(pairs))}


def summarize_badges(held: Iterable[BadgeEarned]) -> list[BadgeSummary]:
    """Per badge held: how many times, the streak (window badges) and what earned it; by badge id."""
    by_badge: dict[str, list[BadgeEarned]] = defaultdict(list)
    for earning in _in_order(held):
        by_badge[earning.badge].append(earning)
    summaries = []
    for badge, earnings in sorted(by_badge.items()):
        positions = [p for e in earnings if (p := window_position(e.event_id)) is not None]
        streak = best = None
        if positions and len(positions) == len(earnings):
            streak, best = _runs(positions)
        summaries.append(BadgeSummary(badge, earnings[-1].name, len(earnings), streak, best, tuple(earnings)))
    return summaries


def window_position(event_id: str) -> tuple[str, int] | None:
    """(kind, a number one higher for the next window of that kind) of a window entry's event id
    (``window:C01:month:2026-11``); None for an event's."""
    parts = event_id.split(":")
    if len(parts) != 4 or parts[0] != "window":
        return None
    kind, label = parts[2], parts[3]
    try:
        if kind == "month":
            year, month = label.split("-")
            return kind, int(year) * 12 + int(month)
        if kind == "week":
            year, week = label.split("-W")
            return kind, date.fromisocalendar(int(year), int(week), 1).toordinal() // 7
        if kind in ("day", "30d"):
            return kind, date.fromisoformat(label).toordinal()
    except ValueError:
        return None
    return None


def _runs(positions: list[tuple[str, int]]) -> tuple[int, int]:
    """(the run ending at the last window, the longest run) of consecutive windows, per window kind; the
    last is of the kind of the latest earning (``positions`` are in event-time order)."""
    best = current = 0
    for kind in dict.fromkeys(k for k, _ in positions):
        numbers = sorted({n for k, n in positions if k == kind})
        run = 0
        for i, n in enumerate(numbers):
            run = run + 1 if i and n == numbers[i - 1] + 1 else 1
            best = max(best, run)
        if kind == positions[-1][0]:
            current = run
    return current, best
