"""Contract v1 at the edge: every example decodes, and every kind of bad input is refused precisely."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.contract import EVENT_TYPES
from streams.events import InvalidEvent, decode_event, redact
from streams.examples import EXAMPLES

NOW = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)  # after every example's event time
KNOWN_TYPES = ", ".join(sorted(EVENT_TYPES))
TIME_HINT = "must be an RFC 3339 date-time with an offset, e.g. 2026-11-23T10:15:00+05:30"
CLOSED = "(contract v1 is closed; put extras in 'attributes')"


def payload(event_type: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of the published example of ``event_type`` with ``changes`` applied."""
    data = copy.deepcopy(EXAMPLES[event_type])
    data.update(changes)
    return data


def without(event_type: str, field: str) -> dict[str, Any]:
    data = payload(event_type)
    del data[field]
    return data


def refused(raw: bytes | dict[str, Any], **options: Any) -> InvalidEvent:
    """The InvalidEvent that decoding ``raw`` raises."""
    body = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    with pytest.raises(InvalidEvent) as info:
        decode_event(body, now=NOW, **options)
    return info.value


def example_bytes(event_type: str, old: bytes, new: bytes) -> bytes:
    """The example's JSON bytes with ``old`` replaced by ``new`` (for literals orjson cannot write)."""
    raw = orjson.dumps(EXAMPLES[event_type])
    assert old in raw
    return raw.replace(old, new, 1)


