"""KPI windows closing by event time, the awards of rules on them, and corrections for late events.

Each source partition keeps a stream time: the highest event time it has carried (events of one centre
share a partition number on every source topic, so this is the centre's clock, as a Kafka Streams task
keeps one). A centre's day is closed once the stream time has passed its end by the allowed lateness;
then every window ending that day (the day, an ISO week ending on Sunday, a month ending on its last day,
the 30 days ending that day) is evaluated for the people active in it, by the rules on that window
(``event: window.month`` ...), from the records of its days. An event for a day already closed is late:
its records still go into its buckets, the event goes to the ``late-events`` topic, and every closed
window holding that day is evaluated again for its people; a result that changed becomes a correction
entry on the ledger (the difference, naming the window award it corrects).

No award reads a window before it is closed, so for events that arrive within the allowed lateness
the awards do not depend on the order they arrive in. Each step's results and ledger records are
stored together, atomically, before the records are produced (an outbox): a step redone after a crash
finds its windows closed and produces the same records again, with the same ids.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, NamedTuple

import orjson

from agents.kpi import (
    Contribution,
    Window,
    closed_through,
    closed_windows_holding,
    contribution_of,
    local_day,
    summarize,
    windows_ending,
)
from agents.pipeline import ScoredEvent, SourceRecord
from agents.rules import Outcome, Rule, RulePack, evaluate
from agents.scoring import Award, award_id
from config.directory import Centre, Directory, Staff
from state.kpi import Bucket, KpiStore, Placed, Result
from streams.contract import readable_windows
from streams.events import Event


@dataclass
class WindowStep:
    """What one batch did to the KPI windows."""

    awards: list[Award] = field(default_factory=list)  # window awards and corrections, in the outbox
    late: list[tuple[SourceRecord, Event, date]] = field(default_factory=list)  # for the late-events topic
    closed: Counter[str] = field(default_factory=Counter)  # window kind -> windows closed
    clock: dict[int, int] = field(default_factory=dict)  # source partition -> stream time (ms)
    outbox: dict[str, bytes] = field(default_factory=dict)  # the whole KPI outbox once the step committed


Records = Callable[[str, date], list[list[Any]]]


def window_event_id(centre_id: str, window: Window) -> str:
    return f"window:{centre_id}:{window.id}"


def correction_id(base_award_id: str, revision: int) -> str:
    return hashlib.sha256(f"correction\x1f{base_award_id}\x1f{revision}".encode()).hexdigest()[:32]


def person_facts(window: Window, staff_id: str, records: Records) -> dict[str, Any]:
    """The KPI facts a rule on ``window`` reads for one person: kpi.<metric>_<kind> for the readable kinds."""
    facts: dict[str, Any] = {}
    for kind in readable_windows(window.kind):
        span = Window.of(kind, window.end)
        summary = summarize(r for day in span.days() for r in records(staff_id, day))
        facts |= {f"kpi.{metric}_{kind}": value for metric, value in summary.items()}
    return facts


class Evaluated(NamedTuple):
    rule: Rule
    staff: Staff
    outcome: Outcome | None  # None: the rule gives this person nothing for this window
    inputs: dict[str, Any]  # the facts the rule read
    cap: bool = False  # a cap settlement of the rule's awards (negative points), not a rule on the window

    @property
    def key(self) -> str:
        """What the person's result for this window is stored under."""
        return f"{'cap:' if self.cap else ''}{self.rule.id}|{self.staff.id}"

    def base_id(self, centre_id: str, window: Window) -> str:
        """The id of the window's entry for this rule and person (a correction names it)."""
        rule_id = f"cap:{self.rule.id}" if self.cap else self.rule.id
        return award_id(window_event_id(centre_id, window), rule_id, self.rule.version, self.staff.id)


def evaluate_window(
    centre: Centre, window: Window, staff_id: str, pack: RulePack, directory: Directory, records: Records
) -> list[Evaluated]:
    """Every rule on this window's kind that applies to the person, with what it gives."""
    staff = directory.person(staff_id)
    rules = pack.rules_for(f"window.{window.kind}")
    capped = [(rule, dict(rule.caps)[window.kind]) for rule in pack.capped.values() if window.kind in dict(rule.caps)]
    if staff is None or not (rules or capped):
        return []
    found = [settle_cap(window, staff, rule, cap, records) for rule, cap in capped]
    at = window.end_moment(centre.timezone)
    facts: dict[str, Any] = {}
    for rule in rules:
        if staff.role not in rule.roles or not rule.in_effect(at):
            continue
        if staff.suspended_at(at) or staff.groups & rule.exclude_groups:
            found.append(Evaluated(rule, staff, None, {}))
            continue
        if not facts:
            facts = person_facts(window, staff_id, records)
            facts |= {"window": window.id, "centre_id": centre.id, "staff_id": staff_id, "role": staff.role}
        inputs = {name: facts.get(name) for name in rule.reads()}
        found.append(Evaluated(rule, staff, evaluate(rule, facts), inputs))
    return found


