"""Badges: the catalogue and each refusal with its message, badges on awards and the ledger, what a
person holds after retractions and corrections (in any order), and streaks of window badges."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.rules import Badge, RulePack
from agents.scoring import Award, score_event
from config.directory import Directory
from state.badges import BadgeEarned, badges_from_ledger, summarize_badges, window_position
from streams.events import decode_event
from streams.examples import EXAMPLES
from tests.unit.conftest import pack_from_text, pack_refusal

PACK = """\
pack: test
version: 1
rules:
  - id: survey.five
    version: 1
    event: survey.csat
    roles: [technician]
    when: {rating: 5}
    points: 10
    badge: five-star
    why: "Five stars"
badges:
  - id: five-star
    name: Five-star service
    description: A five-star rating
"""


def _pack(tmp_path: Path, text: str = PACK) -> RulePack:
    return pack_from_text(tmp_path, text)


def test_a_rule_names_a_badge_of_the_catalogue(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    assert pack.badges == (Badge("five-star", "Five-star service", "A five-star rating"),)
    assert pack.rules[0].badge == pack.badges[0]


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (
            ("badge: five-star", "badge: five-stars"),
            4,
            "rule survey.five: 'badge' 'five-stars' is not in the pack's 'badges' (did you mean five-star?)",
        ),
        (
            ("badge: five-star", "badge: gold"),
            4,
            "rule survey.five: 'badge' 'gold' is not in the pack's 'badges' (defined: five-star)",
        ),
        (
            ("badge: five-star", "badge: [five-star]"),
            4,
            "rule survey.five: 'badge' must be the id of one badge of the pack's 'badges'",
        ),
        (
            ("  - id: five-star\n", "  - id: Five Star\n"),
            13,
            "badge 'id' must be lower-case words joined by '-', e.g. flawless-five (at most 40)",
        ),
        (
            ("    name: Five-star service\n", ""),
            13,
            "badge five-star: 'name' must be the text the person reads (1-60 characters)",
        ),
        (
            ("    name: Five-star service", "    name: '" + "x" * 61 + "'"),
            13,
            "badge five-star: 'name' must be the text the person reads (1-60 characters)",
        ),
        (
            ("    description: A five-star rating", "    description: [a, b]"),
            13,
            "badge five-star: 'description' must be text of at most 200 characters",
        ),
        (
            ("    description: A five-star rating", "    icon: star"),
            13,
            "unknown key(s): icon (allowed: description, id, name)",
        ),
        (("badges:\n", "badges: five-star\nunused:\n"), 1, "unknown top-level key(s): unused"),
        (("    badge: five-star\n", ""), 12, "badge five-star: no rule gives it (add 'badge: five-star' to a rule)"),
        (
            ("badges:\n  - id: five-star", "badges:\n  - five-star\n  - id: five-star"),
            1,
            "badges[0] must be a mapping with 'id' and 'name'",
        ),
    ],
    ids=[
        "unknown-badge-close",
        "unknown-badge",
        "badge-not-text",
        "bad-id",
        "no-name",
        "long-name",
        "bad-description",
        "unknown-key",
        "unknown-top-level",
        "given-by-no-rule",
        "not-a-mapping",
    ],
)
def test_invalid_badges_are_refused_with_line_and_reason(
    tmp_path: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    assert change[0] in PACK
    assert pack_refusal(tmp_path, PACK.replace(change[0], change[1], 1)) == (line, reason)


def test_a_badge_defined_twice_and_badges_not_a_list_are_refused(tmp_path: Path) -> None:
    twice = PACK + "  - id: five-star\n    name: Again\n"
    assert pack_refusal(tmp_path, twice) == (16, "badge five-star is defined twice")
    assert pack_refusal(tmp_path, PACK.split("badges:")[0] + "badges: {five-star: x}\n") == (
        1,
        "'badges' must be a list of {id, name, description}",
    )


def test_an_award_carries_its_badge_onto_the_ledger_and_back(tmp_path: Path, directory: Directory) -> None:
    pack = _pack(tmp_path)
    event = decode_event(orjson.dumps(EXAMPLES["survey.csat"] | {"rating": 5}), now=datetime(2030, 1, 1, tzinfo=UTC))
    (award,) = score_event(event, pack, directory)
    record = orjson.loads(award.to_ledger())
    assert record["badge"] == {"id": "five-star", "name": "Five-star service"}
    assert Award.from_ledger(award.to_ledger()) == replace(award, badge=Badge("five-star", "Five-star service"))
    plain = replace(award, badge=None)
    assert "badge" not in orjson.loads(plain.to_ledger())  # bytes as before badges existed


def _entry(
    award_id: str,
    points: int,
    *,
    kind: str = "award",
    retracts: str = "",
    badge: str = "csat-star",
    event_id: str = "window:C01:month:2026-11",
    at: str = "2026-11-30T23:59:59+05:30",
    staff: str = "S0001",
) -> Award:
    return Award(
        award_id=award_id,
        event_id=event_id,
        event_type="window.month",
        rule_id="kpi.csat_star",
        rule_version=1,
        staff_id=staff,
        role="technician",
        centre_id="C01",
        region="west",
        state="MH",
        season=at[:7],
        points=points,
        occurred_at=at,
        inputs={},
        multipliers=(),
        why="",
        kind=kind,
        retracts=retracts,
        badge=Badge(badge, badge.replace("-", " ").title()) if badge else None,
    )


def test_held_while_points_are_left_of_the_award_in_any_order() -> None:
    """A full retraction takes the badge back, a partial one does not; a window correction to nothing
    takes it back and a later one gives it back; a correction from nothing earns it; repeats count once."""
    star = _entry("a1", 100)
    five = _entry("f1", 10, badge="five-star", event_id="e-1", at="2026-11-05T10:00:00+05:30")
    entries = [
        star,
        _entry("c1", -100, kind="correction", retracts="a1"),
        _entry("c2", 100, kind="correction", retracts="a1"),
        five,
        _entry("r1", -4, kind="retraction", retracts="f1", badge=""),  # a refund's share
        _entry("b1", 20, badge="five-star", event_id="e-2", at="2026-11-06T10:00:00+05:30"),
        _entry("r2", -20, kind="retraction", retracts="b1", badge=""),  # reopened: all of it
        _entry("c3", 50, kind="correction", retracts="z9", badge="zero-comebacks"),  # late events earned it
        _entry("x1", 30, badge=""),  # no badge
    ]
    expected = {"a1", "f1", "z9"}
    for order in itertools.islice(itertools.permutations(entries), 0, None, 997):  # ~360 of the orders
        held = badges_from_ledger([*order, star, five])
        assert {e.award_id for e in held["S0001"]} == expected
    assert [e.badge for e in badges_from_ledger(entries)["S0001"]] == ["five-star", "csat-star", "zero-comebacks"]


def test_nothing_held_is_nobody_listed() -> None:
    entries = [_entry("a1", 100), _entry("r1", -100, kind="retraction", retracts="a1", badge="")]
    assert badges_from_ledger(entries) == {}


def _earned(*window_ids: str, badge: str = "csat-star") -> list[BadgeEarned]:
    return [
        BadgeEarned(f"2026-01-01T00:00:{n:02d}+00:00", badge, "CSAT star", f"a{n}", f"window:C01:{w}")
        for n, w in enumerate(window_ids)
    ]


@pytest.mark.parametrize(
    ("windows", "streak", "best"),
    [
        (("month:2026-09", "month:2026-10", "month:2026-11"), 3, 3),
        (("month:2026-06", "month:2026-07", "month:2026-08", "month:2026-10", "month:2026-11"), 2, 3),
        (("month:2026-12", "month:2027-01"), 2, 2),  # across a year
        (("week:2026-W52", "week:2026-W53", "week:2027-W01"), 3, 3),  # 2026 has 53 ISO weeks
        (("day:2026-11-29", "day:2026-11-30", "day:2026-12-01", "day:2026-12-03"), 1, 3),
        (("month:2026-11",), 1, 1),
    ],
)
def test_a_window_badge_keeps_its_streak(windows: tuple[str, ...], streak: int, best: int) -> None:
    (summary,) = summarize_badges(_earned(*windows))
    assert (summary.count, summary.streak, summary.best_streak) == (len(windows), streak, best)


def test_a_badge_of_events_has_no_streak_and_times_are_compared_as_moments() -> None:
    later_in_utc = BadgeEarned("2026-11-05T06:00:00+00:00", "five-star", "Five-star", "b", "e-2")  # 11:30 IST
    earlier_in_ist = BadgeEarned("2026-11-05T11:00:00+05:30", "five-star", "Five-star", "a", "e-1")
    (summary,) = summarize_badges([later_in_utc, earlier_in_ist])
    assert (summary.count, summary.streak, summary.best_streak) == (2, None, None)
    assert [e.award_id for e in summary.earned] == ["a", "b"]


@pytest.mark.parametrize(
    ("event_id", "position"),
    [
        ("window:C01:month:2026-11", ("month", 2026 * 12 + 11)),
        ("window:C01:day:2026-11-30", ("day", datetime(2026, 11, 30).toordinal())),
        ("window:C01:30d:2026-11-30", ("30d", datetime(2026, 11, 30).toordinal())),
        ("ev-1", None),
        ("window:C01:month:soon", None),
        ("window:C01:year:2026", None),
    ],
)
def test_window_positions(event_id: str, position: tuple[str, int] | None) -> None:
    assert window_position(event_id) == position
