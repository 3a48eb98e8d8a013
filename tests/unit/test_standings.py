"""Programme files (tiers, contests) and what they compute from ledger entries (state.standings)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.scoring import Award, ledger_value
from config.loading import ConfigError
from config.programme import Contest, Programme, Tier, load_programme
from config.settings import DEFAULT_PROGRAMME, DEFAULT_RULES
from state.standings import contest_standings, season_points, season_points_of_records, tiers_after, winners

T0 = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
REGIONS = {"C01": "west", "C02": "west", "C05": "north"}


def _entry(
    staff: str,
    at: datetime,
    points: int = 10,
    *,
    rule: str = "jobcard.flawless",
    centre: str = "C01",
    role: str = "technician",
    n: int = 0,
    amount: str | None = None,
) -> Award:
    return Award(
        award_id=f"{staff}-{rule}-{at.isoformat()}-{n}",
        event_id=f"ev-{staff}-{at.isoformat()}-{n}",
        event_type="jobcard.closed",
        rule_id=rule,
        rule_version=1,
        staff_id=staff,
        role=role,
        centre_id=centre,
        region=REGIONS[centre],
        state="MH",
        season=at.strftime("%Y-%m"),
        points=points,
        occurred_at=at.isoformat(),
        inputs={},
        multipliers=(),
        why="x",
        subject=f"jobcard:{staff}-{n}",
        amount=amount,
    )


def _taken_back(award: Award, share: str | None = None) -> Award:
    points = award.points if share is None else int(award.points * Decimal(share))
    return replace(
        award,
        award_id="r-" + award.award_id,
        kind="retraction",
        retracts=award.award_id,
        points=-points,
        inputs={"retracted_award": award.award_id} | ({"share": share} if share else {}),
    )


def _contest(**overrides: object) -> Contest:
    base = Contest(
        id="c",
        name="C",
        starts=datetime(2026, 11, 1, tzinfo=UTC),
        ends=datetime(2026, 12, 1, tzinfo=UTC),
        metric="points",
        rules=frozenset(),
        roles=frozenset(),
        scope="nation",
        winners=3,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def _ranking(contest: Contest, entries: list[Award], scope: str = "all") -> list[tuple[str, str]]:
    return [(s.staff_id, str(s.score)) for s in contest_standings(contest, entries).get(scope, [])]


def test_ties_go_to_who_reached_the_score_first_then_by_id() -> None:
    entries = [
        _entry("S2", T0, 20),
        _entry("S1", T0 + timedelta(hours=1), 20),
        _entry("S3", T0, 10),
        _entry("S3", T0 + timedelta(hours=2), 10),
        _entry("S4", T0, 20),
    ]
    assert _ranking(_contest(), entries) == [("S2", "20"), ("S4", "20"), ("S1", "20"), ("S3", "20")]


def test_fastest_to_a_target_wins_and_short_of_it_is_not_ranked() -> None:
    """'Fastest five': ranked by the event time each person's fifth award happened."""
    contest = _contest(metric="awards", target=5)
    entries = [_entry("S1", T0 + timedelta(hours=h), n=h) for h in range(5)]  # fifth at +4 h
    entries += [_entry("S2", T0 + timedelta(hours=h / 2), n=h) for h in range(6)]  # fifth at +2 h
    entries += [_entry("S3", T0 + timedelta(minutes=m), n=m) for m in range(4)]  # only four
    standings = contest_standings(contest, entries)["all"]
    assert [(s.staff_id, s.reached_at) for s in standings] == [
        ("S2", T0 + timedelta(hours=2)),
        ("S1", T0 + timedelta(hours=4)),
    ]


def test_a_taken_back_award_never_helped_reach_a_score() -> None:
    """S1's third award was taken back: S1 reaches 5 awards only with the sixth."""
    contest = _contest(metric="awards", target=5)
    s1 = [_entry("S1", T0 + timedelta(hours=h), n=h) for h in range(6)]
    s2 = [_entry("S2", T0 + timedelta(hours=h, minutes=30), n=h) for h in range(5)]
    entries = [*s1, _taken_back(s1[2]), *s2]
    standings = contest_standings(contest, entries)["all"]
    assert [(s.staff_id, s.reached_at) for s in standings] == [
        ("S2", T0 + timedelta(hours=4, minutes=30)),
        ("S1", T0 + timedelta(hours=5)),
    ]


