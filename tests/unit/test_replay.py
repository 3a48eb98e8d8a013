"""`pitstop replay`, the pure parts: the order records are scored in, the ledger digest, the per-person
changes, ledger generations' topic names, and the refusals of names and packs before any I/O."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from agents.pipeline import SourceRecord
from agents.scoring import Award, ledger_value
from pitstop.cli import main
from pitstop.replay import PersonChange, arrival_order, changes, digest
from streams.topics import GENERATION_NAME, Topics
from tests.functional.conftest import award


def _record(topic: str, partition: int, offset: int, ms: int) -> SourceRecord:
    return SourceRecord(topic, partition, offset, b"k", b"{}", ms)


def test_arrival_order_keeps_each_partition_in_offset_order_and_merges_by_timestamp() -> None:
    records = [
        _record("jobcards", 0, 0, 100),
        _record("jobcards", 0, 1, 50),  # a producer clock going back: still after offset 0
        _record("surveys", 0, 0, 60),
        _record("surveys", 1, 0, 10),
        _record("jobcards", 0, 2, 300),
        _record("surveys", 0, 1, 200),
    ]
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    merged = arrival_order(shuffled)
    assert [(r.topic, r.partition, r.offset) for r in merged] == [
        ("surveys", 1, 0),
        ("surveys", 0, 0),
        ("jobcards", 0, 0),
        ("jobcards", 0, 1),
        ("surveys", 0, 1),
        ("jobcards", 0, 2),
    ]
    assert arrival_order(records) == merged  # whatever order they were read in


def test_the_digest_is_of_the_records_in_order() -> None:
    assert digest([b"ab", b"c"]) == digest([b"ab", b"c"])
    assert digest([b"ab", b"c"]) != digest([b"c", b"ab"])
    assert digest([b"ab", b"c"]) != digest([b"a", b"bc"])  # records are delimited, not concatenated


def _raw(entry: Award) -> bytes:
    return ledger_value(entry.ledger_fields())


def test_changes_per_person_and_season_biggest_first() -> None:
    live = [_raw(a) for a in (award(1, "S0001", 10), award(2, "S0002", 30), award(3, "S0003", 5))]
    shadow = [
        _raw(a)
        for a in (award(1, "S0001", 10), award(2, "S0002", 60), replace(award(4, "S0004", 20), season="2026-12"))
    ]
    assert changes(live, shadow) == [
        PersonChange("S0002", "2026-11", 30, 60),
        PersonChange("S0004", "2026-12", 0, 20),
        PersonChange("S0003", "2026-11", 5, 0),
    ]
    assert changes(live, live) == []


def test_a_generation_has_a_ledger_topic_of_its_own() -> None:
    assert Topics("t1.").ledger == "t1.points-ledger"
    assert Topics("t1.", "nov-restate").ledger == "t1.points-ledger.nov-restate"
    assert Topics("t1.", "nov-restate").generations == Topics("t1.").generations == "t1.ledger-generations"
    assert Topics("t1.", "nov-restate").sources == Topics("t1.").sources
    assert all(GENERATION_NAME.match(n) for n in ("a", "nov-restate", "2026-12"))
    assert not any(GENERATION_NAME.match(n) for n in ("", "Nov", "-x", "a_b", "a.b", "x" * 41))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "Nov restate"], "argument --name: 'Nov restate': lower-case letters, digits and '-' (at most 40)"),
        (["--name", "ok"], "the following arguments are required"),
    ],
)
def test_a_bad_name_is_refused_by_the_command(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["replay", *args] if args[1] != "ok" else ["replay"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_pack_that_does_not_validate_is_refused_before_anything_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("pack: x\nversion: 1\nrules: []\n", encoding="utf-8")
    assert main(["replay", "--name", "x", "--pack", str(broken)]) == 2
    assert f"{broken}:1: 'rules' must be a non-empty list" in capsys.readouterr().err
