"""`pitstop rules diff`: the same events scored by two packs, compared per person and per rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from agents.pipeline import SourceRecord
from agents.preview import decode_sources, diff_packs, ranks, render
from agents.rules import RulePack, load_rule_pack
from config.directory import Directory
from config.settings import DEFAULT_RULES
from streams.simulator import Simulator, topic_for
from streams.topics import Topics

START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


def test_ranks_share_places_on_equal_points_and_skip_after() -> None:
    assert ranks({"a": 50, "b": 30, "c": 30, "d": 10, "e": 0}) == {"a": 1, "b": 2, "c": 2, "d": 4}


def _records(directory: Directory, count: int) -> list[SourceRecord]:
    sim, topics = Simulator(directory, seed=5), Topics()
    records = []
    for i in range(count):
        event = sim.event(START + timedelta(minutes=3 * i))
        at = int((START + timedelta(minutes=3 * i)).timestamp() * 1000)
        records.append(SourceRecord(topic_for(topics, event), 0, i, b"k", orjson.dumps(event), at))
    return records


def test_the_same_pack_changes_nothing(pack: RulePack, directory: Directory) -> None:
    decoded = decode_sources(_records(directory, 1500), Topics())
    diff = diff_packs(decoded, pack, pack, directory)
    assert diff.season == "2026-11" and diff.events == 1500
    assert diff.changed() == [] and len(diff.people) > 100
    assert all(r.old_points == r.new_points for r in diff.rules)


def test_a_richer_five_star_rule_moves_points_and_ranks(tmp_path: Path, pack: RulePack, directory: Directory) -> None:
    """Doubling the five-star points changes exactly the people with five-star awards, by their count x 25."""
    richer = tmp_path / "richer.yaml"
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace("version: 2\nrules:", "version: 3\nrules:", 1)
    richer.write_text(text.replace("when: {rating: 5}\n    points: 25", "when: {rating: 5}\n    points: 50"))
    new = load_rule_pack(richer)
    decoded = decode_sources(_records(directory, 1500), Topics())
    diff = diff_packs(decoded, pack, new, directory)
    five_star = next(r for r in diff.rules if r.rule_id == "survey.csat_five_star")
    assert five_star.old_awards == five_star.new_awards > 0
    assert five_star.new_points == 2 * five_star.old_points
    assert sum(p.delta for p in diff.changed()) == five_star.old_points
    assert all(p.delta % 25 == 0 and p.delta > 0 for p in diff.changed() if p.delta)
    assert any(p.old_rank != p.new_rank for p in diff.changed())
    body = diff.to_json()
    assert (body["old_pack"], body["new_pack"]) == ("pitstop-default v2", "pitstop-default v3")
    assert body["points_new"] - body["points_old"] == five_star.old_points
    table = render(diff, limit=5)
    assert "survey.csat_five_star" in table and "more (--limit, or --json for all)" in table


def test_a_centre_scope_ranks_within_the_centre(pack: RulePack, directory: Directory) -> None:
    decoded = decode_sources(_records(directory, 1500), Topics())
    diff = diff_packs(decoded, pack, pack, directory, centre="C01")
    assert diff.scope == "centre C01"
    assert {p.centre_id for p in diff.people} == {"C01"}
    assert sorted(p.old_rank for p in diff.people if p.old_rank)[0] == 1
