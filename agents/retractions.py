"""Retractions: awards taken back by a later event about the same subject. Pure (no Faust, no Redis).

A reopened job card takes back the awards of its closing whose rule lists ``jobcard.reopened`` in
``retracted_by``; a refund takes back the refunded share of a sale's awards; a survey sent again with
the same ``survey_id`` and a later time takes the earlier answer's awards back. A retraction is a ledger
entry of its own (``kind: retraction``), with negative points, in the season of the award it takes
back, naming that award in ``retracts``.

Which events arrive first does not matter: whenever an award and an event that takes it back have
both been seen, the pair gives the same retraction, with an id and content that depend only on the
pair (for a whole retraction, only on the award: two reopenings take an award back once). The scorer
keeps what it has seen per subject (:class:`Subject`, stored by :mod:`state.subjects`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

import orjson

from agents.scoring import Award, subject_of
from streams.contract import CORRECTABLE, RETRACTING
from streams.events import Event, parse_time

REASONS = {
    "jobcard.reopened": "job card reopened",
    "sale.refunded": "sale refunded",
    "survey.csat": "survey corrected",
    "survey.nps": "survey corrected",
}


@dataclass(frozen=True, slots=True)
class Taker:
    """An event that can take awards back: a reopening, a refund, or a survey answer (which corrects
    any earlier answer to the same survey)."""

    event_id: str
    type: str
    occurred_at: str  # as sent
    amount: str | None = None  # refunds: the amount refunded

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"event_id": self.event_id, "type": self.type, "occurred_at": self.occurred_at, "amount": self.amount},
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Taker:
        d = orjson.loads(raw)
        return cls(d["event_id"], d["type"], d["occurred_at"], d.get("amount"))

    @classmethod
    def of(cls, event: Event) -> Taker | None:
        if event.type not in RETRACTING and event.type not in CORRECTABLE:
            return None
        amount = event.data.get("amount") if event.type == "sale.refunded" else None
        return cls(event.event_id, event.type, event.data["occurred_at"], None if amount is None else str(amount))


@dataclass
class Subject:
    """What the scorer has seen of one subject: its awards that can be taken back, the events that
    take awards back, and the retractions already on the ledger (id -> (award id, points taken))."""

    awards: dict[str, Award] = field(default_factory=dict)
    takers: dict[str, Taker] = field(default_factory=dict)
    taken: dict[str, tuple[str, int]] = field(default_factory=dict)


def keeps(award: Award) -> bool:
    """Whether an award needs remembering under its subject: something may take it back later."""
    return (
        bool(award.subject) and award.kind == "award" and (bool(award.retracted_by) or award.event_type in CORRECTABLE)
    )


def settle(subject: Subject, awards: list[Award], taker: Taker | None) -> list[Award]:
    """One new event's effect on its subject: its own ``awards`` and, when it can take awards back,
    ``taker``. Returns the retractions due now (between the new and the already seen) and records
    the new awards, taker and retractions in ``subject``."""
    for award in awards:
        if keeps(award):
            subject.awards[award.award_id] = award
    if taker is not None:
        subject.takers[taker.event_id] = taker
    new_ids = {a.award_id for a in awards}
    due: list[Award] = []
    for t in sorted(subject.takers.values(), key=lambda t: (parse_time(t.occurred_at), t.event_id)):
        for award in sorted(subject.awards.values(), key=lambda a: a.award_id):
            if not (t is taker or award.award_id in new_ids) or not takes_back(t, award):
                continue
            retraction = retraction_of(award, t, subject)
            if retraction is not None:
                subject.taken[retraction.award_id] = (award.award_id, -retraction.points)
                due.append(retraction)
    return due


def takes_back(taker: Taker, award: Award) -> bool:
    """Whether ``taker`` takes ``award`` back: a later correction of the same survey (same type), or a
    reopening / refund the award's rule lists, at or after the award's event time."""
    if taker.event_id == award.event_id:
        return False
    at, award_at = parse_time(taker.occurred_at), parse_time(award.occurred_at)
    if taker.type in CORRECTABLE:
        return taker.type == award.event_type and (at, taker.event_id) > (award_at, award.event_id)
    return taker.type in award.retracted_by and at >= award_at


def retraction_of(award: Award, taker: Taker, subject: Subject) -> Award | None:
    """The retraction of ``award`` by ``taker``; ``None`` when nothing is left to take back."""
    already = sum(points for original, points in subject.taken.values() if original == award.award_id)
    reason = REASONS[taker.type]
    if taker.type == "sale.refunded":
        share = _share(taker.amount, award.amount)
        # Rounded down, share and points: refunds that add up to at most the sale never add up to more
        # than the award, so the cap below (what is left of the award) only bites on inconsistent
        # data (refunds beyond the sale), the one case where arrival order can matter.
        wanted = int((award.points * share).to_integral_value(rounding=ROUND_DOWN))
        points = min(wanted, award.points - already)
        retraction_id = _id(award.award_id, taker.event_id)
        event_id = taker.event_id
        inputs: dict[str, Any] = {"refunded": taker.amount, "sold": award.amount, "share": str(share)}
        if points < wanted:
            inputs["capped"] = True  # the refunds of this sale add up to more than it
        why = f"Taken back ({reason}, {share * 100:.4g} %): {award.why}"
    else:
        # Whole retractions depend on the award only, so a second reopening changes nothing.
        points = award.points - already
        retraction_id = _id(award.award_id)
        event_id, inputs = award.event_id, {}
        why = f"Taken back ({reason}): {award.why}"
    if retraction_id in subject.taken or points <= 0:
        return None
    return replace(
        award,
        award_id=retraction_id,
        event_id=event_id,
        event_type=taker.type,
        points=-points,
        inputs={"retracted_award": award.award_id, "original_points": award.points, **inputs},
        multipliers=(),
        why=why[:300],
        retracted_by=(),
        kind="retraction",
        retracts=award.award_id,
    )


def _share(refunded: str | None, sold: str | None) -> Decimal:
    """The refunded share of a sale, 0..1 to 4 places rounded down (all of it when an amount is missing
    or unusable)."""
    try:
        share = Decimal(refunded or "") / Decimal(sold or "")
    except (InvalidOperation, ArithmeticError):
        return Decimal(1)
    return max(Decimal(0), min(Decimal(1), share)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)


def _id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(("retraction", *parts)).encode()).hexdigest()[:32]


def tracked_subject(event: Event, retractable_types: frozenset[str]) -> str:
    """The subject whose record scoring ``event`` needs ("" for none): the event takes awards back, or
    its awards may be taken back (``retractable_types``: the event types a rule of the pack lets
    something take back)."""
    if event.type in RETRACTING or event.type in CORRECTABLE or event.type in retractable_types:
        return subject_of(event)
    return ""
