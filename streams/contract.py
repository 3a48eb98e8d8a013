"""Event contract v1: the JSON Schemas every source system's events must satisfy.

The schemas are built here once and published as files under ``streams/schemas/`` (``pitstop schemas
--write`` regenerates them; a test fails when the published files and this module disagree). Checks a
JSON Schema cannot express (an RFC 3339 time *with* an offset, event time not in the future, times in
order, customer references that look like phone numbers) live in :mod:`streams.events`.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1
SCHEMA_BASE_URI = "https://pitstop.dev/schemas/v1"

ROLES = ("technician", "service_advisor", "support_agent", "sales_executive", "dealer", "manager")
UPSELL_LINES = (
    "amc",
    "extended_warranty",
    "ceramic_coating",
    "service_package",
    "tyres",
    "batteries",
    "insurance_renewal",
)
TICKET_PRIORITIES = ("P1", "P2", "P3", "P4")
TICKET_CHANNELS = ("phone", "email", "chat", "whatsapp", "walk_in", "web")
SUBJECT_KINDS = ("jobcard", "ticket", "sale")

# The field naming what an event is about (its subject), per event family. Events of one subject share
# a centre, hence a source partition, so one scorer at a time sees all of them.
SUBJECT_FIELDS = {
    "jobcard": "jobcard_id",
    "ticket": "ticket_id",
    "survey": "survey_id",
    "sale": "sale_id",
    "recognition": "recognition_id",
}
# Events that take back awards earned by earlier events of the same subject -> the event types whose
# awards they may take back (a rule opts in with `retracted_by`). A refund takes back its share of the
# sale's amount; a reopened job card takes the award back whole.
RETRACTING: dict[str, tuple[str, ...]] = {
    "jobcard.reopened": ("jobcard.closed",),
    "sale.refunded": ("sale.upsell", "sale.vehicle"),
}
# A survey sent again with the same survey_id and a later occurred_at corrects the earlier answer: the
# earlier answer's awards are taken back whole, always (no rule needs to ask for it).
CORRECTABLE = ("survey.csat", "survey.nps")

# Events a person gives to others -> the field naming the giver. A rule on one may draw its points
# from the giver's monthly budget (a rule's `budget`, agents.budgets).
GIVER_FIELDS = {"recognition.given": "awarded_by"}

# Which source topic carries which event family (the part of `type` before the dot).
FAMILY_TOPICS = {
    "jobcard": "jobcards",
    "ticket": "tickets",
    "survey": "surveys",
    "sale": "sales",
    "recognition": "recognitions",
}

Schema = dict[str, Any]

_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]*$"}
_TIME = {
    "type": "string",
    "maxLength": 40,
    "pattern": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
    "description": "RFC 3339 date-time with an offset (Z or +hh:mm); the offset is required",
}
_CUSTOMER_REF = {
    "type": "string",
    "minLength": 6,
    "maxLength": 64,
    "pattern": "^[A-Za-z][A-Za-z0-9_-]*$",
    "description": "pseudonymous customer reference (e.g. a salted hash); never a phone number or e-mail",
}
_MONEY = {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. INR"}
_TEXT = {"type": "string", "maxLength": 2000}
_PERSON = {
    "type": "object",
    "additionalProperties": False,
    "required": ["staff_id", "role"],
    "properties": {"staff_id": _ID, "role": {"enum": list(ROLES)}},
}
_ATTRIBUTES = {
    "type": "object",
    "maxProperties": 32,
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    "description": "free-form extras from the source system; rules do not read them",
}

ENVELOPE: Schema = {
    "event_id": _ID,
    "occurred_at": _TIME,
    "centre_id": _ID,
    "people": {"type": "array", "minItems": 1, "maxItems": 10, "items": _PERSON},
    "customer_ref": _CUSTOMER_REF,
    "attributes": _ATTRIBUTES,
}
ENVELOPE_REQUIRED = ["event_id", "type", "occurred_at", "centre_id", "people"]

# type -> (description, properties, required properties beyond the envelope)
EVENT_TYPES: dict[str, tuple[str, Schema, list[str]]] = {
    "jobcard.opened": (
        "A job card was opened for a vehicle at a centre.",
        {
            "jobcard_id": _ID,
            "promised_at": {**_TIME, "description": "delivery time promised to the customer"},
            "complaint_code": {"type": "string", "maxLength": 64},
        },
        ["jobcard_id", "promised_at", "customer_ref"],
    ),
    "jobcard.closed": (
        "A job card was closed (vehicle delivered); carries the facts rules score.",
        {
            "jobcard_id": _ID,
            "opened_at": _TIME,
            "promised_at": _TIME,
            "first_time_fix": {"type": "boolean"},
            "flawless": {"type": "boolean", "description": "no rework, no missing items at inspection"},
            "safety_compliant": {"type": "boolean"},
            "early_defect_detected": {"type": "boolean"},
        },
        [
            "jobcard_id",
            "opened_at",
            "promised_at",
            "first_time_fix",
            "flawless",
            "safety_compliant",
            "customer_ref",
        ],
    ),
    "jobcard.reopened": (
        "A closed job card came back (repeat complaint). Takes back the closing's awards whose rule lists it in "
        "`retracted_by`.",
        {"jobcard_id": _ID, "closed_at": _TIME, "reason_code": {"type": "string", "maxLength": 64}},
        ["jobcard_id", "closed_at", "customer_ref"],
    ),
    "ticket.opened": (
        "A support ticket was opened.",
        {
            "ticket_id": _ID,
            "priority": {"enum": list(TICKET_PRIORITIES)},
            "channel": {"enum": list(TICKET_CHANNELS)},
        },
        ["ticket_id", "priority", "channel", "customer_ref"],
    ),
    "ticket.first_response": (
        "The first response to a ticket was sent.",
        {
            "ticket_id": _ID,
            "priority": {"enum": list(TICKET_PRIORITIES)},
            "opened_at": _TIME,
            "response_due_at": _TIME,
        },
        ["ticket_id", "priority", "opened_at", "response_due_at"],
    ),
    "ticket.resolved": (
        "A ticket was resolved.",
        {
            "ticket_id": _ID,
            "priority": {"enum": list(TICKET_PRIORITIES)},
            "opened_at": _TIME,
            "resolution_due_at": {**_TIME, "description": "the SLA resolution deadline"},
            "case_notes_complete": {"type": "boolean"},
            "callback_minutes": {"type": "number", "minimum": 0, "maximum": 525600},
        },
        ["ticket_id", "priority", "opened_at", "resolution_due_at", "case_notes_complete"],
    ),
    "ticket.escalated": (
        "A ticket was escalated to a higher level.",
        {
            "ticket_id": _ID,
            "priority": {"enum": list(TICKET_PRIORITIES)},
            "level": {"type": "integer", "minimum": 1, "maximum": 5},
            "reason_code": {"type": "string", "maxLength": 64},
        },
        ["ticket_id", "priority", "level"],
    ),
    "survey.csat": (
        "A customer rated a job card or ticket (CSAT, 1-5). Sent again with the same `survey_id` and a later "
        "`occurred_at`, it corrects the earlier answer, whose awards are taken back.",
        {
            "survey_id": _ID,
            "subject_kind": {"enum": list(SUBJECT_KINDS)},
            "subject_id": _ID,
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "feedback": _TEXT,
        },
        ["survey_id", "subject_kind", "subject_id", "rating", "customer_ref"],
    ),
    "survey.nps": (
        "A customer answered the NPS question (0-10). Sent again with the same `survey_id` and a later "
        "`occurred_at`, it corrects the earlier answer, whose awards are taken back.",
        {
            "survey_id": _ID,
            "subject_kind": {"enum": list(SUBJECT_KINDS)},
            "subject_id": _ID,
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "feedback": _TEXT,
        },
        ["survey_id", "subject_kind", "subject_id", "score", "customer_ref"],
    ),
    "sale.upsell": (
        "An add-on was sold on a service order (one line per event).",
        {
            "sale_id": _ID,
            "line": {"enum": list(UPSELL_LINES)},
            "amount": _MONEY,
            "currency": _CURRENCY,
            "jobcard_id": _ID,
        },
        ["sale_id", "line", "amount", "currency", "customer_ref"],
    ),
    "sale.vehicle": (
        "A dealer sold a vehicle.",
        {
            "sale_id": _ID,
            "model": {"type": "string", "minLength": 1, "maxLength": 64},
            "amount": _MONEY,
            "currency": _CURRENCY,
        },
        ["sale_id", "model", "amount", "currency", "customer_ref"],
    ),
    "sale.refunded": (
        "A sale was refunded in full or in part. Takes back the refunded share (`amount` / the sale's amount) "
        "of the sale's awards whose rule lists it in `retracted_by`.",
        {"sale_id": _ID, "amount": _MONEY, "currency": _CURRENCY, "reason_code": {"type": "string", "maxLength": 64}},
        ["sale_id", "amount", "currency", "customer_ref"],
    ),
    "recognition.given": (
        "A manager recognised a person's work with points (`people` are the recipients).",
        {
            "recognition_id": _ID,
            "awarded_by": _ID,
            "points": {"type": "integer", "minimum": 1, "maximum": 1000},
            "reason": {"type": "string", "minLength": 3, "maxLength": 280},
        },
        ["recognition_id", "awarded_by", "points", "reason"],
    ),
}


# Facts rules can read on top of an event's own fields, derived from its times (see agents.rules).
DERIVED_FACTS: dict[str, tuple[str, ...]] = {
    "jobcard.closed": ("turnaround_minutes", "promised_minutes", "turnaround_ratio", "on_time"),
    "ticket.first_response": ("response_minutes", "allowed_minutes", "response_ratio", "responded_in_time"),
    "ticket.resolved": ("resolution_minutes", "allowed_minutes", "resolution_ratio", "within_sla"),
}


def schema_for(event_type: str) -> Schema:
    """The full JSON Schema (draft 2020-12) of one event type."""
    description, properties, required = EVENT_TYPES[event_type]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URI}/{event_type}.json",
        "title": event_type,
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "required": ENVELOPE_REQUIRED + [r for r in required if r not in ENVELOPE_REQUIRED],
        "properties": {"type": {"const": event_type}, **ENVELOPE, **properties},
    }


def all_schemas() -> dict[str, Schema]:
    return {event_type: schema_for(event_type) for event_type in EVENT_TYPES}


# KPIs by event time (agents.kpi). Rules on a window event type fire for each person active in a closed
# window of their centre; they read kpi.<metric>_<window> facts (e.g. kpi.csat_mean_month).
WINDOW_KINDS = ("day", "week", "month", "30d")
ROLLING_DAYS = 30
WINDOW_TYPES = {f"window.{kind}": kind for kind in WINDOW_KINDS}
WINDOW_FACTS = ("window", "centre_id", "staff_id", "role")
KPI_METRICS: dict[str, str] = {
    "jobs": "job cards closed",
    "turnaround_mean": "mean turnaround of closed job cards, minutes",
    "turnaround_p90": "90th percentile turnaround, minutes",
    "first_time_fix_rate": "share of closed job cards fixed first time (0-1)",
    "on_time_rate": "share of closed job cards delivered by the promised time (0-1)",
    "flawless_run": "the most flawless job cards closed in a row (by event time; any other closing ends a run)",
    "repeat_complaints": "job cards reopened within the repeat period of their closing",
    "repeat_complaint_rate": "repeat complaints / job cards closed (0-1)",
    "csat_count": "CSAT answers (the latest answer of each survey)",
    "csat_mean": "mean CSAT rating (1-5)",
    "five_star_run": "the most five-star CSAT answers in a row (by event time, the latest answer of each survey)",
    "nps_count": "NPS answers (the latest answer of each survey)",
    "nps": "promoters (9-10) minus detractors (0-6), per cent of answers (-100 to 100)",
    "upsells": "upsell lines sold",
    "upsell_conversion": "closed job cards with an upsell line on them / job cards closed (0-1)",
    "upsell_revenue": "upsell amounts sold minus amounts refunded",
    "vehicles_sold": "vehicles sold",
    "tickets_resolved": "tickets resolved",
    "sla_compliance": "tickets resolved within their SLA / tickets resolved (0-1)",
    "responses": "first responses sent",
    "response_in_time_rate": "first responses sent within their SLA / first responses (0-1)",
}


def kpi_fact(metric: str, kind: str) -> str:
    return f"kpi.{metric}_{kind}"


def readable_windows(kind: str) -> tuple[str, ...]:
    """The windows whose KPIs a rule on a ``kind`` window reads: that window, the day and the 30 days
    ending on its last day (all closed at the same moment)."""
    return tuple(dict.fromkeys((kind, "day", "30d")))


def window_rule_facts(window_type: str) -> tuple[str, ...]:
    kinds = readable_windows(WINDOW_TYPES[window_type])
    return (*WINDOW_FACTS, *(kpi_fact(metric, kind) for kind in kinds for metric in KPI_METRICS))
