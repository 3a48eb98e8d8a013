"""Spot awards from the manager page: the giver's budget this month, and the ``recognition.given`` event
a form submission becomes (validated against contract v1 like any source system's event; the worker
then grants or refuses it from the budget, agents.budgets)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from agents.rules import Rule, RulePack
from config.directory import Directory, Staff
from state.budgets import BudgetStore
from streams.events import PHONE_LIKE, InvalidEvent, decode_event

MAX_POINTS = 1000  # contract v1: recognition.given points


class SpotError(ValueError):
    """The form's input cannot become a recognition: the message says what to fix."""


def budgeted_rule(pack: RulePack) -> Rule | None:
    """The pack's rule that spends a giver's monthly budget on recognitions (the first, if several)."""
    return next((r for r in pack.rules if r.on == "recognition.given" and r.budget is not None), None)


async def budget_status(
    store: BudgetStore, pack: RulePack, directory: Directory, giver_id: str, now: datetime
) -> dict[str, Any] | None:
    rule, giver = budgeted_rule(pack), directory.person(giver_id)
    if rule is None or giver is None or rule.budget is None:
        return None
    month = now.astimezone(directory.centres[giver.centre_id].timezone).strftime("%Y-%m")
    limit = giver.spot_budget if giver.spot_budget is not None else rule.budget
    used = await store.used(f"{rule.id}|{giver_id}|{month}")
    return {"type": "budget", "month": month, "budget": limit, "used": used, "left": max(0, limit - used)}


def recognition(
    message: dict[str, Any], giver: Staff, recipients: set[str], directory: Directory, now: datetime
) -> tuple[dict[str, Any], bytes]:
    """The event a ``{"type": "recognize", "staff_id", "points", "reason"}`` message asks for, and its
    bytes; ``recipients`` are the people the giver may recognise. Raises SpotError saying what is wrong."""
    staff_id, points, reason = message.get("staff_id"), message.get("points"), message.get("reason")
    if not isinstance(staff_id, str) or staff_id not in recipients:
        raise SpotError("choose someone from your centres")
    if staff_id == giver.id:
        raise SpotError("you cannot recognise yourself")
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MAX_POINTS:
        raise SpotError(f"points must be a whole number from 1 to {MAX_POINTS}")
    if not isinstance(reason, str) or not 3 <= len(reason.strip()) <= 280:
        raise SpotError("say why in 3 to 280 characters")
    if PHONE_LIKE.search(reason):  # it is shown on the person's phone and on the kiosk's ticker
        raise SpotError("the reason must not hold a phone number")
    person = directory.staff[staff_id]
    zone = directory.centres[person.centre_id].timezone
    event = {
        "event_id": f"spot-{uuid.uuid4().hex}",
        "type": "recognition.given",
        "occurred_at": now.astimezone(zone).isoformat(timespec="seconds"),
        "centre_id": person.centre_id,
        "people": [{"staff_id": person.id, "role": person.role}],
        "recognition_id": f"RC-{uuid.uuid4().hex[:12]}",
        "awarded_by": giver.id,
        "points": points,
        "reason": reason.strip(),
    }
    raw = orjson.dumps(event)
    try:
        decode_event(raw, now=now, topic_family="recognition")
    except InvalidEvent as exc:  # e.g. a phone number in the reason
        raise SpotError(exc.message) from None
    return event, raw
