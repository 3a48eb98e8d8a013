"""SLA policies: how long a ticket may wait for its first response and its resolution, per priority and
channel, and when a job card is due; business hours and holidays per centre, in the centre's time zone.

A policy file (``PITSTOP_SLA``, default ``config/sla/default.yaml``) is validated like a rule pack: the
first problem is refused with file, line and reason. Deadlines are computed from event time only
(:meth:`SlaPolicy.ticket_deadlines`), so a worker restarted or a replay gets the same deadline, and so
the same alert id. See docs/sla.md.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from config.loading import CONFIG_NAME, ConfigError, Located, load_document
from streams.contract import TICKET_CHANNELS, TICKET_PRIORITIES

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = "24x7"
MAX_SEARCH_DAYS = 400  # a deadline further than this many calendar days away is a configuration error
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Calendar:
    """Opening hours per weekday (local times, in order) and holidays; ``always`` counts every second."""

    name: str
    hours: tuple[tuple[tuple[time, time], ...], ...] = ()  # one tuple of (open, close) per weekday, Monday first
    holidays: frozenset[date] = frozenset()
    always: bool = False

    def add(self, start: datetime, seconds: float, zone: ZoneInfo) -> datetime:
        """The moment ``seconds`` of open time after ``start`` (aware), counted in ``zone``.

        Closed hours, closed weekdays and holidays do not count. A start outside opening hours counts
        from the next opening. Raises ValueError if the calendar has no such moment within a year."""
        if self.always:
            return start + timedelta(seconds=seconds)
        local = start.astimezone(zone)
        left = timedelta(seconds=seconds)
        day = local.date()
        for _ in range(MAX_SEARCH_DAYS):
            if day not in self.holidays:
                for opens, closes in self.hours[day.weekday()]:
                    begin = datetime.combine(day, opens, zone)
                    end = _end_of(day, closes, zone)
                    begin = max(begin, local)
                    if begin >= end:
                        continue
                    if begin + left <= end:
                        return (begin + left).astimezone(start.tzinfo)
                    left -= end - begin
            day += timedelta(days=1)
        raise ValueError(f"calendar {self.name!r} has not {seconds:.0f} s of open time within {MAX_SEARCH_DAYS} days")


def _end_of(day: date, closes: time, zone: ZoneInfo) -> datetime:
    # 24:00 is stored as time.max; the day ends at the next midnight
    if closes == time.max:
        return datetime.combine(day + timedelta(days=1), time(0), zone)
    return datetime.combine(day, closes, zone)


@dataclass(frozen=True, slots=True)
class TicketTerms:
    priority: str
    channel: str | None  # None: every channel without terms of its own
    first_response: timedelta
    resolution: timedelta
    calendar: str | None  # None: the centre's calendar
    line: int = 0


@dataclass(slots=True)  # not frozen: made per event (agents.scoring.Award says why)
class Deadline:
    """One SLA clock of an item: when it started, when a near-breach alert is due, when it breaches."""

    clock: str
    started_at: datetime
    near_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    version: int
    near_breach: float  # share of the allowed (open) time after which the near-breach alert fires
    calendars: dict[str, Calendar]
    centre_calendars: dict[str, str]  # centre id -> calendar name ("default" for the rest)
    centre_holidays: dict[str, frozenset[date]]
    tickets: tuple[TicketTerms, ...]
    jobcard_near_breach: float
    source: str = ""
    _index: dict[tuple[str, str | None], TicketTerms] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for terms in self.tickets:
            self._index[(terms.priority, terms.channel)] = terms

    def terms(self, priority: str, channel: str | None) -> TicketTerms | None:
        """The terms for a ticket: its priority and channel's, else its priority's for every channel."""
        return self._index.get((priority, channel)) or self._index.get((priority, None))

    def calendar_for(self, centre_id: str, terms_calendar: str | None = None) -> Calendar:
        name = terms_calendar or self.centre_calendars.get(centre_id) or self.centre_calendars["default"]
        calendar = self.calendars[name]
        extra = self.centre_holidays.get(centre_id)
        if extra and not calendar.always:
            return Calendar(calendar.name, calendar.hours, calendar.holidays | extra)
        return calendar

    def ticket_deadlines(
        self, centre_id: str, zone: ZoneInfo, priority: str, channel: str | None, opened_at: datetime
    ) -> list[Deadline]:
        """First response and resolution deadlines of a ticket opened at ``opened_at`` (event time)."""
        terms = self.terms(priority, channel)
        if terms is None:
            return []
        calendar = self.calendar_for(centre_id, terms.calendar)
        found = []
        for clock, allowed in (("first_response", terms.first_response), ("resolution", terms.resolution)):
            seconds = allowed.total_seconds()
            found.append(
                Deadline(
                    clock,
                    opened_at,
                    calendar.add(opened_at, seconds * self.near_breach, zone),
                    calendar.add(opened_at, seconds, zone),
                )
            )
        return found

    def jobcard_deadline(self, opened_at: datetime, promised_at: datetime) -> Deadline | None:
        """A job card is due when it was promised (wall-clock time: a promise to a customer)."""
        if promised_at <= opened_at:
            return None
        near = opened_at + (promised_at - opened_at) * self.jobcard_near_breach
        return Deadline("delivery", opened_at, near, promised_at)


def parse_duration(raw: object) -> timedelta:
    """``90s``, ``15m``, ``4h``, ``1d``, ``1h30m``: a positive duration."""
    match = _DURATION.match(raw) if isinstance(raw, str) and raw else None
    if match is None or not any(match.groups()):
        raise ValueError(f"expected a duration such as 15m, 4h, 1h30m or 2d, got {raw!r}")
    d, h, m, s = (int(g or 0) for g in match.groups())
    value = timedelta(days=d, hours=h, minutes=m, seconds=s)
    if value <= timedelta(0):
        raise ValueError(f"a duration must be positive, got {raw!r}")
    return value


def _share(item: Located, key: str, default: float) -> float:
    value = item.value.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise item.error(f"'{key}' must be a number between 0 and 1 (exclusive), e.g. 0.8; got {value!r}")
    return float(value)


def _holidays(item: Located, key: str = "holidays") -> frozenset[date]:
    raw = item.value.get(key, [])
    if not isinstance(raw, list):
        raise item.error(f"'{key}' must be a list of dates (YYYY-MM-DD)")
    days = set()
    for value in raw:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = date.fromisoformat(value)
        if not isinstance(value, date) or isinstance(value, datetime):
            raise item.error(f"'{key}' entries must be dates (YYYY-MM-DD), got {value!r}")
        days.add(value)
    return frozenset(days)


def _calendar(name: str, item: Located) -> Calendar:
    item.only({"hours", "holidays"})
    hours = item.value.get("hours")
    if hours == ALWAYS:
        if item.value.get("holidays"):
            raise item.error(f"calendar {name!r}: a 24x7 calendar has no holidays")
        return Calendar(name, always=True)
    if not isinstance(hours, dict) or not hours:
        raise item.error(f"calendar {name!r}: 'hours' must be 24x7 or a mapping of weekdays (mon..sun) to hours")
    unknown = sorted(set(map(str, hours)) - set(DAYS))
    if unknown:
        raise item.error(f"calendar {name!r}: unknown weekday(s) {', '.join(unknown)} (use {', '.join(DAYS)})")
    week: list[tuple[tuple[time, time], ...]] = []
    for day in DAYS:
        spans: list[tuple[time, time]] = []
        raw = hours.get(day)
        for part in [p.strip() for p in raw.split(",")] if isinstance(raw, str) else ([] if raw is None else [raw]):
            match = _HOURS.match(part) if isinstance(part, str) else None
            if match is None:
                raise item.error(
                    f"calendar {name!r}: {day} hours must look like 09:00-18:00 (several: a,b); got {raw!r}"
                )
            oh, om, ch, cm = map(int, match.groups())
            if oh > 23 or om > 59 or cm > 59 or ch > 24 or (ch == 24 and cm):
                raise item.error(f"calendar {name!r}: {day} has an impossible time in {part!r}")
            opens, closes = time(oh, om), (time.max if ch == 24 else time(ch, cm))
            if closes <= opens or (spans and opens < spans[-1][1]):
                raise item.error(f"calendar {name!r}: {day} hours {part!r} must close after they open, in order")
            spans.append((opens, closes))
        week.append(tuple(spans))
    if not any(week):
        raise item.error(f"calendar {name!r} is never open")
    return Calendar(name, tuple(week), _holidays(item))


def load_sla_policy(path: Path) -> SlaPolicy:
    """Load and validate an SLA policy file."""
    doc = load_document(
        path,
        "policy",
        {"policy", "version", "near_breach", "calendars", "centres", "tickets", "jobcards"},
        "the policy",
    )
    document, top, located = doc.top.value, doc.top, doc.section
    near = _share(top, "near_breach", 0.8)

    calendars: dict[str, Calendar] = {}
    for cal_name, spec in located(document.get("calendars", {}), "calendars").value.items():
        if not isinstance(cal_name, str) or not CONFIG_NAME.match(cal_name):
            raise top.error(f"calendar name {cal_name!r} is not a valid name")
        calendars[cal_name] = _calendar(cal_name, located(spec, f"calendars.{cal_name}"))
    calendars.setdefault("always", Calendar("always", always=True))

    centre_calendars: dict[str, str] = {}
    centre_holidays: dict[str, frozenset[date]] = {}
    centres = located(document.get("centres", {"default": {"calendar": "always"}}), "centres")
    for centre_id, spec in centres.value.items():
        entry = located(spec, f"centres.{centre_id}")
        entry.only({"calendar", "holidays"})
        cal = entry.value.get("calendar", None if centre_id != "default" else "always")
        if cal is not None and cal not in calendars:
            raise entry.error(f"centre {centre_id!r}: no calendar {cal!r} (defined: {', '.join(sorted(calendars))})")
        if cal is not None:
            centre_calendars[str(centre_id)] = cal
        if entry.value.get("holidays"):
            centre_holidays[str(centre_id)] = _holidays(entry)
    centre_calendars.setdefault("default", "always")

    raw_tickets = document.get("tickets", [])
    if not isinstance(raw_tickets, list):
        raise top.error("'tickets' must be a list of terms (priority, channel, first_response, resolution)")
    tickets: list[TicketTerms] = []
    seen: set[tuple[str, str | None]] = set()
    for raw in raw_tickets:
        item = located(raw, "tickets[]")
        item.only({"priority", "channel", "first_response", "resolution", "calendar"})
        priority, channel, cal = item.value.get("priority"), item.value.get("channel"), item.value.get("calendar")
        if priority not in TICKET_PRIORITIES:
            raise item.error(f"'priority' must be one of {', '.join(TICKET_PRIORITIES)}; got {priority!r}")
        if channel is not None and channel not in TICKET_CHANNELS:
            raise item.error(f"'channel' must be one of {', '.join(TICKET_CHANNELS)} (or left out); got {channel!r}")
        if cal is not None and cal not in calendars:
            raise item.error(f"no calendar {cal!r} (defined: {', '.join(sorted(calendars))})")
        if (priority, channel) in seen:
            raise item.error(f"terms for {priority} {channel or 'every channel'} are given twice")
        seen.add((priority, channel))
        try:
            first, resolution = (
                parse_duration(item.value.get("first_response")),
                parse_duration(item.value.get("resolution")),
            )
        except ValueError as exc:
            raise item.error(f"{priority}: {exc}") from None
        if resolution < first:
            raise item.error(f"{priority}: 'resolution' ({resolution}) is shorter than 'first_response' ({first})")
        tickets.append(TicketTerms(priority, channel, first, resolution, cal, item.line))
    for priority, channel in seen:
        if channel is not None and (priority, None) not in seen:
            line = next(t.line for t in tickets if (t.priority, t.channel) == (priority, channel))
            raise ConfigError(path, line, f"{priority} has terms for {channel} only: give terms for every channel too")

    jobcards = located(document.get("jobcards", {}), "jobcards")
    jobcards.only({"near_breach"})
    return SlaPolicy(
        name=doc.name,
        version=doc.version,
        near_breach=near,
        calendars=calendars,
        centre_calendars=centre_calendars,
        centre_holidays=centre_holidays,
        tickets=tuple(tickets),
        jobcard_near_breach=_share(jobcards, "near_breach", near),
        source=str(path),
    )
