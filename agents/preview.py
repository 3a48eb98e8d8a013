"""Previewing a rule pack before it goes live: ``pitstop rules diff NEW_PACK``.

Every source event on the topics is scored twice, with the running pack and with the new one, by the
same pure code the worker runs (:func:`agents.pipeline.score_decoded`), and the two results are folded
into one season's league: per person, the points and the rank under each pack; per rule, the awards
and points under each. Nothing is written anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from agents.budgets import BudgetBook
from agents.pipeline import SourceRecord, decode_batch, score_decoded
from agents.rules import RulePack
from agents.scoring import Award
from config.directory import Directory
from streams.events import Event
from streams.topics import Topics, read_topic


@dataclass(frozen=True)
class PersonChange:
    staff_id: str
    role: str
    centre_id: str
    old_points: int
    new_points: int
    old_rank: int | None  # None: not on the board (no points)
    new_rank: int | None

    @property
    def delta(self) -> int:
        return self.new_points - self.old_points


@dataclass(frozen=True)
class RuleChange:
    rule_id: str
    old_awards: int
    new_awards: int
    old_points: int
    new_points: int


@dataclass(frozen=True)
class PackDiff:
    old_pack: str
    new_pack: str
    season: str
    scope: str  # "nation" or "centre <id>"
    events: int
    people: tuple[PersonChange, ...]  # everyone with points under either pack, biggest change first
    rules: tuple[RuleChange, ...]

    def changed(self) -> list[PersonChange]:
        return [p for p in self.people if p.delta or p.old_rank != p.new_rank]

    def to_json(self) -> dict[str, Any]:
        return {
            "old_pack": self.old_pack,
            "new_pack": self.new_pack,
            "season": self.season,
            "scope": self.scope,
            "events": self.events,
            "people_changed": len(self.changed()),
            "points_old": sum(p.old_points for p in self.people),
            "points_new": sum(p.new_points for p in self.people),
            "people": [asdict(p) | {"delta": p.delta} for p in self.changed()],
            "rules": [asdict(r) for r in self.rules],
        }


def ranks(points: dict[str, int]) -> dict[str, int]:
    """League ranks: highest points first, equal points share a rank (1, 2, 2, 4); nobody at 0 or less."""
    ordered = sorted((item for item in points.items() if item[1] > 0), key=lambda item: (-item[1], item[0]))
    found: dict[str, int] = {}
    previous: tuple[int, int] | None = None  # (points, rank) of the person just above
    for position, (staff_id, score) in enumerate(ordered, 1):
        rank = previous[1] if previous is not None and previous[0] == score else position
        found[staff_id] = rank
        previous = (score, rank)
    return found


def diff_packs(
    decoded: Sequence[tuple[SourceRecord, Event]],
    old: RulePack,
    new: RulePack,
    directory: Directory,
    *,
    season: str | None = None,
    centre: str | None = None,
) -> PackDiff:
    """Score the same events with both packs and compare one season's league (the latest by default)."""
    old_awards = list(_awards(decoded, old, directory))
    new_awards = list(_awards(decoded, new, directory))
    season = season or max((a.season for a in old_awards + new_awards), default="")
    old_points, new_points = _league(old_awards, season, centre), _league(new_awards, season, centre)
    old_ranks, new_ranks = ranks(old_points), ranks(new_points)
    people = []
    for staff_id in set(old_points) | set(new_points):
        person = directory.staff[staff_id]
        people.append(
            PersonChange(
                staff_id,
                person.role,
                person.centre_id,
                old_points.get(staff_id, 0),
                new_points.get(staff_id, 0),
                old_ranks.get(staff_id),
                new_ranks.get(staff_id),
            )
        )
    people.sort(key=lambda p: (-abs(p.delta), p.new_rank or 10**9, p.staff_id))
    old_rules, new_rules = _by_rule(old_awards, season), _by_rule(new_awards, season)
    rules = []
    for rule_id in sorted(set(old_rules) | set(new_rules)):
        (old_count, old_sum), (new_count, new_sum) = old_rules.get(rule_id, (0, 0)), new_rules.get(rule_id, (0, 0))
        rules.append(RuleChange(rule_id, old_count, new_count, old_sum, new_sum))
    return PackDiff(
        f"{old.name} v{old.version}",
        f"{new.name} v{new.version}",
        season,
        f"centre {centre}" if centre else "nation",
        len(decoded),
        tuple(people),
        tuple(rules),
    )


def _awards(decoded: Sequence[tuple[SourceRecord, Event]], pack: RulePack, directory: Directory) -> Iterable[Award]:
    # From the first event on, so the subjects and budgets start empty: retractions and refusals are
    # replayed too.
    result = score_decoded(decoded, pack=pack, directory=directory, subjects={}, budget_book=BudgetBook())
    for _, award in result.awards:
        yield award


def _by_rule(awards: Iterable[Award], season: str) -> dict[str, tuple[int, int]]:
    """Per rule id: (awards, points) in the season."""
    tally: dict[str, tuple[int, int]] = {}
    for award in awards:
        if award.season == season:
            count, points = tally.get(award.rule_id, (0, 0))
            tally[award.rule_id] = (count + 1, points + award.points)
    return tally


def _league(awards: Iterable[Award], season: str, centre: str | None) -> dict[str, int]:
    points: dict[str, int] = defaultdict(int)
    for award in awards:
        if award.season == season and (centre is None or award.centre_id == centre):
            points[award.staff_id] += award.points
    return dict(points)


async def read_sources(bootstrap: str, topics: Topics) -> list[SourceRecord]:
    """Every record on the source topics, from offset 0 to the current end."""
    records: list[SourceRecord] = []
    for topic in topics.sources:
        async for batch in read_topic(bootstrap, topic):
            records += [SourceRecord.from_consumer(m) for m in batch]
    return records


def decode_sources(records: Sequence[SourceRecord], topics: Topics) -> list[tuple[SourceRecord, Event]]:
    """The valid events among the records (invalid ones were dead-lettered when they arrived)."""
    decoded, _ = decode_batch(records, topics=topics, now=datetime.now(UTC))
    return decoded


def render(diff: PackDiff, limit: int) -> str:
    """The diff as a table a person reads before activating the pack."""
    changed = diff.changed()
    lines = [
        f"rules diff: {diff.old_pack} -> {diff.new_pack}; season {diff.season or '-'}, {diff.scope}; "
        f"{diff.events} events re-scored",
        f"points {sum(p.old_points for p in diff.people)} -> {sum(p.new_points for p in diff.people)}; "
        f"{len(changed)} of {len(diff.people)} people change",
        "",
        f"{'rule':32} {'awards':^16} {'points':^20}",
    ]
    for r in diff.rules:
        if (r.old_awards, r.old_points) != (r.new_awards, r.new_points):
            lines.append(
                f"{r.rule_id:32} {r.old_awards:>6} -> {r.new_awards:<6} {r.old_points:>8} -> {r.new_points:<8}"
            )
    lines += ["", f"{'person':8} {'centre':6} {'role':16} {'points':>24} {'rank':>12}"]
    for p in changed[:limit]:
        rank = f"{_rank(p.old_rank)} -> {_rank(p.new_rank)}"
        points = f"{p.old_points} -> {p.new_points} ({p.delta:+d})"
        lines.append(f"{p.staff_id:8} {p.centre_id:6} {p.role:16} {points:>24} {rank:>12}")
    if len(changed) > limit:
        lines.append(f"... and {len(changed) - limit} more (--limit, or --json for all)")
    return "\n".join(lines)


def _rank(rank: int | None) -> str:
    return "-" if rank is None else str(rank)
