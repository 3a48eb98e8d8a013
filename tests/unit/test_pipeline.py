"""score_batch: raw source records end as scored events, dead letters or duplicates, never an exception."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

import agents.pipeline
from agents.pipeline import BatchResult, DeadLetter, SourceRecord, score_batch
from agents.rules import RulePack
from agents.scoring import score_event
from config.directory import Directory
from streams.contract import FAMILY_TOPICS
from streams.examples import EXAMPLES
from streams.topics import Topics

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def record(
    offset: int, event_type: str | None = None, *, topic: str = "", raw: bytes | None = None, **changes: Any
) -> SourceRecord:
    """A source record at ``offset`` holding the example of ``event_type`` (with changes) or ``raw``."""
    if event_type is not None:
        raw = orjson.dumps({**copy.deepcopy(EXAMPLES[event_type]), **changes})
        topic = topic or FAMILY_TOPICS[event_type.split(".")[0]]
    return SourceRecord(topic, 2, offset, b"C01", raw, int(NOW.timestamp() * 1000) + offset)


def run(records: list[SourceRecord], pack: RulePack, directory: Directory, **options: Any) -> BatchResult:
    return score_batch(records, pack=pack, directory=directory, topics=Topics(), now=NOW, **options)


def test_mixed_batch_sorts_every_record_once(pack: RulePack, directory: Directory) -> None:
    """Each record of a mixed batch lands in exactly one of scored, dead or duplicates."""
    records = [
        record(0, "jobcard.closed"),
        record(1, "jobcard.closed"),  # the same event again in this batch
        record(2, "survey.csat"),  # seen in an earlier batch
        record(3, topic="surveys", raw=None),  # tombstone
        record(4, topic="surveys", raw=b"{oops"),
        record(5, "ticket.opened", topic="jobcards"),
        record(6, "sale.vehicle", centre_id="C99"),
        record(7, "sale.upsell"),
    ]
    result = run(records, pack, directory, already_seen={"srv-9001"})
    assert [s.record.offset for s in result.scored] == [0, 7]
    assert [(d.record.offset, d.kind) for d in result.dead] == [
        (3, "not_json"),
        (4, "not_json"),
        (5, "wrong_topic"),
        (6, "unknown_reference"),
    ]
    assert [d.record.offset for d in result.duplicates] == [1, 2]
    placed = [s.record for s in result.scored + result.duplicates] + [d.record for d in result.dead]
    assert sorted(r.offset for r in placed) == list(range(len(records)))
    assert [(r.offset, a.rule_id, a.staff_id) for r, a in result.awards][-1] == (7, "upsell.extended_warranty", "S0009")
    assert sum(1 for _ in result.awards) == 6


def test_tombstone_is_a_dead_letter(pack: RulePack, directory: Directory) -> None:
    """A record with no value becomes a not_json dead letter saying it was a tombstone."""
    result = run([record(9, topic="tickets", raw=None)], pack, directory)
    assert [(d.kind, d.message) for d in result.dead] == [("not_json", "empty record (tombstone)")]
    assert (result.scored, result.duplicates) == ([], [])


def test_dead_letter_headers_carry_origin_and_error(pack: RulePack, directory: Directory) -> None:
    """A dead letter's headers name the original topic, partition, offset, timestamp, error kind and message."""
    (dead,) = run([record(41, "survey.csat", rating=7)], pack, directory).dead
    assert dead.headers() == [
        ("original.topic", b"surveys"),
        ("original.partition", b"2"),
        ("original.offset", b"41"),
        ("original.timestamp", str(int(NOW.timestamp() * 1000) + 41).encode()),
        ("error.kind", b"invalid_value"),
        ("error.message", b"rating must be smaller than or equal to 5"),
    ]


def test_dead_letter_message_header_is_capped() -> None:
    """The error.message header is cut to 1000 bytes."""
    letter = DeadLetter(record(0, topic="sales", raw=b"x"), "internal_error", "y" * 5000)
    assert dict(letter.headers())["error.message"] == b"y" * 1000


def test_scoring_exception_becomes_internal_error(
    pack: RulePack, directory: Directory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while scoring one event parks it as internal_error; the other events are still scored."""

    def flaky(event: Any, *args: Any) -> Any:
        if event.event_id == "srv-9002":
            raise RuntimeError("rule bug")
        return score_event(event, *args)

    monkeypatch.setattr(agents.pipeline, "score_event", flaky)
    result = run([record(0, "survey.csat"), record(1, "survey.nps"), record(2, "sale.vehicle")], pack, directory)
    assert [s.event.event_id for s in result.scored] == ["srv-9001", "crm-55400"]
    assert [(d.record.offset, d.kind, d.message) for d in result.dead] == [
        (1, "internal_error", "scoring failed: RuntimeError")
    ]
    assert "scoring failed for event at surveys[2]@1" in caplog.text


def test_event_parked_as_internal_error_is_not_marked_seen(
    pack: RulePack, directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an internal error, a replay of the same event in the batch is scored, not dropped as a duplicate."""
    calls: list[str] = []

    def fails_once(event: Any, *args: Any) -> Any:
        calls.append(event.event_id)
        if len(calls) == 1:
            raise KeyError("boom")
        return score_event(event, *args)

    monkeypatch.setattr(agents.pipeline, "score_event", fails_once)
    result = run([record(0, "sale.vehicle"), record(1, "sale.vehicle")], pack, directory)
    assert [d.kind for d in result.dead] == ["internal_error"]
    assert [s.record.offset for s in result.scored] == [1]
    assert result.duplicates == []


def test_prefixed_topics_keep_their_family(pack: RulePack, directory: Directory) -> None:
    """With a topic prefix, an event on its prefixed family topic is scored and on another one refused."""
    records = [record(0, "sale.vehicle", topic="dev.sales"), record(1, "sale.vehicle", topic="dev.tickets")]
    result = score_batch(records, pack=pack, directory=directory, topics=Topics("dev."), now=NOW)
    assert [s.record.offset for s in result.scored] == [0]
    assert [(d.kind, d.message) for d in result.dead] == [
        ("wrong_topic", "type sale.vehicle belongs on the 'sales' topic")
    ]


def test_impossible_date_does_not_break_the_batch(pack: RulePack, directory: Directory) -> None:
    """An event with a pattern-valid but impossible date is a dead letter and the rest of the batch is scored."""
    result = run(
        [record(0, "sale.vehicle", occurred_at="2026-11-31T10:00:00+05:30"), record(1, "sale.upsell")], pack, directory
    )
    assert [d.kind for d in result.dead] == ["invalid_value"]
    assert [s.record.offset for s in result.scored] == [1]


def test_future_time_is_judged_against_arrival_not_the_replay_clock(pack: RulePack, directory: Directory) -> None:
    """An event that was too far ahead when it arrived stays a dead letter when replayed much later."""
    example = record(0, "survey.csat")
    arrived = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1000)  # 3 days before its event time
    early = SourceRecord(example.topic, 0, 0, b"C01", example.value, arrived)
    result = score_batch([early], pack=pack, directory=directory, topics=Topics(), now=datetime(2027, 6, 1, tzinfo=UTC))
    assert [d.kind for d in result.dead] == ["future_event_time"]