def test_every_event_type_has_an_example() -> None:
    """Each contract type has exactly one published example, and no example is of an unknown type."""
    assert sorted(EXAMPLES) == sorted(EVENT_TYPES)
    assert all(example["type"] == name for name, example in EXAMPLES.items())


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_example_decodes(event_type: str) -> None:
    """Each example decodes into an Event carrying its id, type, aware event time, centre and people."""
    example = EXAMPLES[event_type]
    event = decode_event(orjson.dumps(example), now=NOW, topic_family=event_type.split(".")[0])
    assert event.event_id == example["event_id"]
    assert event.type == event_type
    assert event.occurred_at == datetime.fromisoformat(example["occurred_at"])
    assert event.occurred_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert event.centre_id == "C01"
    assert [(p.staff_id, p.role) for p in event.people] == [(p["staff_id"], p["role"]) for p in example["people"]]
    assert event.customer_ref == example.get("customer_ref")
    assert dict(event.data) == example


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        pytest.param(
            payload("survey.csat", type="survey.ces"),
            "unknown_type",
            f"type: unknown event type (known: {KNOWN_TYPES})",
            id="unknown-type",
        ),
        pytest.param(without("survey.csat", "type"), "missing_field", "type: a string is required", id="no-type"),
        pytest.param(payload("survey.csat", type=5), "wrong_type", "type: a string is required", id="type-not-str"),
        pytest.param(
            without("survey.csat", "rating"), "missing_field", "missing required field(s): rating", id="missing"
        ),
        pytest.param(
            {**without("survey.csat", "people"), "people": [{"staff_id": "S0001"}]},
            "missing_field",
            "missing required field(s) in people[0]: role",
            id="missing-nested",
        ),
        pytest.param(payload("survey.csat", rating="5"), "wrong_type", "rating must be integer", id="rating-str"),
        pytest.param(payload("survey.csat", rating=4.5), "wrong_type", "rating must be integer", id="rating-frac"),
        pytest.param(
            payload("survey.csat", rating=7),
            "invalid_value",
            "rating must be smaller than or equal to 5",
            id="rating-7",
        ),
        pytest.param(
            payload("survey.csat", rating=0), "invalid_value", "rating must be bigger than or equal to 1", id="rating-0"
        ),
        pytest.param(
            payload("survey.nps", score=11), "invalid_value", "score must be smaller than or equal to 10", id="nps-11"
        ),
        pytest.param(
            payload("sale.upsell", amount=-5), "invalid_value", "amount must be bigger than 0", id="amount-negative"
        ),
        pytest.param(payload("sale.upsell", amount=0), "invalid_value", "amount must be bigger than 0", id="amount-0"),
        pytest.param(
            payload("ticket.escalated", level=9),
            "invalid_value",
            "level must be smaller than or equal to 5",
            id="level-9",
        ),
        pytest.param(
            payload("sale.upsell", line="floor_mats"),
            "invalid_value",
            "line is not one of the allowed values",
            id="enum",
        ),
        pytest.param(
            payload("survey.csat", people=[{"staff_id": "S0001", "role": "chef"}]),
            "invalid_value",
            "people[0].role is not one of the allowed values",
            id="nested-enum",
        ),
        pytest.param(
            payload("survey.csat", ratting=5), "unknown_field", f"unknown field(s): ratting {CLOSED}", id="unknown-top"
        ),
        pytest.param(
            payload("survey.csat", people=[{"staff_id": "S0001", "role": "technician", "nick": "Ayu"}]),
            "unknown_field",
            f"unknown field(s) in people[0]: nick {CLOSED}",
            id="unknown-nested",
        ),
        pytest.param(
            payload("survey.csat", occurred_at="2026-11-23T18:10:00"),
            "invalid_value",
            f"occurred_at: {TIME_HINT}",
            id="time-without-offset",
        ),
        pytest.param(
            payload("survey.csat", occurred_at="23/11/2026 18:10"),
            "invalid_value",
            f"occurred_at: {TIME_HINT}",
            id="time-malformed",
        ),
        pytest.param(
            payload("ticket.resolved", opened_at="yesterday"),
            "invalid_value",
            f"opened_at: {TIME_HINT}",
            id="other-time-malformed",
        ),
        pytest.param(
            payload("survey.csat", people=[]), "invalid_value", "people must contain at least 1 items", id="no-people"
        ),
        pytest.param(
            payload(
                "survey.csat",
                people=[{"staff_id": "S0001", "role": "technician"}, {"staff_id": "S0001", "role": "service_advisor"}],
            ),
            "inconsistent",
            "people: a staff_id appears more than once",
            id="duplicate-staff",
        ),
        pytest.param(
            payload("ticket.resolved", opened_at="2026-11-23T14:00:00+05:30"),
            "inconsistent",
            "opened_at is later than occurred_at",
            id="opened-after-occurred",
        ),
        pytest.param(
            payload("ticket.resolved", resolution_due_at="2026-11-23T09:00:00+05:30"),
            "inconsistent",
            "resolution_due_at must be later than opened_at",
            id="deadline-before-opened",
        ),
        pytest.param(
            payload("jobcard.closed", promised_at="2026-11-23T09:05:00+05:30"),
            "inconsistent",
            "promised_at must be later than opened_at",
            id="promise-equals-opened",
        ),
        pytest.param(
            payload("jobcard.reopened", closed_at="2026-11-26T10:00:00+05:30"),
            "inconsistent",
            "closed_at is later than occurred_at (a card reopens after it closed)",
            id="closed-after-reopened",
        ),
        pytest.param(
            payload("recognition.given", awarded_by="S0001"),
            "inconsistent",
            "awarded_by: a manager cannot recognise themselves",
            id="self-recognition",
        ),
        pytest.param(
            payload("survey.csat", attributes={"a": {"b": {"c": 1}}}),
            "wrong_type",
            "attributes.a must be string or number or boolean or null",
            id="nested-junk-in-attributes",
        ),
    ],
)
def test_bad_payload_gives_kind_and_message(raw: dict[str, Any], kind: str, message: str) -> None:
    """Each contract breach is refused with its own error kind and a message naming the field."""
    error = refused(raw)
    assert (error.kind, error.message) == (kind, message)
    assert str(error) == message


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        pytest.param(b"\xff\xfe", "not_json", id="not-utf8"),
        pytest.param(b"{oops", "not_json", id="broken-json"),
        pytest.param(b"", "not_json", id="empty"),
        pytest.param(example_bytes("survey.csat", b'"rating":5', b'"rating":NaN'), "not_json", id="nan"),
        pytest.param(example_bytes("sale.upsell", b'"amount":14999.0', b'"amount":Infinity'), "not_json", id="inf"),
        pytest.param(example_bytes("survey.csat", b'"rating":5', b'"rating":' + b"9" * 400), "not_json", id="huge-int"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "not_json", id="deep-array"),
        pytest.param(
            example_bytes(
                "survey.csat", b'"rating":5', b'"rating":5,"attributes":{"a":' + b"[" * 3000 + b"]" * 3000 + b"}"
            ),
            "not_json",
            id="deep-junk-in-event",
        ),
    ],
)
def test_unparseable_bytes_are_not_json(raw: bytes, kind: str) -> None:
    """Bytes that are not strict UTF-8 JSON (incl. NaN/Infinity, runaway nesting, huge numbers) are not_json."""
    error = refused(raw)
    assert error.kind == kind
    assert error.message.startswith("not valid UTF-8 JSON: ")


