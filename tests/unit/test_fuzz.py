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
from streams.contract import EVENT_TYPES, FAMILY_TOPICS, schema_for
from streams.events import scrub_payload
from streams.topics import Topics

NOW = datetime(2026, 11, 27, tzinfo=UTC)
PHONES = ["9876543210", "+91 98765 43210", "+91-98765-43210", "098765.43210"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of the subset of JSON Schema the event contract uses (hypothesis-jsonschema does not
    work with current Hypothesis)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}) for k in kind])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**6)
            )
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 50), 50))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(
            from_schema(schema["items"]), min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 5)
        )
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties:  # free-form attributes
            return st.dictionaries(st.text(max_size=8), from_schema(schema["additionalProperties"]), max_size=4)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in properties.items() if k in required},
            optional={k: from_schema(v) for k, v in properties.items() if k not in required},
        )
    raise AssertionError(f"schema construct not covered: {schema}")


_STRATEGIES = {t: from_schema(schema_for(t)) for t in EVENT_TYPES}


@st.composite
def schema_events(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid event of any type, sometimes with a phone number planted in one of its strings."""
    event: dict[str, Any] = draw(st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda t: _STRATEGIES[t]))
    keys = [k for k, v in event.items() if isinstance(v, str) and not k.endswith("_at") and k != "type"]
    if keys and draw(st.booleans()):
        key = draw(st.sampled_from(keys))
        event[key] = draw(st.sampled_from(["", "call "])) + draw(st.sampled_from(PHONES))
    return event


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
@given(event=schema_events())
def test_schema_shaped_events(event: dict[str, Any], pack: RulePack, directory: Directory) -> None:
    """Events generated from the published schemas are scored or dead-lettered, never raised."""
    topic = FAMILY_TOPICS[event["type"].split(".")[0]]
    _check([_record(orjson.dumps(event), topic)], pack, directory)


@FUZZ
@given(junk=st.binary(max_size=2048))
def test_binary_junk(junk: bytes, pack: RulePack, directory: Directory) -> None:
    """Arbitrary bytes become dead letters with headers."""
    _check([_record(junk)], pack, directory)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


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