def test_amount_metric_counts_sales_money_less_refunded_shares() -> None:
    contest = _contest(metric="amount", rules=frozenset({"upsell.amc"}), winners=1)
    big = _entry("S1", T0, 40, rule="upsell.amc", amount="10000.00", role="service_advisor")
    small = _entry("S2", T0, 40, rule="upsell.amc", amount="8000.00", role="service_advisor")
    other_rule = _entry("S2", T0, 40, rule="upsell.tyres", amount="9000.00", role="service_advisor")
    assert _ranking(contest, [big, small, other_rule]) == [("S1", "10000.00"), ("S2", "8000.00")]
    half_refund = _taken_back(big, share="0.5000")
    assert _ranking(contest, [big, small, other_rule, half_refund]) == [("S2", "8000.00"), ("S1", "5000.000000")]
    assert [s.staff_id for s in winners(contest, [big, small, half_refund])["all"]] == ["S2"]


def test_window_roles_rules_and_scope() -> None:
    """Only entries whose event time is in [from, to), of the listed roles and rules; one ranking per region."""
    contest = _contest(scope="region", roles=frozenset({"technician"}), rules=frozenset({"jobcard.flawless"}))
    entries = [
        _entry("S1", T0, 10, centre="C01"),
        _entry("S2", T0, 30, centre="C02"),
        _entry("S5", T0, 20, centre="C05"),
        _entry("S6", T0, 50, centre="C05", role="service_advisor"),
        _entry("S7", T0, 50, centre="C05", rule="jobcard.on_time"),
        _entry("S8", datetime(2026, 12, 1, tzinfo=UTC), 50, centre="C05"),  # the window's end: out
        _entry("S9", datetime(2026, 11, 1, tzinfo=UTC), 5, centre="C05"),  # its start: in
    ]
    standings = contest_standings(contest, entries)
    assert {k: [s.staff_id for s in v] for k, v in standings.items()} == {"north": ["S5", "S9"], "west": ["S2", "S1"]}


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.randoms(use_true_random=False))
def test_standings_do_not_depend_on_the_order_or_repeats_of_entries(seed: int, order: random.Random) -> None:
    rng = random.Random(seed)
    entries = [
        _entry(
            f"S{rng.randint(1, 6)}",
            T0 + timedelta(minutes=rng.randint(0, 3000)),
            rng.choice([5, 10, 20]),
            n=n,
            centre=rng.choice(list(REGIONS)),
        )
        for n in range(60)
    ]
    entries += [_taken_back(e) for e in rng.sample(entries, 8)]
    shuffled = entries + order.sample(entries, 10)
    order.shuffle(shuffled)
    for contest in (_contest(), _contest(metric="awards", target=4), _contest(scope="region")):
        assert contest_standings(contest, shuffled) == contest_standings(contest, entries)
    assert tiers_after(_programme(), shuffled, "2027-01") == tiers_after(_programme(), entries, "2027-01")


def _programme() -> Programme:
    return Programme(
        "p",
        1,
        (Tier("Silver", 100, 50, ("s",)), Tier("Gold", 200, 150, ("g",)), Tier("Platinum", 400, 300, ("p",))),
        (),
    )


def _month(month: int, staff: str, points: int) -> Award:
    year = 2026 + (month - 1) // 12
    return _entry(staff, datetime(year, (month - 1) % 12 + 1, 10, tzinfo=UTC), points, n=month)