def settle_cap(window: Window, staff: Staff, rule: Rule, cap: int, records: Records) -> Evaluated:
    """A person's awards of a capped rule in a window (by the events' days), and what is over the cap.

    A week or month cap counts each day's awards after that day's own cap, so an excess is taken back once.
    """
    day_cap = dict(rule.caps).get("day") if window.kind != "day" else None
    awarded = 0
    for day in window.days():
        points = sum(r[2] for r in records(staff.id, day) if r[0] == "p" and r[1] == rule.id)
        awarded += points if day_cap is None else min(points, day_cap)
    inputs = {"cap": cap, "awarded": awarded, "window": window.id}
    if awarded <= cap:
        return Evaluated(rule, staff, None, inputs, cap=True)
    why = f"{rule.id} is capped at {cap} points a {window.kind}: {awarded} awarded in {window.id}"
    return Evaluated(rule, staff, Outcome(rule, cap - awarded, inputs, (), why), inputs, cap=True)


def window_award(centre: Centre, window: Window, evaluated: Evaluated) -> Award:
    rule, staff, outcome, _, cap = evaluated
    assert outcome is not None
    return Award(
        award_id=evaluated.base_id(centre.id, window),
        event_id=window_event_id(centre.id, window),
        event_type=f"window.{window.kind}",
        kind="cap" if cap else "award",
        rule_id=rule.id,
        rule_version=rule.version,
        staff_id=staff.id,
        role=staff.role,
        centre_id=centre.id,
        region=centre.region,
        state=centre.state,
        season=f"{window.end:%Y-%m}",
        points=outcome.points,
        occurred_at=window.end_moment(centre.timezone).isoformat(),
        inputs=outcome.inputs,
        multipliers=outcome.multipliers,
        why=outcome.why,
        badge=None if cap else rule.badge,  # a cap settlement earns no badge
    )


def correction(centre: Centre, window: Window, evaluated: Evaluated, before: Result) -> tuple[Award, Result]:
    """The entry that brings a closed window's result from ``before`` to what the rule gives now."""
    rule, staff, outcome, inputs, _ = evaluated
    now = outcome.points if outcome else 0
    base = evaluated.base_id(centre.id, window)
    revision = before.revision + 1
    entry = Award(
        award_id=correction_id(base, revision),
        event_id=window_event_id(centre.id, window),
        event_type=f"window.{window.kind}",
        rule_id=rule.id,
        rule_version=rule.version,
        staff_id=staff.id,
        role=staff.role,
        centre_id=centre.id,
        region=centre.region,
        state=centre.state,
        season=f"{window.end:%Y-%m}",
        points=now - before.points,
        occurred_at=window.end_moment(centre.timezone).isoformat(),
        inputs=inputs | {"points_before": before.points, "points_after": now},
        multipliers=outcome.multipliers if outcome else (),
        why=f"Late events corrected {window.id} ({evaluated.key.split('|')[0]}): {before.points} -> {now} points",
        kind="correction",
        retracts=base,
        badge=None if evaluated.cap else rule.badge,
    )
    return entry, Result(now, revision)


