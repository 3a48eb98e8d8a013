"""SLA clocks and alerts on a real redis-server: exactly one alert per (clock, kind, deadline) whoever
fires it and however often, clears when the response comes, none when it comes in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.sla import BREACH, CLEAR, NEAR, Alert, alert_id, clear_id, plan
from config.directory import load_directory
from config.settings import DEFAULT_DIRECTORY
from config.sla import load_sla_policy
from pitstop.services import Service
from state.alerts import AlertBoard
from state.sla import SlaStore
from streams.events import Event, Person

DIRECTORY = load_directory(DEFAULT_DIRECTORY)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _policy(tmp_path: Path) -> Any:
    path = tmp_path / "sla.yaml"
    path.write_text(
        "policy: t\nversion: 1\nnear_breach: 0.8\n"
        "tickets:\n  - {priority: P1, first_response: 10m, resolution: 1h, calendar: always}\n"
    )
    return load_sla_policy(path)


def _ticket(kind: str, at: datetime, ticket: str = "T-1", **extra: Any) -> tuple[None, Event]:
    data: dict[str, Any] = {"ticket_id": ticket, "priority": "P1", **extra}
    if kind == "ticket.opened":
        data["channel"] = "phone"
    else:
        data.setdefault("opened_at", T0.isoformat())
    people = (Person("S0012", "support_agent"),)
    return None, Event(f"{kind}-{at.timestamp()}", kind, at, "C01", people, "cust_abcdef", data)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@pytest.fixture
async def store(redis_server: Service, namespace: str) -> Any:
    client = aioredis.from_url(redis_server.url)
    yield SlaStore(client, namespace, 86400)
    await client.aclose()


async def test_no_response_fires_one_near_breach_then_one_breach(store: SlaStore, tmp_path: Path) -> None:
    ops = plan([_ticket("ticket.opened", T0)], _policy(tmp_path), DIRECTORY)
    assert [op.op for op in ops] == ["start", "start"]
    assert await store.observe(ops, _ms(T0)) == []
    assert await store.observe(ops, _ms(T0)) == []  # the same batch again: nothing new
    assert await store.tick(_ms(T0 + timedelta(minutes=7))) == []
    near = await store.tick(_ms(T0 + timedelta(minutes=8)))
    assert [(a["type"], a["clock"], a["source"]) for a in near] == [(NEAR, "first_response", "timer")]
    first = near[0]
    assert first["alert_id"] == alert_id("ticket:T-1:first_response", NEAR, _ms(T0 + timedelta(minutes=8)))
    # the near alert stays in the outbox until produced; a later tick hands it back only once stale
    assert await store.tick(_ms(T0 + timedelta(minutes=8, seconds=5))) == []
    again = await store.tick(_ms(T0 + timedelta(minutes=9)), stale_ms=10_000)
    assert [a["alert_id"] for a in again] == [first["alert_id"]]
    await store.produced([first["alert_id"]])
    breach = await store.tick(_ms(T0 + timedelta(minutes=10)))
    assert [(a["type"], a["clock"]) for a in breach] == [(BREACH, "first_response")]
    await store.produced([a["alert_id"] for a in breach])
    assert await store.tick(_ms(T0 + timedelta(minutes=30))) == []


async def test_answered_in_time_fires_nothing(store: SlaStore, tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    await store.observe(plan([_ticket("ticket.opened", T0)], policy, DIRECTORY), _ms(T0))
    responded = plan([_ticket("ticket.first_response", T0 + timedelta(minutes=5))], policy, DIRECTORY)
    assert await store.observe(responded, _ms(T0 + timedelta(minutes=5))) == []
    fired = await store.tick(_ms(T0 + timedelta(minutes=20)))
    assert fired == []  # the resolution clock is still running and not yet near its point (48 min)
    resolved = plan(
        [_ticket("ticket.resolved", T0 + timedelta(minutes=30), case_notes_complete=True)], policy, DIRECTORY
    )
    assert await store.observe(resolved, _ms(T0 + timedelta(minutes=30))) == []
    assert await store.tick(_ms(T0 + timedelta(hours=3))) == []
    assert await store.open_clocks() == []


async def test_a_response_clears_the_near_breach_and_a_late_one_reports_the_breach(
    store: SlaStore, tmp_path: Path
) -> None:
    policy = _policy(tmp_path)
    await store.observe(plan([_ticket("ticket.opened", T0)], policy, DIRECTORY), _ms(T0))
    near = await store.tick(_ms(T0 + timedelta(minutes=9)))
    cleared = await store.observe(
        plan([_ticket("ticket.first_response", T0 + timedelta(minutes=9, seconds=30))], policy, DIRECTORY),
        _ms(T0 + timedelta(minutes=9, seconds=30)),
    )
    assert [(a["type"], a["clears"], a["outcome"]) for a in cleared] == [(CLEAR, near[0]["alert_id"], "met")]
    assert cleared[0]["alert_id"] == clear_id(near[0]["alert_id"])
    # the resolution comes after its deadline, with no tick in between: the event shows the breach
    late = await store.observe(
        plan(
            [_ticket("ticket.resolved", T0 + timedelta(hours=2), case_notes_complete=True)],
            policy,
            DIRECTORY,
        ),
        _ms(T0 + timedelta(hours=2)),
    )
    assert [(a["type"], a["clock"], a["source"], a.get("closed")) for a in late] == [
        (BREACH, "resolution", "event", True)
    ]


async def test_a_response_for_a_ticket_never_seen_opened_still_shows_its_breach(
    store: SlaStore, tmp_path: Path
) -> None:
    policy = _policy(tmp_path)
    fired = await store.observe(
        plan([_ticket("ticket.first_response", T0 + timedelta(minutes=30))], policy, DIRECTORY), _ms(T0)
    )
    assert [(a["type"], a["clock"]) for a in fired] == [(BREACH, "first_response")]
    # and the opening arriving after it does not start the clock again
    assert await store.observe(plan([_ticket("ticket.opened", T0)], policy, DIRECTORY), _ms(T0)) == []
    assert [c["clock"] for c in await store.open_clocks()] == ["resolution"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ticks=st.lists(st.integers(min_value=0, max_value=90 * 60), min_size=1, max_size=12),
    response_after=st.one_of(st.none(), st.integers(min_value=1, max_value=90 * 60)),
    repeats=st.integers(min_value=1, max_value=3),
)
async def test_any_ticks_and_repeats_give_each_alert_once(
    redis_server: Service, tmp_path: Path, ticks: list[int], response_after: int | None, repeats: int
) -> None:
    """Ticks at any moments (as a restarted or second leader would), ops applied again (a batch scored
    again after a crash): each (clock, kind, deadline) is fired once, and the alert board keeps one."""
    client = aioredis.from_url(redis_server.url)
    ns = f"h{abs(hash((tuple(ticks), response_after, repeats)))}"
    store, board = SlaStore(client, ns, 86400), AlertBoard(client, ns, 86400)
    policy = _policy(tmp_path)
    events = [_ticket("ticket.opened", T0)]
    if response_after is not None:
        events.append(_ticket("ticket.first_response", T0 + timedelta(seconds=response_after)))
    fired: list[dict[str, Any]] = []
    moments = sorted(
        [(t, "tick") for t in ticks] + [(0, "event0")] + ([(response_after, "event1")] if response_after else [])
    )
    for at, what in moments:
        now = _ms(T0 + timedelta(seconds=at))
        for _ in range(repeats):
            if what == "tick":
                fired += await store.tick(now, stale_ms=0)
            else:
                fired += await store.observe(plan([events[int(what[-1])]], policy, DIRECTORY), now)
    await board.apply([(Alert.from_json(a), []) for a in fired], _ms(T0))
    kept = await board.recent(1000)
    ids = [a["alert_id"] for a in kept]
    assert len(ids) == len(set(ids))
    kinds = sorted((a["type"], a["clock"], a.get("clears")) for a in kept)
    assert len(kinds) == len(set(kinds))  # at most one of each kind per clock, one clear per alert
    fired_ids = {a["alert_id"] for a in kept if a["type"] != CLEAR}
    assert {a["clears"] for a in kept if a["type"] == CLEAR} <= fired_ids
    if response_after is not None and response_after <= 600:
        assert (BREACH, "first_response", None) not in kinds
    await client.flushdb()
    await client.aclose()


async def test_a_resolution_of_a_ticket_never_seen_opened_says_nothing_of_its_first_response(
    store: SlaStore, tmp_path: Path
) -> None:
    policy = _policy(tmp_path)
    late = plan([_ticket("ticket.resolved", T0 + timedelta(hours=2), case_notes_complete=True)], policy, DIRECTORY)
    fired = await store.observe(late, _ms(T0 + timedelta(hours=2)))
    assert [(a["type"], a["clock"]) for a in fired] == [(BREACH, "resolution")]  # an hour late
    assert await store.clock("ticket:T-1:first_response") == {
        "m": {},
        "stop": _ms(T0 + timedelta(hours=2)),
        "f": {},
        "cl": {},
    }
