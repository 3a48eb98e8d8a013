"""Decode and validate one raw event at the edge.

``decode_event(raw, ...)`` either returns an :class:`Event` or raises :class:`InvalidEvent` with a
machine-readable ``kind`` (it becomes the dead-letter header ``error.kind``) and a message that says what
is wrong without echoing the offending value (values may carry personal data).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import fastjsonschema
import orjson

from streams.contract import EVENT_TYPES, FAMILY_TOPICS, all_schemas

# Error kinds, as they appear in the dead-letter header `error.kind`.
NOT_JSON = "not_json"
OVERSIZE = "oversize"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_TYPE = "unknown_type"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNKNOWN_FIELD = "unknown_field"
INVALID_VALUE = "invalid_value"
FUTURE_EVENT_TIME = "future_event_time"
INCONSISTENT = "inconsistent"
PERSONAL_DATA = "personal_data"
WRONG_TOPIC = "wrong_topic"
UNKNOWN_REFERENCE = "unknown_reference"

# Seven or more digits in a row, optionally split by spaces, dots or dashes: phone-number-like text.
PHONE_LIKE = re.compile(r"\+?\d(?:[\s.\-()]?\d){6,}")
# A customer reference that is a phone number behind at most a short tag ("c9876543210", "tel+91...",
# "cust_9876543210"). A token that merely ends in digits ("cust_fjoykb3546446") is not one.
PHONE_REF = re.compile(r"^(?:[A-Za-z]{1,4}[_-]?)?\+?\d{7,15}$")
# An identifier that is nothing but a phone number (10-15 digits, perhaps with + and separators): some
# source systems key job cards or tickets by the customer's mobile. Shorter numeric ids pass.
PHONE_ID = re.compile(r"^\+?\d(?:[\s.\-]?\d){9,14}$")


class InvalidEvent(ValueError):
    """The event breaks the contract. Retrying does not help: it goes to the dead-letter topic."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Person:
    staff_id: str
    role: str


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class Event:
    event_id: str
    type: str
    occurred_at: datetime  # timezone-aware: the event time
    centre_id: str
    people: tuple[Person, ...]
    customer_ref: str | None
    data: Mapping[str, Any]  # the whole validated payload, as sent

    @property
    def family(self) -> str:
        return self.type.split(".", 1)[0]


def _compile() -> dict[str, Callable[[Any], Any]]:
    return {name: fastjsonschema.compile(schema) for name, schema in all_schemas().items()}


_VALIDATORS = _compile()

_RULE_KINDS = {
    "required": MISSING_FIELD,
    "type": WRONG_TYPE,
    "additionalProperties": UNKNOWN_FIELD,
}


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 date-time that passed the schema pattern; the offset is mandatory."""
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:  # unreachable after the schema pattern, kept as a guard
        raise ValueError("no UTC offset")
    return parsed


def decode_event(
    raw: bytes,
    *,
    now: datetime,
    max_bytes: int = 64 * 1024,
    max_future_skew: timedelta = timedelta(minutes=15),
    topic_family: str | None = None,
) -> Event:
    """Validate ``raw`` (the Kafka record value) against contract v1 and return the event.

    ``now`` is the wall-clock time used only to refuse event times too far in the future;
    ``topic_family`` (e.g. ``"jobcard"``) refuses an event on the wrong source topic.
    """
    if len(raw) > max_bytes:
        raise InvalidEvent(OVERSIZE, f"payload is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(NOT_JSON, f"not valid UTF-8 JSON: {str(exc).split(':')[0]}") from None
    if not isinstance(payload, dict):
        raise InvalidEvent(NOT_AN_OBJECT, f"an event is a JSON object, got a JSON {type(payload).__name__}")
    event_type = payload.get("type")
    if not isinstance(event_type, str):
        raise InvalidEvent(MISSING_FIELD if event_type is None else WRONG_TYPE, "type: a string is required")
    validator = _VALIDATORS.get(event_type)
    if validator is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise InvalidEvent(UNKNOWN_TYPE, f"type: unknown event type (known: {known})"[:600])
    if topic_family is not None and event_type.split(".", 1)[0] != topic_family:
        expected = FAMILY_TOPICS.get(event_type.split(".", 1)[0], "?")
        raise InvalidEvent(WRONG_TOPIC, f"type {event_type} belongs on the '{expected}' topic")
    _check_personal_data(payload)  # first: a phone number must be reported as such, whatever else is wrong
    try:
        validator(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidEvent(_RULE_KINDS.get(exc.rule or "", INVALID_VALUE), _schema_message(exc)) from None

    occurred_at = _time(payload, "occurred_at")
    if occurred_at - now > max_future_skew:
        raise InvalidEvent(
            FUTURE_EVENT_TIME,
            f"occurred_at is {_human(occurred_at - now)} in the future; at most {_human(max_future_skew)} "
            "of clock skew is accepted",
        )
    _check_consistency(event_type, payload, occurred_at)
    people = tuple(Person(p["staff_id"], p["role"]) for p in payload["people"])
    if len({p.staff_id for p in people}) != len(people):
        raise InvalidEvent(INCONSISTENT, "people: a staff_id appears more than once")
    return Event(
        event_id=payload["event_id"],
        type=event_type,
        occurred_at=occurred_at,
        centre_id=payload["centre_id"],
        people=people,
        customer_ref=payload.get("customer_ref"),
        data=payload,
    )


def _time(payload: Mapping[str, Any], field: str) -> datetime:
    """A time field that matched the RFC 3339 pattern but may still be impossible (Nov 31, 24:00, +25:00)."""
    try:
        return parse_time(payload[field])
    except ValueError:
        raise InvalidEvent(INVALID_VALUE, f"{field}: not a real date-time (check day, hour and offset)") from None


def _schema_message(exc: Any) -> str:
    # fastjsonschema says e.g. "data.rating must be smaller than or equal to 5"; drop the "data." root.
    message = str(exc.message)
    message = re.sub(r"^data\.?", "", message).strip()
    name = str(exc.name or "data").removeprefix("data").lstrip(".")
    where = f" in {name}" if name else ""
    if exc.rule == "required":
        return f"missing required field(s){where}: {_names_in(message)}"
    if exc.rule == "additionalProperties":
        return f"unknown field(s){where}: {_names_in(message)} (contract v1 is closed; put extras in 'attributes')"
    if exc.rule == "pattern" and name.endswith(("_at", "occurred_at")):
        return f"{name}: must be an RFC 3339 date-time with an offset, e.g. 2026-11-23T10:15:00+05:30"
    if exc.rule in ("enum", "const"):
        return f"{name}: {message.split(' must be one of')[0]} is not one of the allowed values".replace(
            f"{name}: {name}", name
        )
    return message if message.startswith(name) else f"{name}: {message}"


def _names_in(message: str) -> str:
    """The field names inside fastjsonschema's "must contain ['a', 'b'] properties"."""
    found = re.search(r"[\[{](.*)[\]}]", message)
    names = re.findall(r"'([^']{1,64})'", found.group(1)) if found else []
    return ", ".join(names[:10]) or "?"