class KpiWindows:
    """Drives the KPI state of one worker's partitions, one batch at a time (see the module docs)."""

    def __init__(self, store: KpiStore, directory: Directory, *, lateness: timedelta, repeat_within: timedelta) -> None:
        self.store = store
        self.directory = directory
        self.lateness = lateness
        self.repeat_within = repeat_within

    async def advance(
        self,
        scored: Sequence[ScoredEvent],
        seen: Sequence[tuple[SourceRecord, Event]],
        pack: RulePack,
    ) -> WindowStep:
        """``scored``: this batch's new events and their awards; ``seen``: every valid event in it (repeats
        move clocks too)."""
        # Writes the records, closes what the stream time now allows, corrects for late events, and
        # commits the step (results + outbox) before returning it; the caller produces the outbox.
        step = WindowStep()
        placed: list[Placed] = []
        first_day: dict[str, date] = {}
        days: list[tuple[SourceRecord, Event, date]] = []
        capped = pack.capped
        for item in scored:
            record, event = item.record, item.event
            centre = self.directory.centre(event.centre_id)
            if centre is None:
                continue
            day = local_day(event.occurred_at, centre.timezone)
            first_day[centre.id] = min(day, first_day.get(centre.id, day))
            days.append((record, event, day))
            contribution = contribution_of(event, centre.timezone, self.repeat_within)
            if contribution is not None:
                on_event = tuple(dict.fromkeys(p.staff_id for p in event.people))
                placed.append(Placed(contribution, centre.id, on_event, record.partition))
            for award in item.awards:  # a capped rule's awards, to settle its caps when their periods close
                if award.kind == "award" and award.rule_id in capped:
                    points = orjson.dumps(["p", award.rule_id, award.points])
                    cap = Contribution(day, f"a:{award.award_id}", points)
                    placed.append(Placed(cap, centre.id, (award.staff_id,), record.partition, centre_bucket=False))
        # The records written, and the state the step starts from read, at the same time: the read does
        # not look at records, and the centres the records add to their partitions are added below.
        _, state = await asyncio.gather(
            self.store.add(placed),
            self.store.state((record.partition for record, _ in seen), (event.centre_id for _, event, _ in days)),
        )
        marks = state.closed  # how far each centre's windows were closed before this batch
        step.late = [(r, e, day) for r, e, day in days if e.centre_id in marks and day <= marks[e.centre_id]]
        by_partition = state.centres
        for put in placed:
            by_partition.setdefault(put.partition, set()).add(put.centre_id)

        clock = state.clock
        for record, event in seen:
            ms = int(event.occurred_at.timestamp() * 1000)
            clock[record.partition] = max(clock.get(record.partition, ms), ms)
        step.clock = clock

        cache: dict[Bucket, list[list[Any]]] = {}
        kinds = pack.window_kinds
        results: dict[tuple[str, str], dict[str, Result]] = {}
        advanced: dict[str, date] = {}
        prior: dict[str, date] = {}
        for partition, centre_ids in sorted(by_partition.items()):
            for centre_id in sorted(centre_ids):
                centre = self.directory.centre(centre_id)
                if centre is None:
                    continue
                through = closed_through(clock[partition], centre.timezone, self.lateness)
                if centre_id in marks:
                    prior[centre_id] = mark = marks[centre_id]
                else:  # first seen: its windows start with its first day (or the lateness horizon)
                    mark = min(first_day.get(centre_id, through + timedelta(days=1)) - timedelta(days=1), through)
                    advanced[centre_id] = mark
                if through <= mark:
                    continue
                advanced[centre_id] = through
                for window in windows_ending(mark, through, kinds):
                    people = await self.store.people(centre_id, window.days())
                    if not people:
                        continue
                    step.closed[window.kind] += 1
                    await self._load(cache, window, people)
                    fired = results.setdefault((centre_id, window.id), {})
                    for staff_id in sorted(people):
                        for evaluated in evaluate_window(
                            centre, window, staff_id, pack, self.directory, _reader(cache)
                        ):
                            if evaluated.outcome is not None:
                                award = window_award(centre, window, evaluated)
                                fired[evaluated.key] = Result(award.points, 0)
                                step.awards.append(award)

        # Late events: windows closed before this step that hold their days are evaluated again for their people.
        touched: set[tuple[str, Window, str]] = set()
        for _, event, day in step.late:
            for window in closed_windows_holding(day, prior.get(event.centre_id, day), kinds):
                touched |= {(event.centre_id, window, p.staff_id) for p in event.people}
        if touched:
            stored = await self.store.results({(c, w.id) for c, w, _ in touched})
            for centre_id, window, staff_id in sorted(touched):
                centre = self.directory.centre(centre_id)
                if centre is None:
                    continue
                await self._load(cache, window, [staff_id])
                current = stored[(centre_id, window.id)]
                for evaluated in evaluate_window(centre, window, staff_id, pack, self.directory, _reader(cache)):
                    name = evaluated.key
                    before = current.get(name, Result(0, 0))
                    if (evaluated.outcome.points if evaluated.outcome else 0) == before.points:
                        continue
                    entry, after = correction(centre, window, evaluated, before)
                    current[name] = after
                    results.setdefault((centre_id, window.id), {})[name] = after
                    step.awards.append(entry)

        step.outbox = await self.store.commit(
            clock=clock,
            closed=advanced,
            results=results,
            outbox={a.award_id: a.to_ledger() for a in step.awards},
        )
        return step

    async def _load(self, cache: dict[Bucket, list[list[Any]]], window: Window, people: Iterable[str]) -> None:
        days = {d for kind in readable_windows(window.kind) for d in Window.of(kind, window.end).days()}
        wanted = [b for s in people for d in days if (b := Bucket("p", s, d)) not in cache]
        cache.update(await self.store.records(wanted))


def _reader(cache: dict[Bucket, list[list[Any]]]) -> Records:
    return lambda staff_id, day: cache.get(Bucket("p", staff_id, day), [])
