"""Daily reminders: one digest a day per person and per manager, at the scheduled time in each centre's
own time zone (a cron expression read with cronsim, config.notifications ``digest.schedule``).

A person's digest: points and rank this month at their centre, the points to their next tier, their
SLA items due within a day and those already overdue. A manager's: the centre's overdue job cards and
tickets, its open SLA alerts and the breaches of the last day. (Contract v1 has no approval events,
so there are no pending approvals to list yet.)

"Once a day, across restarts": the leader's timer looks for each centre's latest scheduled moment
(:func:`due_slot`); a digest's message id is ``digest:{person}:{local date}``, so its deliveries have
fixed ids and the queue never takes one twice (state.alerts / state.notify); a marker per centre and
day, set after queueing, saves building them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim

from agents.notify import Message, deliveries_for
from config.directory import Centre, Directory, Staff
from config.notifications import Notifications
from config.programme import Tier
from state.alerts import AlertBoard
from state.league import League, board_key
from state.notify import NotifyQueue
from state.sla import SlaStore

WORKING_ROLES = ("technician", "service_advisor", "support_agent", "sales_executive", "dealer")


def due_slot(schedule: str, zone: ZoneInfo, now: datetime, catch_up: timedelta) -> datetime | None:
    """The latest scheduled moment at or before ``now`` (in ``zone``), if it is at most ``catch_up`` ago."""
    local = now.astimezone(zone)
    slot = next(CronSim(schedule, local + timedelta(seconds=1), reverse=True))
    return slot if local - slot <= catch_up else None


def _when(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).strftime("%d %b %H:%M")


def _item(clock: dict[str, Any], zone: ZoneInfo) -> str:
    what = f"{clock.get('priority') or ''} {clock['item_kind']} {clock['item_id']}".strip()
    return f"{what} ({clock['clock'].replace('_', ' ')}) due {_when(int(clock['due_ms']), zone)}"


def next_tier(points: int, tiers: Sequence[Tier]) -> tuple[str, int] | None:
    """The lowest tier above ``points`` and how many points it still needs."""
    above = [t for t in tiers if t.promote_at > points]
    return (above[0].name, above[0].promote_at - points) if above else None


def person_digest(
    person: Staff,
    centre: Centre,
    day: date,
    *,
    points: int,
    rank: int | None,
    tiers: Sequence[Tier],
    clocks: Sequence[dict[str, Any]],
    now_ms: int,
) -> Message:
    zone = centre.timezone
    mine = [c for c in clocks if person.id in c.get("people", ())]
    overdue = [c for c in mine if int(c["due_ms"]) <= now_ms]
    upcoming = [c for c in mine if now_ms < int(c["due_ms"]) <= now_ms + 86_400_000]
    lines = [f"Good morning {person.name.split()[0]}. This month: {points} points"]
    lines[0] += f", #{rank} at {centre.name}." if rank else f" at {centre.name}."
    target = next_tier(points, tiers)
    if target:
        lines.append(f"Next target: {target[1]} more points for {target[0]}.")
    if overdue:
        lines.append("Overdue: " + "; ".join(_item(c, zone) for c in overdue[:10]))
    if upcoming:
        lines.append("Due today: " + "; ".join(_item(c, zone) for c in upcoming[:10]))
    data = {"points": points, "rank": rank, "overdue": len(overdue), "upcoming": len(upcoming), "date": day.isoformat()}
    return Message(
        f"digest:{person.id}:{day.isoformat()}",
        "digest",
        centre.id,
        (person.id,),
        f"Your Pitstop day, {day.strftime('%d %b')}",
        "\n".join(lines),
        data,
    )


def manager_digest(
    manager: Staff,
    centre: Centre,
    day: date,
    *,
    clocks: Sequence[dict[str, Any]],
    active: Sequence[dict[str, Any]],
    recent: Sequence[dict[str, Any]],
    now_ms: int,
) -> Message:
    zone = centre.timezone
    here = [c for c in clocks if c.get("centre_id") == centre.id]
    overdue_cards = [c for c in here if c["item_kind"] == "jobcard" and int(c["due_ms"]) <= now_ms]
    overdue_tickets = [c for c in here if c["item_kind"] == "ticket" and int(c["due_ms"]) <= now_ms]
    open_alerts = [a for a in active if a.get("centre_id") == centre.id]
    breaches = [
        a
        for a in recent
        if a.get("centre_id") == centre.id and a.get("type") == "sla.breach" and a["fired_ms"] >= now_ms - 86_400_000
    ]
    lines = [f"{centre.name}, {day.strftime('%d %b')}."]
    lines.append(
        f"Overdue job cards: {len(overdue_cards)}"
        + (": " + "; ".join(_item(c, zone) for c in overdue_cards[:10]) if overdue_cards else ".")
    )
    lines.append(
        f"Overdue tickets: {len(overdue_tickets)}"
        + (": " + "; ".join(_item(c, zone) for c in overdue_tickets[:10]) if overdue_tickets else ".")
    )
    lines.append(f"Open SLA alerts: {len(open_alerts)}. SLA breaches in the last day: {len(breaches)}.")
    data = {
        "overdue_jobcards": len(overdue_cards),
        "overdue_tickets": len(overdue_tickets),
        "open_alerts": len(open_alerts),
        "breaches_24h": len(breaches),
        "date": day.isoformat(),
    }
    return Message(
        f"digest:{manager.id}:{day.isoformat()}",
        "digest",
        centre.id,
        (manager.id,),
        f"Pitstop daily summary for {centre.name}, {day.strftime('%d %b')}",
        "\n".join(lines),
        data,
    )


class Digests:
    """The leader's daily-reminder step: ``tick`` queues the digests of every centre whose scheduled
    moment has come (and not been handled) and returns how many deliveries it queued."""

    def __init__(
        self,
        directory: Directory,
        notifications: Notifications,
        tiers: Sequence[Tier],
        *,
        league: League,
        sla: SlaStore,
        alerts: AlertBoard,
        queue: NotifyQueue,
    ) -> None:
        self.directory = directory
        self.notifications = notifications
        self.tiers = tiers
        self.league = league
        self.sla = sla
        self.alerts = alerts
        self.queue = queue

    async def tick(self, now: datetime) -> int:
        if not self.notifications.routes_for("digest"):
            return 0
        redis, ns = self.queue.redis, self.queue.ns
        now_ms = int(now.timestamp() * 1000)
        queued = 0
        context: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]] | None = None
        for centre in self.directory.centres.values():
            slot = due_slot(
                self.notifications.digest_schedule, centre.timezone, now, self.notifications.digest_catch_up
            )
            if slot is None:
                continue
            marker = f"{ns}:digest:{centre.id}:{slot.date().isoformat()}"
            if await redis.exists(marker):
                continue
            if context is None:  # read once per tick, for every centre due
                context = (await self.sla.open_clocks(), await self.alerts.active(), await self.alerts.recent(500))
            clocks, active, recent = context
            _, rows = await self.league.board(board_key(slot.strftime("%Y-%m"), "centre", centre.id), limit=10_000)
            standing = {staff_id: (points, rank) for rank, (staff_id, points) in enumerate(rows, start=1)}
            messages = []
            for person in self.directory.staff.values():
                if person.centre_id != centre.id:
                    continue
                if person.role == "manager":
                    messages.append(
                        manager_digest(
                            person, centre, slot.date(), clocks=clocks, active=active, recent=recent, now_ms=now_ms
                        )
                    )
                elif person.role in WORKING_ROLES:
                    points, rank = standing.get(person.id, (0, None))
                    messages.append(
                        person_digest(
                            person,
                            centre,
                            slot.date(),
                            points=points,
                            rank=rank,
                            tiers=self.tiers,
                            clocks=clocks,
                            now_ms=now_ms,
                        )
                    )
            deliveries = [d for m in messages for d in deliveries_for(m, self.notifications, self.directory)]
            queued += await self.queue.enqueue(deliveries, now_ms)
            await redis.set(marker, 1, ex=3 * 86400)  # after queueing: a crash before it only rebuilds them
        return queued
