"""A simulator of the source systems: realistic job-card, ticket, survey, sale and recognition events.

Deterministic for a seed: the same seed and directory give the same events (ids and facts; the event
times follow the clock). Some staff are stronger performers than others, so the league has a shape.
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import orjson

from config.directory import Directory, Staff
from streams.contract import FAMILY_TOPICS, TICKET_PRIORITIES, UPSELL_LINES
from streams.topics import Topics

RESOLUTION_HOURS = {"P1": 4, "P2": 8, "P3": 24, "P4": 72}
FIRST_RESPONSE_MINUTES = {"P1": 15, "P2": 60, "P3": 240, "P4": 1440}  # as config/sla/default.yaml
TICKET_SHARE = 0.1  # with tickets=True: the share of events that open, answer or resolve a ticket


class Simulator:
    def __init__(self, directory: Directory, seed: int = 7, *, follow_ups: float = 0.0, tickets: bool = False) -> None:
        """``follow_ups``: the share of events that follow up an earlier one about the same subject (a
        job card reopened, a sale refunded, a survey corrected), which takes awards back. ``tickets``:
        also tickets through their life (opened, first response, resolved), some answered too late, so
        SLA alerts happen (the demo)."""
        self.rng = random.Random(seed)
        self.follow_ups = follow_ups
        self.tickets = tickets
        self.open_tickets: list[tuple[datetime, dict[str, object]]] = []  # (when, the ticket's next event)
        self.recent: list[dict[str, object]] = []  # closings, sales and surveys that may be followed up
        self.unrefunded: dict[str, float] = {}  # sale id -> amount not refunded yet
        self.directory = directory
        self.by_centre: dict[str, dict[str, list[Staff]]] = {}
        for person in directory.staff.values():
            self.by_centre.setdefault(person.centre_id, {}).setdefault(person.role, []).append(person)
        self.skill = {s: self.rng.uniform(0.55, 0.97) for s in sorted(directory.staff)}
        self.centres = sorted(c for c in self.by_centre if self.by_centre[c].get("technician"))
        self.counter = 0

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}"

    def _pick(self, centre: str, role: str) -> Staff | None:
        people = self.by_centre.get(centre, {}).get(role)
        return self.rng.choice(people) if people else None

    def _customer(self) -> str:
        # base32 (a-z, 2-7): a pseudonymous reference that never looks like a phone number
        return "cust_" + base64.b32encode(self.rng.getrandbits(64).to_bytes(8, "big")).decode().rstrip("=").lower()

    def event(self, now: datetime) -> dict[str, object]:
        """One event, of a kind drawn with realistic weights, happening at ``now``."""
        if self.tickets and self.rng.random() < TICKET_SHARE:
            return self._ticket_step(now)
        if self.follow_ups and self.recent and self.rng.random() < self.follow_ups:
            return self._follow_up(now)
        event = self._new_event(now)
        if self.follow_ups and event["type"] in ("jobcard.closed", "sale.upsell", "survey.csat", "survey.nps"):
            self.recent = [*self.recent[-199:], event]
        return event

    def _follow_up(self, now: datetime) -> dict[str, object]:
        """A later event about an earlier event's subject: the job card comes back, the sale is refunded
        (in full or in part), or the survey is answered again."""
        earlier = self.rng.choice(self.recent)
        tz = self.directory.centres[str(earlier["centre_id"])].timezone
        base: dict[str, object] = {
            "event_id": self._id("ev"),
            "occurred_at": now.astimezone(tz).isoformat(timespec="seconds"),
            "centre_id": earlier["centre_id"],
            "customer_ref": earlier["customer_ref"],
        }
        people = earlier["people"]
        assert isinstance(people, list)
        if earlier["type"] == "jobcard.closed":
            return base | {
                "type": "jobcard.reopened",
                "people": people[:1],
                "jobcard_id": earlier["jobcard_id"],
                "closed_at": earlier["occurred_at"],
                "reason_code": "noise_returned",
            }
        if earlier["type"] == "sale.upsell":
            # Never more than is left of the sale: refunds beyond it are an upstream error
            amount = earlier["amount"]
            assert isinstance(amount, float)
            left = self.unrefunded.get(str(earlier["sale_id"]), amount)
            refund = min(left, math.floor(amount * self.rng.choice([1.0, 0.5, 0.25]) * 100) / 100)
            self.unrefunded[str(earlier["sale_id"])] = round(left - refund, 2)
            if left - refund < 0.01:
                self.recent.remove(earlier)
            return base | {
                "type": "sale.refunded",
                "people": people,
                "sale_id": earlier["sale_id"],
                "amount": refund,
                "currency": earlier["currency"],
                "reason_code": "customer_cancelled",
            }
        answer = (
            {"rating": self.rng.randint(1, 5)}
            if earlier["type"] == "survey.csat"
            else {"score": self.rng.randint(0, 10)}
        )
        keep = ("type", "people", "survey_id", "subject_kind", "subject_id")
        return base | {k: earlier[k] for k in keep} | answer

    def _new_event(self, now: datetime) -> dict[str, object]:
        centre_id = self.rng.choice(self.centres)
        tz = self.directory.centres[centre_id].timezone
        at = now.astimezone(tz)
        kind = self.rng.choices(
            [
                "jobcard.closed",
                "survey.csat",
                "survey.nps",
                "sale.upsell",
                "ticket.resolved",
                "recognition.given",
                "jobcard.reopened",
            ],
            weights=[40, 20, 8, 15, 12, 2, 3],
        )[0]
        tech = self._pick(centre_id, "technician")
        advisor = self._pick(centre_id, "service_advisor")
        assert tech is not None
        skill = self.skill[tech.id]
        base: dict[str, object] = {
            "event_id": self._id("ev"),
            "type": kind,
            "occurred_at": at.isoformat(timespec="seconds"),
            "centre_id": centre_id,
        }
        people = [{"staff_id": tech.id, "role": "technician"}]
        if advisor is not None:
            people.append({"staff_id": advisor.id, "role": "service_advisor"})
        if kind == "jobcard.closed":
            promised = self.rng.choice([180, 240, 360, 480])
            took = int(promised * self.rng.uniform(0.5, 1.3 - skill * 0.4))
            opened = at - timedelta(minutes=took)
            return base | {
                "people": people,
                "customer_ref": self._customer(),
                "jobcard_id": self._id("JC"),
                "opened_at": opened.isoformat(timespec="seconds"),
                "promised_at": (opened + timedelta(minutes=promised)).isoformat(timespec="seconds"),
                "first_time_fix": self.rng.random() < skill,
                "flawless": self.rng.random() < skill - 0.1,
                "safety_compliant": self.rng.random() < 0.95,
                "early_defect_detected": self.rng.random() < 0.1,
            }
        if kind in ("survey.csat", "survey.nps"):
            subject = {"subject_kind": "jobcard", "subject_id": self._id("JC"), "survey_id": self._id("SV")}
            if kind == "survey.csat":
                rating = 5 if self.rng.random() < skill else self.rng.choice([3, 4, 4])
                return base | {"people": people, "customer_ref": self._customer(), **subject, "rating": rating}
            score = 10 if self.rng.random() < skill - 0.2 else self.rng.randint(5, 9)
            return base | {"people": people, "customer_ref": self._customer(), **subject, "score": score}
        if kind == "sale.upsell":
            line = self.rng.choice(UPSELL_LINES)
            return base | {
                "people": people[-1:],
                "customer_ref": self._customer(),
                "sale_id": self._id("SL"),
                "line": line,
                "amount": round(self.rng.uniform(1500, 25000), 2),
                "currency": "INR",
            }
        if kind == "ticket.resolved":
            agent = self._pick(centre_id, "support_agent") or tech
            priority = self.rng.choice(TICKET_PRIORITIES)
            allowed = timedelta(hours=RESOLUTION_HOURS[priority])
            taken = allowed * self.rng.uniform(0.2, 1.2 - self.skill[agent.id] * 0.3)
            opened = at - taken
            return base | {
                "type": "ticket.resolved",
                "people": [{"staff_id": agent.id, "role": agent.role}],
                "customer_ref": self._customer(),
                "ticket_id": self._id("TK"),
                "priority": priority,
                "opened_at": opened.isoformat(timespec="seconds"),
                "resolution_due_at": (opened + allowed).isoformat(timespec="seconds"),
                "case_notes_complete": self.rng.random() < 0.8,
            }
        if kind == "recognition.given":
            manager = self._pick(centre_id, "manager")
            if manager is None:
                return self._new_event(now)
            return base | {
                "people": people[:1],
                "recognition_id": self._id("RC"),
                "awarded_by": manager.id,
                "points": self.rng.choice([10, 20, 25, 50]),
                "reason": "Stayed late to finish an urgent repair",
            }
        closed = at - timedelta(days=self.rng.randint(1, 20))
        return base | {
            "people": people[:1],
            "customer_ref": self._customer(),
            "jobcard_id": self._id("JC"),
            "closed_at": closed.isoformat(timespec="seconds"),
            "reason_code": "noise_returned",
        }

    def _ticket_step(self, now: datetime) -> dict[str, object]:
        """The next step of a ticket whose time has come, or a new ticket. A P1 ticket is often reported
        some minutes after it was opened, and a few are answered after their 15 minutes."""
        self.open_tickets.sort(key=lambda item: item[0])
        if self.open_tickets and self.open_tickets[0][0] <= now:
            _, event = self.open_tickets.pop(0)
            at = now.astimezone(self.directory.centres[str(event["centre_id"])].timezone)
            event = event | {"event_id": self._id("ev"), "occurred_at": at.isoformat(timespec="seconds")}
            if event["type"] == "ticket.first_response":
                resolved = {k: v for k, v in event.items() if k != "response_due_at"} | {
                    "type": "ticket.resolved",
                    "resolution_due_at": event["resolution_due_at"],
                    "case_notes_complete": self.rng.random() < 0.8,
                    "callback_minutes": self.rng.randint(5, 60),
                }
                self.open_tickets.append((now + timedelta(minutes=self.rng.uniform(2, 30)), resolved))
                event.pop("resolution_due_at")
            return event
        centre_id = self.rng.choice(self.centres)
        agent = self._pick(centre_id, "support_agent") or self._pick(centre_id, "technician")
        assert agent is not None
        priority = self.rng.choices(TICKET_PRIORITIES, weights=[40, 30, 20, 10])[0]
        allowed = timedelta(minutes=FIRST_RESPONSE_MINUTES[priority])
        opened = now - (allowed * self.rng.uniform(0, 0.95))
        zone = self.directory.centres[centre_id].timezone
        ticket_id = self._id("TK")
        people = [{"staff_id": agent.id, "role": agent.role}]
        answer_in = (
            timedelta(minutes=self.rng.uniform(1, 8)) if priority == "P1" else allowed * self.rng.uniform(0.1, 0.5)
        )
        self.open_tickets.append(
            (
                now + answer_in,
                {
                    "type": "ticket.first_response",
                    "centre_id": centre_id,
                    "people": people,
                    "ticket_id": ticket_id,
                    "priority": priority,
                    "opened_at": opened.astimezone(zone).isoformat(timespec="seconds"),
                    "response_due_at": (opened + allowed).astimezone(zone).isoformat(timespec="seconds"),
                    "resolution_due_at": (opened + timedelta(hours=RESOLUTION_HOURS[priority]))
                    .astimezone(zone)
                    .isoformat(timespec="seconds"),
                },
            )
        )
        return {
            "event_id": self._id("ev"),
            "type": "ticket.opened",
            "occurred_at": opened.astimezone(zone).isoformat(timespec="seconds"),
            "centre_id": centre_id,
            "people": people,
            "customer_ref": self._customer(),
            "ticket_id": ticket_id,
            "priority": priority,
            "channel": self.rng.choice(["phone", "email", "chat", "whatsapp"]),
        }

    def stream(self, start: datetime, count: int, spacing: timedelta) -> Iterator[dict[str, object]]:
        for i in range(count):
            yield self.event(start + spacing * i)


def topic_for(topics: Topics, event: dict[str, object]) -> str:
    return topics.name(FAMILY_TOPICS[str(event["type"]).split(".", 1)[0]])


async def produce_at_rate(
    bootstrap: str, records: Iterable[tuple[str, bytes, bytes]], rate: float, *, idempotent: bool = False
) -> int:
    """Produce ``(topic, key, value)`` records open-loop at ``rate`` per second; returns how many.

    ``idempotent`` keeps the producer's retries across a broker restart from writing a record twice
    (Apache Kafka; the embedded broker has no producer ids)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=idempotent)
    await producer.start()
    sent = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
            sent += 1
            delay = started + sent / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def run_simulator(
    bootstrap: str, topics: Topics, directory: Directory, *, rate: float, seed: int, limit: int | None = None
) -> int:
    """Produce simulated events at ``rate`` per second until cancelled (or ``limit`` events)."""
    sim = Simulator(directory, seed, tickets=True)

    def records() -> Iterator[tuple[str, bytes, bytes]]:
        sent = 0
        while limit is None or sent < limit:
            event = sim.event(datetime.now(UTC))
            yield topic_for(topics, event), str(event["centre_id"]).encode(), orjson.dumps(event)
            sent += 1

    return await produce_at_rate(bootstrap, records(), rate)
