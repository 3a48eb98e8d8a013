"""The SLA step, pure: which SLA clocks a batch of events starts, stops or shows late.

Each tracked item (a ticket, a job card) has clocks: a ticket ``first_response`` and ``resolution``,
a job card ``delivery``. Their deadlines come from event time and the SLA policy (config.sla), so the
same events always give the same deadlines. This module only plans :class:`ClockOp` s; the state and
the alerts (near breach, breach, clear) are decided atomically in Redis by :mod:`state.sla`, from the
ops of a batch (the score agent) and from a leader-only timer for items that get no further events.

An alert's id is a hash of (clock, alert kind, deadline), so whoever fires it, however often, it is one
alert at every sink.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config.directory import Directory
from config.sla import Deadline, SlaPolicy
from streams.events import Event, parse_time

log = logging.getLogger("pitstop.sla")

NEAR, BREACH, CLEAR = "sla.near_breach", "sla.breach", "sla.clear"
ALERT_KINDS = (NEAR, BREACH, CLEAR)


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class ClockOp:
    """``start``: a clock begins (``meta`` says what it is about). ``stop``: the response, resolution or
    delivery happened at ``at_ms`` (``meta`` lets it start first when the opening was never seen).
    ``touch``: another event about the item, at ``at_ms``, that may show the clock past a deadline."""

    op: str
    clock_id: str
    at_ms: int
    meta: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "id": self.clock_id, "at": self.at_ms}
        if self.meta is not None:
            out["m"] = self.meta
        return out


def clock_id(item_kind: str, item_id: str, clock: str) -> str:
    return f"{item_kind}:{item_id}:{clock}"


def alert_id(clock: str, kind: str, deadline_ms: int) -> str:
    """The id of the alert of ``kind`` for a clock and deadline (the same in state.sla's Lua)."""
    return hashlib.sha1(f"{clock}|{kind}|{deadline_ms}".encode()).hexdigest()[:24]


def clear_id(cleared: str) -> str:
    return hashlib.sha1(f"{cleared}|{CLEAR}".encode()).hexdigest()[:24]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _meta(event: Event, directory: Directory, item_kind: str, item_id: str, deadline: Deadline) -> dict[str, Any]:
    centre = directory.centre(event.centre_id)
    return {
        "item_kind": item_kind,
        "item_id": item_id,
        "clock": deadline.clock,
        "centre_id": event.centre_id,
        "region": centre.region if centre else None,
        "people": [p.staff_id for p in event.people],
        "priority": event.data.get("priority"),
        "channel": event.data.get("channel"),
        "started_ms": _ms(deadline.started_at),
        "near_ms": _ms(deadline.near_at),
        "due_ms": _ms(deadline.due_at),
    }


def plan(decoded: Iterable[tuple[Any, Event]], policy: SlaPolicy, directory: Directory) -> list[ClockOp]:
    """The clock ops of a batch's valid events, in their order. Never raises: an event whose deadline
    cannot be computed (its calendar has no open time within a year) is logged and not tracked."""
    ops: list[ClockOp] = []
    for _, event in decoded:
        try:
            ops += _ops(event, policy, directory)
        except ValueError as exc:
            log.error("SLA not tracked for event %s: %s", event.event_id, exc)
    return ops


def _ops(event: Event, policy: SlaPolicy, directory: Directory) -> list[ClockOp]:
    at = _ms(event.occurred_at)
    data = event.data
    if event.family == "ticket":
        ticket = str(data["ticket_id"])
        centre = directory.centre(event.centre_id)
        if centre is None:
            return []  # not a centre of ours: scoring dead-letters or ignores it; nothing to time
        opened = event.occurred_at if event.type == "ticket.opened" else _time(data.get("opened_at"))
        deadlines = (
            policy.ticket_deadlines(centre.id, centre.timezone, str(data["priority"]), data.get("channel"), opened)
            if opened is not None and data.get("priority")
            else []
        )
        metas = {d.clock: _meta(event, directory, "ticket", ticket, d) for d in deadlines}
        ids = {clock: clock_id("ticket", ticket, clock) for clock in ("first_response", "resolution")}
        if event.type == "ticket.opened":
            return [ClockOp("start", ids[c], at, m) for c, m in metas.items()]
        if event.type == "ticket.first_response":
            return [ClockOp("stop", ids["first_response"], at, metas.get("first_response"))]
        if event.type == "ticket.resolved":
            # A resolution answers the customer too: it stops a first-response clock still running. It
            # does not start one for a ticket never seen opened: when that was first answered is unknown.
            return [
                ClockOp("stop", ids["first_response"], at),
                ClockOp("stop", ids["resolution"], at, metas.get("resolution")),
            ]
        return [ClockOp("touch", ids[c], at) for c in ("first_response", "resolution")]
    if event.family == "jobcard":
        jobcard = str(data["jobcard_id"])
        cid = clock_id("jobcard", jobcard, "delivery")
        if event.type == "jobcard.reopened":
            return []
        opened = event.occurred_at if event.type == "jobcard.opened" else _time(data.get("opened_at"))
        promised = _time(data.get("promised_at"))
        deadline = policy.jobcard_deadline(opened, promised) if opened and promised else None
        meta = _meta(event, directory, "jobcard", jobcard, deadline) if deadline else None
        if event.type == "jobcard.opened":
            return [ClockOp("start", cid, at, meta)] if meta else []
        return [ClockOp("stop", cid, at, meta)]
    return []


def _time(value: object) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as it travels on ``sla-alerts`` (JSON), read back by the sinks."""

    alert_id: str
    type: str
    item_kind: str
    item_id: str
    clock: str
    centre_id: str
    region: str | None
    people: tuple[str, ...]
    deadline_ms: int
    fired_ms: int
    source: str  # "event" (an event showed it) or "timer"
    data: dict[str, Any]

    @property
    def closed(self) -> bool:
        """A breach shown by the response itself is over when it is reported (no clear follows)."""
        return bool(self.data.get("closed"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        kind = data["type"]
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert type {kind!r}")
        return cls(
            alert_id=str(data["alert_id"]),
            type=kind,
            item_kind=str(data["item_kind"]),
            item_id=str(data["item_id"]),
            clock=str(data["clock"]),
            centre_id=str(data["centre_id"]),
            region=data.get("region"),
            people=tuple(map(str, data.get("people") or ())),
            deadline_ms=int(data["deadline_ms"]),
            fired_ms=int(data["fired_ms"]),
            source=str(data["source"]),
            data=data,
        )


def describe(alert: Alert, directory: Directory) -> tuple[str, str]:
    """A subject line and a text a person reads, for notifications."""
    centre = directory.centre(alert.centre_id)
    where = centre.name if centre else alert.centre_id
    zone = centre.timezone if centre else UTC
    what = f"{alert.data.get('priority') or ''} {alert.item_kind} {alert.item_id}".strip()
    clock = alert.clock.replace("_", " ")
    deadline = datetime.fromtimestamp(alert.deadline_ms / 1000, UTC).astimezone(zone)
    stamp = deadline.strftime("%d %b %H:%M %Z")
    names = ", ".join(_name(directory, p) for p in alert.people)
    if alert.type == NEAR:
        head = f"SLA close to breach: {what} at {where}"
        text = f"The {clock} of {what} is due by {stamp} and most of its time is used."
    elif alert.type == BREACH:
        head = f"SLA breached: {what} at {where}"
        text = f"The {clock} of {what} was due by {stamp}."
    else:
        head = f"SLA alert cleared: {what} at {where}"
        text = f"The {clock} of {what} is done ({alert.data.get('outcome', 'done')}); it was due by {stamp}."
    if names:
        text += f" Assigned: {names}."
    return head, text


def _name(directory: Directory, staff_id: str) -> str:
    person = directory.person(staff_id)
    return person.name if person else staff_id


def decode_alerts(values: Sequence[bytes | None]) -> tuple[list[Alert], int]:
    """Alerts from ``sla-alerts`` record values; also how many could not be read."""
    import orjson

    alerts, bad = [], 0
    for value in values:
        try:
            alerts.append(Alert.from_json(orjson.loads(value or b"")))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return alerts, bad
