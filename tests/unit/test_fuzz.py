"""Fuzzing the edge: schema-shaped events, JSON oddities and binary junk never escape as exceptions,
every record is accounted for, and no phone number survives into a dead letter, a message or an award."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.pipeline import SourceRecord, score_batch
from agents.rules import RulePack
from config.directory import Directory
from pitstop.fuzz import JSON_VALUES, schema_events
from streams.contract import FAMILY_TOPICS
from streams.events import scrub_key, scrub_payload
from streams.topics import Topics

NOW = datetime(2026, 11, 27, tzinfo=UTC)
PHONES = ["9876543210", "+91 98765 43210", "+91-98765-43210", "098765.43210"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _record(value: bytes, topic: str = "surveys") -> SourceRecord:
    return SourceRecord(topic, 0, 7, b"C01", value, int(NOW.timestamp() * 1000))


def _check(records: list[SourceRecord], pack: RulePack, directory: Directory) -> None:
    result = score_batch(records, pack=pack, directory=directory, topics=Topics(), now=NOW)
    placed = len(result.scored) + len(result.dead) + len(result.duplicates)
    assert placed == len(records)
    for letter in result.dead:
        headers = dict(letter.headers())
        assert set(headers) == {
            "original.topic",
            "original.partition",
            "original.offset",
            "original.timestamp",
            "error.kind",
            "error.message",
        }
        _no_phone(headers["error.message"])
        assert letter.record.value is None or not _has_phone(scrub_payload(letter.record.value))
    for item in result.scored:
        for award in item.awards:
            assert not _has_phone(award.to_ledger())


def _has_phone(data: bytes) -> bool:
    return any(p.encode() in data for p in PHONES)


def _no_phone(data: bytes) -> None:
    assert not _has_phone(data), data


@FUZZ
@given(event=schema_events(st.sampled_from(PHONES)))
def test_schema_shaped_events(event: dict[str, Any], pack: RulePack, directory: Directory) -> None:
    """Events generated from the published schemas are scored or dead-lettered, never raised."""
    topic = FAMILY_TOPICS[event["type"].split(".")[0]]
    _check([_record(orjson.dumps(event), topic)], pack, directory)


@FUZZ
@given(junk=st.binary(max_size=2048))
def test_binary_junk(junk: bytes, pack: RulePack, directory: Directory) -> None:
    """Arbitrary bytes become dead letters with headers."""
    _check([_record(junk)], pack, directory)


@FUZZ
@given(value=JSON_VALUES, phone=st.sampled_from(PHONES))
def test_json_oddities(value: Any, phone: str, pack: RulePack, directory: Directory) -> None:
    """NaN, huge integers, odd unicode and deep nesting, with a phone number beside them, are handled."""
    # the standard library writes what orjson refuses: NaN, Infinity and integers beyond 64 bits
    raw = json.dumps({"type": "survey.csat", "feedback": phone, "junk": value}).encode()
    _check([_record(raw), _record(json.dumps(value).encode())], pack, directory)


def test_a_one_megabyte_payload_is_refused_whole(pack: RulePack, directory: Directory) -> None:
    """A 1 MB payload (with a phone number in it) is one oversize dead letter, scrubbed."""
    raw = orjson.dumps({"type": "survey.csat", "feedback": "x" * (1 << 20) + " 9876543210"})
    _check([_record(raw)], pack, directory)


def test_scrub_masks_a_phone_number_in_a_time_field_that_is_not_a_time() -> None:
    """Only a real date-time in a ``*_at`` field is kept as it is."""
    raw = orjson.dumps({"opened_at": "\u202e9876543210", "closed_at": "2026-11-23T10:00:00Z"})
    assert orjson.loads(scrub_payload(raw)) == {"opened_at": "\u202e[redacted]", "closed_at": "2026-11-23T10:00:00Z"}


def test_dead_letter_keys_are_scrubbed() -> None:
    """Record keys are opaque bytes: phone-number runs in them are masked, the rest is kept."""
    assert scrub_key(b"cust 98765 43210") == b"cust [redacted]"
    assert scrub_key(b"C01") == b"C01"


def test_scrub_keeps_times_and_masks_phone_numbers_everywhere_else() -> None:
    """Dead-letter values keep their shape and their date-times; phone numbers in strings, keys and numbers go."""
    raw = orjson.dumps(
        {
            "occurred_at": "2026-11-23T10:00:00+05:30",
            "customer_ref": "9876543210",
            "n": 9876543210,
            "attributes": {"note": "call +91 98765 43210"},
            "98765 43210": 1,
        }
    )
    scrubbed = orjson.loads(scrub_payload(raw))
    assert scrubbed == {
        "occurred_at": "2026-11-23T10:00:00+05:30",
        "customer_ref": "[redacted]",
        "n": "[redacted]",
        "attributes": {"note": "call [redacted]"},
        "[redacted]": 1,
    }
    assert scrub_payload(b"\x00junk 98765-43210 tail") == b"\x00junk [redacted] tail"
    assert scrub_payload(b'{"rating": 5}') == b'{"rating": 5}'