_DEADLINES = ("promised_at", "response_due_at", "resolution_due_at")


def _check_consistency(event_type: str, payload: Mapping[str, Any], occurred_at: datetime) -> None:
    opened_at = _time(payload, "opened_at") if isinstance(payload.get("opened_at"), str) else None
    if opened_at is not None and opened_at > occurred_at:
        raise InvalidEvent(INCONSISTENT, "opened_at is later than occurred_at")
    if isinstance(payload.get("closed_at"), str) and _time(payload, "closed_at") > occurred_at:
        raise InvalidEvent(INCONSISTENT, "closed_at is later than occurred_at (a card reopens after it closed)")
    for due in _DEADLINES:
        if isinstance(payload.get(due), str):
            deadline = _time(payload, due)  # parsed (so refused when impossible) even without opened_at
            if opened_at is not None and deadline <= opened_at:
                raise InvalidEvent(INCONSISTENT, f"{due} must be later than opened_at")
    if event_type == "recognition.given" and any(p["staff_id"] == payload["awarded_by"] for p in payload["people"]):
        raise InvalidEvent(INCONSISTENT, "awarded_by: a manager cannot recognise themselves")


def _check_personal_data(payload: Mapping[str, Any]) -> None:
    ref = payload.get("customer_ref")
    if isinstance(ref, str) and PHONE_REF.match(ref):
        raise InvalidEvent(PERSONAL_DATA, "customer_ref looks like a phone number; send a pseudonymous reference")
    # the payload's ids in its order, then the people's: the first that looks like a phone number is named
    phone_id = PHONE_ID.match
    for name, value in payload.items():
        if isinstance(value, str) and (name.endswith("_id") or name == "awarded_by") and phone_id(value):
            raise InvalidEvent(PERSONAL_DATA, f"{name} looks like a phone number; use an id that is not one")
    people = payload.get("people")
    if isinstance(people, list):
        for n, p in enumerate(people):
            if isinstance(p, dict) and isinstance(value := p.get("staff_id"), str) and phone_id(value):
                raise InvalidEvent(
                    PERSONAL_DATA, f"people[{n}].staff_id looks like a phone number; use an id that is not one"
                )


def redact(text: str) -> str:
    """Mask phone-number-like digit runs in free text (feedback) before it is stored or shown."""
    return PHONE_LIKE.sub("[redacted]", text)


_PHONE_LIKE_BYTES = re.compile(PHONE_LIKE.pattern.encode())


def scrub_payload(raw: bytes) -> bytes:
    """A rejected record's value with phone-number-like runs masked, for the dead-letter topic.

    A JSON object keeps its shape (only string values change; a ``*_at`` field holding a real date-time
    is left alone, its digits are not a phone number); anything else is masked byte-wise.
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _PHONE_LIKE_BYTES.sub(b"[redacted]", raw)
    scrubbed = _scrub(payload, "")
    return raw if scrubbed == payload else orjson.dumps(scrubbed)


def scrub_key(raw: bytes) -> bytes:
    """A rejected record's key with phone-number-like runs masked (keys are opaque bytes)."""
    return _PHONE_LIKE_BYTES.sub(b"[redacted]", raw)


def _scrub(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return value if key.endswith("_at") and _is_time(value) else redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and PHONE_LIKE.fullmatch(str(abs(value))):
        return "[redacted]"  # a phone number sent as a JSON number
    return value


def _is_time(value: str) -> bool:
    try:
        parse_time(value)
    except ValueError:
        return False
    return True


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