@pytest.mark.parametrize(
    ("raw", "name"), [(b"[1, 2]", "list"), (b"42", "int"), (b"null", "NoneType"), (b'"jobcard.closed"', "str")]
)
def test_json_that_is_not_an_object_is_refused(raw: bytes, name: str) -> None:
    """A JSON array, number, null or string is not_an_object, and the message says what it got."""
    error = refused(raw)
    assert (error.kind, error.message) == ("not_an_object", f"an event is a JSON object, got a JSON {name}")


def test_huge_but_finite_integer_is_out_of_range() -> None:
    """A 30-digit rating parses but is refused as an impossible value."""
    error = refused(example_bytes("survey.csat", b'"rating":5', b'"rating":' + b"9" * 30))
    assert (error.kind, error.message) == ("invalid_value", "rating must be smaller than or equal to 5")


def test_oversize_payload_is_refused_before_parsing() -> None:
    """A record over max_bytes is refused as oversize with its size and the limit, even if it is not JSON."""
    error = refused(b"{" + b" " * 70_000 + b"}")
    assert (error.kind, error.message) == ("oversize", "payload is 70002 bytes; the limit is 65536")
    small_limit = refused(payload("survey.csat", feedback="x" * 1000), max_bytes=512)
    assert small_limit.kind == "oversize"
    assert small_limit.message.endswith("bytes; the limit is 512")


def test_event_time_days_ahead_is_refused() -> None:
    """An event 3 days ahead of the worker clock is future_event_time, with both durations in words."""
    error = refused(payload("survey.csat", occurred_at="2026-11-30T00:00:00Z"))
    assert error.kind == "future_event_time"
    assert error.message == "occurred_at is 3 days in the future; at most 15 minutes of clock skew is accepted"


def test_event_time_within_skew_is_accepted() -> None:
    """An event 10 minutes ahead is within the 15-minute skew and decodes; 16 minutes is refused."""
    event = decode_event(orjson.dumps(payload("survey.csat", occurred_at="2026-11-27T00:10:00Z")), now=NOW)
    assert event.occurred_at == NOW + timedelta(minutes=10)
    assert refused(payload("survey.csat", occurred_at="2026-11-27T00:16:00Z")).kind == "future_event_time"


def test_skew_is_configurable() -> None:
    """With a 1-hour skew allowance an event 30 minutes ahead decodes."""
    raw = orjson.dumps(payload("survey.csat", occurred_at="2026-11-27T00:30:00Z"))
    assert decode_event(raw, now=NOW, max_future_skew=timedelta(hours=1)).event_id == "srv-9001"


def test_event_on_another_familys_topic_is_refused() -> None:
    """A ticket event on the jobcards topic is wrong_topic and the message names the right topic."""
    error = refused(EXAMPLES["ticket.opened"], topic_family="jobcard")
    assert (error.kind, error.message) == ("wrong_topic", "type ticket.opened belongs on the 'tickets' topic")


@pytest.mark.parametrize("ref", ["9876543210", "tel+919876543210", "+919876543210", "c9876543210", "cust_98765432"])
def test_phone_like_customer_ref_is_refused_without_echo(ref: str) -> None:
    """A phone-number customer_ref is refused; the message names customer_ref but never echoes the number."""
    error = refused(payload("survey.csat", customer_ref=ref))
    assert error.kind in ("personal_data", "invalid_value")
    assert "customer_ref" in error.message
    assert ref not in error.message
    assert "9876543" not in error.message


def test_phone_number_after_a_word_is_personal_data() -> None:
    """A reference that is a word followed by a phone number is refused as personal_data."""
    error = refused(payload("survey.csat", customer_ref="c9876543210"))
    assert error.kind == "personal_data"
    assert error.message == "customer_ref looks like a phone number; send a pseudonymous reference"


