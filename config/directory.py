"""The directory: centres (with region, state and time zone) and staff (with role and centre).

Loaded from one YAML file (``centres:`` and ``staff:`` lists) or from a folder holding ``centres.csv``
and ``staff.csv``. Every row is validated; the first problem raises :class:`ConfigError` naming the
file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.loading import ConfigError, Located, csv_items, yaml_items
from streams.contract import ROLES

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
CENTRE_FIELDS = ("id", "name", "region", "state", "timezone")
STAFF_FIELDS = ("id", "name", "role", "centre")
# Optional: groups a rule can exclude (a YAML list, or "a;b" in CSV), and a suspension by event time.
# And a monthly spot-award budget in points, overriding the budget of the rules a person gives through.
# And where notifications reach a person (agents.notify): an e-mail address and a phone number (SMS and
# WhatsApp), both optional.
STAFF_OPTIONAL = ("groups", "suspended_from", "suspended_to", "spot_budget", "email", "phone")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164


@dataclass(frozen=True, slots=True)
class Centre:
    id: str
    name: str
    region: str
    state: str
    timezone: ZoneInfo


@dataclass(frozen=True, slots=True)
class Staff:
    id: str
    name: str
    role: str
    centre_id: str
    groups: frozenset[str] = frozenset()
    suspended_from: datetime | None = None  # events at or after this time earn this person nothing...
    suspended_to: datetime | None = None  # ...until this time (open-ended when unset)
    spot_budget: int | None = None  # points this person may give per month (instead of the rule's budget)
    email: str | None = None
    phone: str | None = None  # E.164, e.g. +919800000000

    def suspended_at(self, occurred_at: datetime) -> bool:
        """Whether the person was suspended at an event's time (read from the event, so a replay agrees)."""
        if self.suspended_from is None or occurred_at < self.suspended_from:
            return False
        return self.suspended_to is None or occurred_at < self.suspended_to


class Directory:
    """Who works where. Immutable after loading; reload by building a new one."""

    def __init__(self, centres: Iterable[Centre], staff: Iterable[Staff]) -> None:
        self.centres: dict[str, Centre] = {c.id: c for c in centres}
        self.staff: dict[str, Staff] = {s.id: s for s in staff}

    def centre(self, centre_id: str) -> Centre | None:
        return self.centres.get(centre_id)

    def person(self, staff_id: str) -> Staff | None:
        return self.staff.get(staff_id)

    def managed_centres(self, subject: str) -> set[str]:
        """The centres a manager token's subject covers: a centre id (a workshop manager) means that
        centre, a region (a regional manager) every centre of the region; anything else, none."""
        if subject in self.centres:
            return {subject}
        return {c.id for c in self.centres.values() if c.region == subject}

    def managers_of(self, centre_id: str) -> list[Staff]:
        """The people with the manager role at a centre."""
        return [s for s in self.staff.values() if s.centre_id == centre_id and s.role == "manager"]

    def __repr__(self) -> str:
        return f"<Directory {len(self.centres)} centres, {len(self.staff)} staff>"


def load_directory(path: Path) -> Directory:
    """Load and validate a directory from a YAML file or a folder of two CSV files."""
    if path.is_dir():
        centre_rows: Iterator[Located] = csv_items(path / "centres.csv", CENTRE_FIELDS)
        staff_rows: Iterator[Located] = csv_items(path / "staff.csv", STAFF_FIELDS, STAFF_OPTIONAL)
    elif path.suffix.lower() in (".yaml", ".yml"):
        centre_rows = yaml_items(path, "centres")
        staff_rows = yaml_items(path, "staff")
    else:
        raise ConfigError(path, None, "a directory is a .yaml/.yml file or a folder with centres.csv and staff.csv")

    centres: dict[str, Centre] = {}
    for row in centre_rows:
        centre = _centre(row)
        if centre.id in centres:
            raise row.error(f"centre id {centre.id!r} is listed twice")
        centres[centre.id] = centre
    if not centres:
        raise ConfigError(path, None, "no centres")

    staff: dict[str, Staff] = {}
    for row in staff_rows:
        person = _staff(row)
        if person.id in staff:
            raise row.error(f"staff id {person.id!r} is listed twice")
        if person.centre_id not in centres:
            raise row.error(f"staff {person.id!r} works at unknown centre {person.centre_id!r}")
        staff[person.id] = person
    return Directory(centres.values(), staff.values())


def _fields(row: Located, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, str]:
    unknown = sorted(set(row.value) - set(fields) - set(optional))
    if unknown:
        raise row.error(f"unknown field(s): {', '.join(map(str, unknown))}")
    values: dict[str, str] = {}
    for field in fields:
        value = row.value.get(field)
        if value is None or value == "":
            raise row.error(f"missing field '{field}'")
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise row.error(f"field '{field}' must be text")
        values[field] = str(value).strip()
    if not _ID.match(values["id"]):
        raise row.error(f"id {values['id']!r} may hold only letters, digits and . _ : / - (max 128)")
    return values


def _centre(row: Located) -> Centre:
    v = _fields(row, CENTRE_FIELDS)
    try:
        zone = ZoneInfo(v["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise row.error(f"unknown time zone {v['timezone']!r} (use an IANA name such as Asia/Kolkata)") from None
    for field in ("region", "state"):
        if not _ID.match(v[field]):
            raise row.error(f"{field} {v[field]!r} may hold only letters, digits and . _ : / -")
    return Centre(v["id"], v["name"], v["region"], v["state"], zone)


def _staff(row: Located) -> Staff:
    v = _fields(row, STAFF_FIELDS, STAFF_OPTIONAL)
    if v["role"] not in ROLES:
        raise row.error(f"unknown role {v['role']!r} (one of: {', '.join(ROLES)})")
    raw_groups = row.value.get("groups", [])
    if isinstance(raw_groups, str):  # CSV: "trainee;contractor"
        raw_groups = [g.strip() for g in raw_groups.split(";") if g.strip()]
    if not isinstance(raw_groups, list) or not all(isinstance(g, str) and _ID.match(g) for g in raw_groups):
        raise row.error("'groups' must be a list of names (letters, digits and . _ : / -)")
    suspended_from, suspended_to = row.moment("suspended_from"), row.moment("suspended_to")
    if suspended_to is not None and (suspended_from is None or suspended_to <= suspended_from):
        raise row.error("'suspended_to' needs a 'suspended_from' before it")
    spot_budget = row.value.get("spot_budget")
    if spot_budget in (None, ""):
        spot_budget = None
    elif isinstance(spot_budget, str) and spot_budget.strip().isdigit():  # CSV
        spot_budget = int(spot_budget)
    if spot_budget is not None and (
        not isinstance(spot_budget, int) or isinstance(spot_budget, bool) or not 0 <= spot_budget <= 10_000_000
    ):
        raise row.error("'spot_budget' must be a whole number of points from 0 to 10000000 (per month)")
    email, phone = row.value.get("email"), row.value.get("phone")
    if email is not None and not (isinstance(email, str) and _EMAIL.match(email)):
        raise row.error(f"'email' {email!r} is not an e-mail address")
    if phone is not None and not (isinstance(phone, str) and _PHONE.match(phone)):
        raise row.error(f"'phone' {phone!r} is not a phone number in E.164 form (+ country code, digits)")
    return Staff(
        v["id"],
        v["name"],
        v["role"],
        v["centre"],
        frozenset(raw_groups),
        suspended_from,
        suspended_to,
        spot_budget,
        email,
        phone,
    )