def test_tiers_promote_to_the_highest_reached_and_demote_one_at_a_time() -> None:
    entries = [
        _month(9, "S1", 120),  # Sep: Silver
        _month(10, "S1", 450),  # Oct: straight to Platinum
        _month(11, "S1", 50),  # Nov: below Platinum's keep_at: down to Gold (one step)
        _month(9, "S2", 120),  # Sep: Silver
        _month(10, "S2", 60),  # Oct: kept (>= 50)
    ]
    moves = {m.staff_id: m for m in tiers_after(_programme(), entries, "2026-10")}
    assert (moves["S1"].before, moves["S1"].after, moves["S1"].move) == ("Silver", "Platinum", "promoted")
    assert (moves["S2"].before, moves["S2"].after, moves["S2"].move) == ("Silver", "Silver", "kept")
    assert moves["S1"].benefits == ("p",)
    november = {m.staff_id: m for m in tiers_after(_programme(), entries, "2026-11")}
    assert (november["S1"].after, november["S1"].move) == ("Gold", "demoted")
    # S2 earned nothing in November: 0 < 50, one step down, from Silver to no tier
    assert (november["S2"].before, november["S2"].after, november["S2"].move) == ("Silver", None, "demoted")


def test_a_retraction_counts_in_the_season_of_the_award() -> None:
    award = _month(10, "S1", 120)
    entries = [award, _taken_back(award)]
    assert season_points(entries) == {"2026-10": {"S1": 0}}
    (move,) = tiers_after(_programme(), entries, "2026-10")
    assert (move.after, move.move) == (None, "none")


def test_the_default_programme_loads_against_the_default_pack() -> None:
    from agents.rules import load_rule_pack

    pack = load_rule_pack(DEFAULT_RULES)
    programme = load_programme(DEFAULT_PROGRAMME, frozenset(r.id for r in pack.rules))
    assert [t.name for t in programme.tiers] == ["Silver Partner", "Gold Performer", "Platinum Achiever"]
    assert [c.id for c in programme.contests] == ["fastest-five", "market-king", "top-territory-leaders"]