@pytest.mark.parametrize("ref", ["9876543210", "tel+919876543210"])
def test_bare_phone_number_customer_ref_is_personal_data(ref: str) -> None:
    """A customer_ref that is just a phone number is refused with kind personal_data."""
    assert refused(payload("survey.csat", customer_ref=ref)).kind == "personal_data"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("survey_id", "9876543210"),
        ("event_id", "919876543210"),
        ("centre_id", "98765-43210"),
        ("survey_id", "+919876543210"),
    ],
)
def test_an_id_that_is_a_phone_number_is_personal_data(field: str, value: str) -> None:
    """Some source systems key records by the customer's mobile: such an id is refused, not echoed."""
    error = refused(payload("survey.csat", **{field: value}))
    assert error.kind in ("personal_data", "invalid_value")
    assert "98765" not in error.message
    if "+" not in value:  # '+' is outside the id pattern; the others reach the personal-data check
        assert (error.kind, error.message) == (
            "personal_data",
            f"{field} looks like a phone number; use an id that is not one",
        )


def test_a_staff_id_that_is_a_phone_number_is_personal_data() -> None:
    """The people list is checked too, with the position in the message."""
    error = refused(payload("survey.csat", people=[{"staff_id": "9876543210", "role": "service_advisor"}]))
    assert (error.kind, error.message) == (
        "personal_data",
        "people[0].staff_id looks like a phone number; use an id that is not one",
    )


@pytest.mark.parametrize("value", ["123456789", "SO-4500012345", "JC-2026-000123"])
def test_short_numeric_or_prefixed_ids_pass(value: str) -> None:
    """Numeric ids of up to 9 digits and prefixed ids are ordinary ids."""
    assert decode_event(orjson.dumps(payload("survey.csat", survey_id=value)), now=NOW).data["survey_id"] == value


@pytest.mark.parametrize("ref", ["cust_5e1c9a2b7d", "cust_123456a", "crm-0042-ab", "cust_fjoykb3546446"])
def test_hash_like_customer_ref_with_digits_is_accepted(ref: str) -> None:
    """A pseudonymous reference that contains digits but is not a phone number decodes."""
    event = decode_event(orjson.dumps(payload("survey.csat", customer_ref=ref)), now=NOW)
    assert event.customer_ref == ref


def test_malformed_time_message_does_not_echo_the_value() -> None:
    """The bad-time message gives the expected format, not the value sent."""
    error = refused(payload("survey.csat", occurred_at="23/11/2026 18:10"))
    assert "23/11/2026" not in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "2026-13-45T18:10:00+05:30"),
        ("occurred_at", "2026-11-23T24:00:00Z"),
        ("occurred_at", "2026-11-23T18:10:00+25:00"),
        ("opened_at", "2026-11-31T10:00:00+05:30"),
    ],
)
def test_impossible_calendar_time_is_invalid_value(field: str, value: str) -> None:
    """A time that matches the RFC 3339 shape but names no real instant is refused as invalid_value."""
    error = refused(payload("ticket.resolved", **{field: value}))
    assert (error.kind, error.message) == (
        "invalid_value",
        f"{field}: not a real date-time (check day, hour and offset)",
    )


@pytest.mark.parametrize("value", ["2026-11-23 18:10:00z", "2026-11-23t18:10:00Z", "2026-11-23T12:40:00.123456789Z"])
def test_rfc3339_variants_are_accepted(value: str) -> None:
    """Space or lower-case separators, lower-case z and nanosecond fractions are valid RFC 3339 times."""
    event = decode_event(orjson.dumps(payload("survey.csat", occurred_at=value)), now=NOW)
    assert event.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ring 9876543210", "ring [redacted]"),
        ("call +91-98765-43210", "call [redacted]"),
        ("call me on 98765 43210", "call me on [redacted]"),
        ("job 123456 done", "job 123456 done"),
        ("Quick and clean work", "Quick and clean work"),
    ],
)
def test_redact_masks_phone_like_runs(text: str, expected: str) -> None:
    """Runs of 7+ digits (spaces, dots and dashes allowed) become [redacted]; short numbers stay."""
    assert redact(text) == expected


def test_redact_keeps_the_space_after_a_number() -> None:
    """Masking a number in mid-sentence keeps the words around it apart."""
    assert redact("call 98765 43210 today") == "call [redacted] today"