HEAD = "programme: p\nversion: 1\n"
TIERS = "tiers:\n  - {name: Silver, promote_at: 100, keep_at: 50}\n  - {name: Gold, promote_at: 200, keep_at: 150}\n"
CONTEST = (
    "contests:\n  - id: c\n    name: C\n    from: 2026-11-01T00:00:00+05:30\n    to: 2026-12-01T00:00:00+05:30\n"
    "    winners: 3\n"
)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("version: 1\n", 1, "'programme' must name the programme"),
        (HEAD + "prizes: []\n", 1, "unknown top-level key(s): prizes"),
        (HEAD + "version: 0\n", 3, "duplicate key 'version'"),
        ("programme: p\nversion: 0\n", 1, "'version' must be a whole number from 1"),
        (HEAD + "tiers: {}\n", 1, "'tiers' must be a list"),
        (
            HEAD + "tiers:\n  - {name: Silver, promote_at: 0, keep_at: 0}\n",
            4,
            "tier Silver: 'promote_at' must be a whole number of season points from 1",
        ),
        (
            HEAD + "tiers:\n  - {name: Silver, promote_at: 100, keep_at: 150}\n",
            4,
            "tier Silver: 'keep_at' must be a whole number from 0 to promote_at (100)",
        ),
        (
            HEAD + "tiers:\n  - {name: Silver, promote_at: 100}\n",
            4,
            "tier Silver: 'keep_at' must be a whole number from 0 to promote_at (100)",
        ),
        (
            HEAD + "tiers:\n  - {name: Silver, promote_at: 100, keep_at: 5, perks: []}\n",
            4,
            "unknown key(s): perks (allowed: benefits, keep_at, name, promote_at)",
        ),
        (
            HEAD + "tiers:\n  - {name: Gold, promote_at: 200, keep_at: 150}\n  - {name: Silver, promote_at: 100, "
            "keep_at: 50}\n",
            None,
            "tier Silver: 'promote_at' (100) must be above Gold's (200): tiers are listed lowest first",
        ),
        (
            HEAD + "tiers:\n  - {name: Silver, promote_at: 100, keep_at: 5, benefits: [1]}\n",
            4,
            "tier Silver: 'benefits' must be a list of texts",
        ),
        (
            HEAD + TIERS + CONTEST.replace("id: c", "id: Bad Id"),
            7,
            "a contest 'id' is lower-case letters, digits, '-' or '_', e.g. fastest-five",
        ),
        (
            HEAD + TIERS + CONTEST.replace("2026-12-01T00:00:00+05:30", "2026-12-01"),
            7,
            "contest c: 'to' must be a "
            "date-time with its UTC offset, e.g. 2026-12-01T00:00:00+05:30 (a bare date would mean a different moment "
            "in every time zone)",
        ),
        (HEAD + TIERS + CONTEST.replace("2026-12-01", "2026-10-01"), 7, "contest c: 'to' must be later than 'from'"),
        (
            HEAD + TIERS + CONTEST + "    metric: speed\n",
            7,
            "contest c: 'metric' must be one of: points, awards, amount",
        ),
        (
            HEAD + TIERS + CONTEST + "    scope: planet\n",
            7,
            "contest c: 'scope' must be one of: centre, region, state, nation",
        ),
        (
            HEAD + TIERS + CONTEST.replace("winners: 3", "winners: 0"),
            7,
            "contest c: 'winners' must be a whole number from 1 to 1000",
        ),
        (HEAD + TIERS + CONTEST + "    target: -1\n", 7, "contest c: 'target' must be a whole number from 1"),
        (
            HEAD + TIERS + CONTEST + "    roles: [astronaut]\n",
            7,
            "contest c: 'roles' must be a list of roles (from: "
            "technician, service_advisor, support_agent, sales_executive, dealer, manager)",
        ),
        (HEAD + TIERS + CONTEST + "    rules: [no.such]\n", 7, "contest c: no rule no.such in the rule pack"),
        (
            HEAD + TIERS + CONTEST + "    prize: car\n",
            7,
            "unknown key(s): prize (allowed: from, id, metric, name, roles, rules, scope, target, to, winners)",
        ),
        (HEAD + TIERS + CONTEST + CONTEST.replace("contests:\n", ""), 12, "contest c is defined twice"),
        (
            HEAD + "targets: [csat_mean]\n",
            1,
            "'targets' must map roles to their KPI targets, e.g. {technician: {csat_mean: 4.5}}",
        ),
        (
            HEAD + "targets:\n  astronaut: {csat_mean: 4.5}\n",
            4,
            "targets: unknown role 'astronaut' (one of: "
            "technician, service_advisor, support_agent, sales_executive, dealer, manager)",
        ),
        (
            HEAD + "targets:\n  technician: {happiness: 1}\n",
            4,
            "targets for technician: unknown KPI 'happiness' (see docs/kpis.md)",
        ),
        (
            HEAD + "targets:\n  technician: {csat_mean: high}\n",
            4,
            "targets for technician: csat_mean must be a number, got 'high'",
        ),
        (HEAD + "targets:\n  technician: {}\n", 4, "targets for technician must map KPI metrics to numbers"),
    ],
)
def test_invalid_programme_reports_reason_and_line(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    path = tmp_path / "programme.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_programme(path, frozenset({"jobcard.flawless"}))
    assert (info.value.line, info.value.reason) == (line, reason)


def test_missing_programme_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_programme(tmp_path / "nope.yaml")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12),  # award id: repeats are a retried write's copies
            st.sampled_from(["S1", "S2", "S3"]),
            st.sampled_from(["2026-10", "2026-11"]),
            st.integers(-50, 200),
            st.sampled_from(["award", "retraction", "refusal", "correction"]),
        ),
        max_size=40,
    )
)
def test_season_points_of_records_are_those_of_their_awards(
    rows: list[tuple[int, str, str, int, str]],
) -> None:
    by_id: dict[int, Award] = {}
    for n, staff_id, season, points, kind in rows:  # one record per id, as copies are the same bytes
        by_id.setdefault(n, replace(_month(10, staff_id, points), award_id=f"a{n}", season=season, kind=kind))
    records = [ledger_value(by_id[n].ledger_fields()) for n, *_ in rows]
    assert season_points_of_records(records) == season_points(Award.from_ledger(r) for r in records)
